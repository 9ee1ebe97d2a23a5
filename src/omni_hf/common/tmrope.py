"""TMRoPE: time-aligned multimodal rotary positions (Qwen2.5-Omni, Section 2.2).

Pure, vectorised functions shared by the processor and the Thinker. Every token gets three position ids
(time, height, width):

- text: the three ids are equal and advance by one per token;
- audio: the three ids advance together, one per 40 ms token;
- image: time is constant, height/width follow the merged patch grid;
- video: time advances ``second_per_grid * position_id_per_seconds`` per temporal patch (1 id = 40 ms);
- video with its own audio track: the video and audio tokens are interleaved in ``seconds_per_chunk`` chunks,
  vision before audio in each chunk; both start at the same id, and so do the paired start/end tokens
  (``<|vision_bos|><|audio_bos|>`` ... ``<|audio_eos|><|vision_eos|>``).

Each segment (a text token or a media item) starts one after the largest id of the previous segment, where an
interleaved item's extent is that of its last chunk, as in the reference implementation.
"""

from dataclasses import dataclass

import torch

# The inputs that describe a prompt's media layout: every TMRoPE id computation (Thinker, Talker, chunked prefill)
# takes them, so a reply's request carries them from the Thinker to the Talker.
MEDIA_LAYOUT_KEYS = (
    "image_grid_thw",
    "video_grid_thw",
    "video_second_per_grid",
    "feature_attention_mask",
    "audio_feature_lengths",
    "use_audio_in_video",
)


def media_layout(inputs) -> dict:
    """The media-layout entries (`MEDIA_LAYOUT_KEYS`) of a mapping of model inputs that are set."""
    return {key: inputs[key] for key in MEDIA_LAYOUT_KEYS if inputs.get(key) is not None}


@dataclass(frozen=True)
class TMRoPETokens:
    """The token ids and timing constants TMRoPE needs (all read from a Thinker config)."""

    audio_token_id: int
    image_token_id: int
    video_token_id: int
    audio_start_token_id: int
    audio_end_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int
    spatial_merge_size: int = 2
    position_id_per_seconds: int = 25
    seconds_per_chunk: int = 2

    @classmethod
    def from_config(cls, config) -> "TMRoPETokens":
        """From a Thinker config (merge size in its vision config) or a Talker config (merge size at top level)."""
        merge = getattr(config, "spatial_merge_size", None) or config.vision_config.spatial_merge_size
        return cls(
            audio_token_id=config.audio_token_id,
            image_token_id=config.image_token_id,
            video_token_id=config.video_token_id,
            audio_start_token_id=config.audio_start_token_id,
            audio_end_token_id=config.audio_end_token_id,
            vision_start_token_id=config.vision_start_token_id,
            vision_end_token_id=config.vision_end_token_id,
            spatial_merge_size=merge,
            position_id_per_seconds=config.position_id_per_seconds,
            seconds_per_chunk=config.seconds_per_chunk,
        )

    @property
    def tokens_per_chunk(self) -> int:
        return int(self.position_id_per_seconds * self.seconds_per_chunk)


def audio_token_lengths(feature_lengths: torch.Tensor) -> torch.Tensor:
    """Audio tokens per clip from its mel-frame count: conv stride 2, then average pooling by 2 (25 tokens/s)."""
    after_conv = (feature_lengths - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def video_temporal_ids(
    grid_t: int, second_per_grid: float | torch.Tensor, position_id_per_seconds: int
) -> torch.Tensor:
    """Temporal id of each temporal patch of a video, `(grid_t,)` long. float32 arithmetic, truncated, as the reference."""
    second_per_grid = torch.as_tensor(second_per_grid, dtype=torch.float32).cpu()
    return (torch.arange(grid_t) * second_per_grid * position_id_per_seconds).long()


def vision_local_ids(grid_thw: torch.Tensor, merge: int, t_ids: torch.Tensor) -> torch.Tensor:
    """Local (t, h, w) ids of one image/video's merged tokens, `(3, t*h*w/merge**2)`, in token order."""
    _, h, w = (int(x) for x in grid_thw)
    h, w = h // merge, w // merge
    t = t_ids.view(-1, 1, 1).expand(-1, h, w)
    hh = torch.arange(h).view(1, -1, 1).expand(len(t_ids), h, w)
    ww = torch.arange(w).view(1, 1, -1).expand(len(t_ids), h, w)
    return torch.stack([t.flatten(), hh.flatten(), ww.flatten()])


def interleave_video_audio(
    video_grid_thw: torch.Tensor,
    second_per_grid: float | torch.Tensor,
    num_audio_tokens: int,
    tokens: TMRoPETokens,
) -> torch.Tensor:
    """Order of the tokens of a video interleaved with its audio track: `(n_video + n_audio,)` bool, True = audio.

    Tokens are grouped in `seconds_per_chunk` chunks by their temporal id; inside a chunk the video tokens come
    first, then the audio tokens. The processor expands the placeholder with this order; the model reads it back
    from `input_ids`.
    """
    t_ids = video_temporal_ids(int(video_grid_thw[0]), second_per_grid, tokens.position_id_per_seconds)
    per_frame = int(video_grid_thw[1] * video_grid_thw[2]) // tokens.spatial_merge_size**2
    video_chunk = t_ids.repeat_interleave(per_frame) // tokens.tokens_per_chunk
    audio_chunk = torch.arange(num_audio_tokens) // tokens.tokens_per_chunk
    chunk = torch.cat([video_chunk, audio_chunk])
    is_audio = torch.cat(
        [torch.zeros_like(video_chunk, dtype=torch.bool), torch.ones_like(audio_chunk, dtype=torch.bool)]
    )
    order = torch.argsort(chunk * 2 + is_audio.long(), stable=True)
    return is_audio[order]


def _media_items(ids: torch.Tensor, tokens: TMRoPETokens, use_audio_in_video: bool):
    """Split one row's tokens into items. Returns (kind per token, item start flags); kind 0 text, 1 audio, 2 image, 3 video."""
    kind = torch.zeros_like(ids)
    kind[ids == tokens.audio_token_id] = 1
    kind[ids == tokens.image_token_id] = 2
    kind[ids == tokens.video_token_id] = 3
    prev = torch.cat([kind.new_zeros(1), kind[:-1]])
    starts = (kind > 0) & (kind != prev)
    if use_audio_in_video:
        # Video and audio tokens of one clip are adjacent: a switch between them continues the same item.
        switch = ((kind == 1) & (prev == 3)) | ((kind == 3) & (prev == 1))
        starts &= ~switch
    return kind, starts


def _row_positions(
    ids: torch.Tensor,
    tokens: TMRoPETokens,
    use_audio_in_video: bool,
    audio_lengths: list[int],
    image_grids: list[torch.Tensor],
    video_grids: list[torch.Tensor],
    second_per_grids: list,
    counters: list[int],
) -> torch.Tensor:
    """3-D ids `(3, n)` for the valid tokens of one row. `counters` = [audio, image, video] items consumed so far."""
    n = ids.numel()
    kind, starts = _media_items(ids, tokens, use_audio_in_video)
    is_media = kind > 0
    item = torch.cumsum(starts.long(), 0) - 1  # item index per media token
    num_items = int(starts.sum())
    local = torch.zeros(3, n, dtype=torch.long)
    last_group = torch.zeros(n, dtype=torch.bool)  # tokens whose ids define their segment's extent
    item_kinds = kind[starts].tolist()
    item_slices = torch.nonzero(starts).flatten().tolist() + [None]
    for k in range(num_items):
        # A Python loop over media items (a handful per prompt), never over tokens, chunks or windows.
        lo = item_slices[k]
        sel = torch.nonzero(is_media & (item == k)).flatten()
        item_kind = kind[sel]
        kinds_present = set(item_kind.unique().tolist())
        if kinds_present == {1} and item_kinds[k] == 1:
            expected = audio_lengths[counters[0]] if counters[0] < len(audio_lengths) else None
            _check_count("audio", counters[0], expected, sel.numel())
            local[:, sel] = torch.arange(sel.numel())
            last_group[sel] = True
            counters[0] += 1
        elif kinds_present == {2}:
            grid = _take(image_grids, counters[1], "image")
            t_ids = torch.arange(int(grid[0])) * tokens.position_id_per_seconds
            loc = vision_local_ids(grid, tokens.spatial_merge_size, t_ids)
            _check_count("image", counters[1], loc.shape[1], sel.numel())
            local[:, sel] = loc
            last_group[sel] = True
            counters[1] += 1
        elif kinds_present <= {1, 3}:
            grid = _take(video_grids, counters[2], "video")
            t_ids = video_temporal_ids(int(grid[0]), second_per_grids[counters[2]], tokens.position_id_per_seconds)
            loc_v = vision_local_ids(grid, tokens.spatial_merge_size, t_ids)
            is_v = item_kind == 3
            _check_count("video", counters[2], loc_v.shape[1], int(is_v.sum()))
            local[:, sel[is_v]] = loc_v
            chunk = torch.empty_like(sel)
            chunk[is_v] = loc_v[0] // tokens.tokens_per_chunk
            counters[2] += 1
            if use_audio_in_video:
                is_a = ~is_v
                expected = audio_lengths[counters[0]] if counters[0] < len(audio_lengths) else None
                _check_count("audio (in video)", counters[0], expected, int(is_a.sum()))
                audio_local = torch.arange(int(is_a.sum()))
                local[:, sel[is_a]] = audio_local
                chunk[is_a] = audio_local // tokens.tokens_per_chunk
                counters[0] += 1
            group = chunk * 2 + (item_kind == 1).long()
            last_group[sel] = group == group[-1]
        else:
            raise ValueError(
                f"Media placeholders of different kinds are adjacent at token {lo} ({sorted(kinds_present)}): "
                "each image/audio/video needs its own start and end tokens."
            )
    # Segments: every text token starts one, except a start/end token paired with the one before it
    # (<|vision_bos|><|audio_bos|> and <|audio_eos|><|vision_eos|> of a video with audio share a position).
    prev_ids = torch.cat([ids.new_full((1,), -1), ids[:-1]])
    paired = torch.zeros_like(starts)
    if use_audio_in_video:
        paired = ((ids == tokens.audio_start_token_id) & (prev_ids == tokens.vision_start_token_id)) | (
            (ids == tokens.vision_end_token_id) & (prev_ids == tokens.audio_end_token_id)
        )
    new_segment = (~is_media & ~paired) | starts
    segment = torch.cumsum(new_segment.long(), 0) - 1
    num_segments = int(segment[-1]) + 1 if n else 0
    extent = torch.zeros(num_segments, dtype=torch.long)
    token_extent = torch.where(last_group, local.amax(0), torch.zeros_like(segment))
    extent.scatter_reduce_(0, segment, token_extent, reduce="amax")
    base = torch.cumsum(extent + 1, 0) - (extent + 1)
    return local + base[segment]


def _take(grids: list, index: int, name: str):
    if index >= len(grids):
        raise ValueError(f"The prompt has more {name} placeholders than {name}s given ({len(grids)}).")
    return grids[index]


def _check_count(name: str, index: int, expected: int | None, found: int) -> None:
    if expected is None:
        raise ValueError(f"The prompt has more {name} placeholders than {name} inputs ({index} given).")
    if expected != found:
        raise ValueError(
            f"{name} #{index} needs {expected} placeholder tokens but the prompt has {found}: "
            "build prompts with OmniProcessor, which expands each placeholder to the right length."
        )


def get_rope_index(
    input_ids: torch.Tensor,
    tokens: TMRoPETokens,
    attention_mask: torch.Tensor | None = None,
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    audio_feature_lengths: torch.Tensor | None = None,
    video_second_per_grid: torch.Tensor | list | None = None,
    use_audio_in_video: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TMRoPE position ids for a (padded) batch.

    Args:
        input_ids: `(batch, seq)` token ids with expanded media placeholders.
        tokens: token ids and timing constants, e.g. `TMRoPETokens.from_config(thinker_config)`.
        attention_mask: `(batch, seq)`, 1 for real tokens; padding (left or right) gets position 1.
        image_grid_thw / video_grid_thw: `(num, 3)` patch grids, in prompt order across the batch.
        audio_feature_lengths: `(num_audios,)` mel frames per audio clip (video audio tracks included, in order).
        video_second_per_grid: `(num_videos,)` seconds per temporal patch.
        use_audio_in_video: whether videos carry their interleaved audio track; `None` detects it from the prompt
            (a `<|vision_bos|><|audio_bos|>` pair only occurs around a video with its audio).

    Returns:
        `position_ids` `(3, batch, seq)` long and `rope_deltas` `(batch, 1)` = max id + 1 - number of real tokens,
        which carries the positions through decoding.
    """
    batch, seq = input_ids.shape
    device = input_ids.device
    if use_audio_in_video is None:
        use_audio_in_video = prompt_has_audio_in_video(input_ids, tokens)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask.bool().cpu()
    ids_cpu = input_ids.cpu()
    audio_lengths = [] if audio_feature_lengths is None else audio_token_lengths(audio_feature_lengths.cpu()).tolist()
    image_grids = [] if image_grid_thw is None else list(image_grid_thw.cpu())
    video_grids = [] if video_grid_thw is None else list(video_grid_thw.cpu())
    if video_second_per_grid is None:
        video_second_per_grid = [1.0] * len(video_grids)
    spg = [float(s) for s in torch.as_tensor(video_second_per_grid, dtype=torch.float32).flatten().tolist()]
    position_ids = torch.ones(3, batch, seq, dtype=torch.long)
    deltas = torch.zeros(batch, 1, dtype=torch.long)
    counters = [0, 0, 0]
    for b in range(batch):
        row = ids_cpu[b][mask[b]]
        if row.numel() == 0:
            continue
        pos = _row_positions(row, tokens, use_audio_in_video, audio_lengths, image_grids, video_grids, spg, counters)
        position_ids[:, b, mask[b]] = pos
        deltas[b, 0] = int(pos.max()) + 1 - row.numel()
    unused = [
        (name, len(items) - used)
        for name, items, used in (
            ("audio", audio_lengths, counters[0]),
            ("image", image_grids, counters[1]),
            ("video", video_grids, counters[2]),
        )
        if len(items) > used
    ]
    if unused:
        details = ", ".join(f"{count} {name}(s)" for name, count in unused)
        raise ValueError(f"More media than placeholders in the prompt: {details} have no placeholder tokens.")
    return position_ids.to(device), deltas.to(device)


def prompt_has_audio_in_video(input_ids: torch.Tensor, tokens: TMRoPETokens) -> bool:
    """Whether any video in `input_ids` `(batch, seq)` is interleaved with its audio track."""
    pairs = (input_ids[..., 1:] == tokens.audio_start_token_id) & (input_ids[..., :-1] == tokens.vision_start_token_id)
    return bool(pairs.any())


def mrope_axis_per_frequency(mrope_section: list[int]) -> torch.Tensor:
    """Which position axis (0 time, 1 height, 2 width) drives each of the `head_dim // 2` rotary frequencies."""
    return torch.repeat_interleave(torch.arange(len(mrope_section)), torch.tensor(mrope_section))


__all__ = [
    "TMRoPETokens",
    "audio_token_lengths",
    "get_rope_index",
    "interleave_video_audio",
    "mrope_axis_per_frequency",
    "prompt_has_audio_in_video",
    "video_temporal_ids",
]

"""Generation helpers of the Thinker: per-prompt media expansion for beam search / `num_return_sequences`.

`generate` repeats every batch tensor `expand_size` times along dim 0. Media inputs are not batch-major (images are
`(num_patches, 1176)` rows of all images, audio `(num_clips, mels, frames)` of all clips), so a plain repeat
scrambles them across beams. Here each prompt's own media items are found from its placeholder tokens and repeated
with it.
"""

import torch

from ..common.tmrope import audio_token_lengths

# kwarg → how its items are sliced: "items" (one row per item), "patches" (rows per item = grid product)
_MEDIA_KWARGS = {
    "input_features": ("audio", "items"),
    "feature_attention_mask": ("audio", "items"),
    "audio_feature_lengths": ("audio", "items"),
    "pixel_values": ("image", "patches"),
    "image_grid_thw": ("image", "items"),
    "pixel_values_videos": ("video", "patches"),
    "video_grid_thw": ("video", "items"),
    "video_second_per_grid": ("video", "items"),
}


def media_kwargs() -> tuple[str, ...]:
    """Names of the media inputs that `expand_media_for_generation` handles."""
    return tuple(_MEDIA_KWARGS)


def _item_tokens(kind: str, media: dict, merge: int) -> torch.Tensor | None:
    """Placeholder tokens per item `(num_items,)`, or None when the prompt has no such media."""
    if kind == "audio":
        if media.get("feature_attention_mask") is not None:
            return audio_token_lengths(media["feature_attention_mask"].sum(-1))
        if media.get("audio_feature_lengths") is not None:
            return audio_token_lengths(media["audio_feature_lengths"])
        if media.get("input_features") is not None:
            frames = media["input_features"].shape[-1]
            return audio_token_lengths(torch.full((media["input_features"].shape[0],), frames))
        return None
    grid = media.get(f"{'image' if kind == 'image' else 'video'}_grid_thw")
    return None if grid is None else grid.prod(-1) // merge**2


def _items_per_row(kind: str, row_tokens: torch.Tensor, item_tokens: torch.Tensor) -> list[list[int]]:
    """Which items (indices) belong to each prompt, matching placeholder counts in order."""
    rows, item = [], 0
    for b, wanted in enumerate(row_tokens.tolist()):
        mine, got = [], 0
        while got < wanted and item < len(item_tokens):
            got += int(item_tokens[item])
            mine.append(item)
            item += 1
        if got != wanted:
            raise ValueError(
                f"Prompt {b} has {wanted} {kind} placeholder tokens, which do not match its {kind} inputs: build "
                "inputs with OmniProcessor so placeholders and media match."
            )
        rows.append(mine)
    return rows


def expand_media_for_generation(config, input_ids: torch.Tensor, expand_size: int, media: dict) -> dict:
    """Repeat each prompt's media `expand_size` times, in the order `generate` repeats the prompts.

    Args:
        config: the Thinker config (placeholder ids, vision `spatial_merge_size`).
        input_ids: `(batch, seq)` prompt ids before expansion.
        media: the media kwargs present (see `media_kwargs()`); other keys are returned unchanged.
    """
    merge = config.vision_config.spatial_merge_size
    token_ids = {"audio": config.audio_token_id, "image": config.image_token_id, "video": config.video_token_id}
    out = dict(media)
    for kind, token_id in token_ids.items():
        item_tokens = _item_tokens(kind, media, merge)
        if item_tokens is None:
            continue
        rows = _items_per_row(kind, (input_ids == token_id).sum(-1).cpu(), item_tokens.cpu())
        order = torch.tensor([i for items in rows for _ in range(expand_size) for i in items], dtype=torch.long)
        for key, (key_kind, layout) in _MEDIA_KWARGS.items():
            value = media.get(key)
            if key_kind != kind or not torch.is_tensor(value):
                continue
            if layout == "items":
                out[key] = value[order.to(value.device)]
                continue
            patches = media[f"{kind}_grid_thw"].prod(-1).cpu()
            starts = torch.cumsum(patches, 0) - patches
            rows_index = [torch.arange(int(starts[i]), int(starts[i] + patches[i])) for i in order.tolist()]
            rows_index = torch.cat(rows_index) if rows_index else torch.zeros(0, dtype=torch.long)
            out[key] = value[rows_index.to(value.device)]
    return out


__all__ = ["expand_media_for_generation", "media_kwargs"]

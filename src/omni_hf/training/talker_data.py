"""Teacher-forced Talker examples: a Thinker prompt, the reply it speaks, and the reply's speech codes.

The layout is exactly what generation feeds the Talker (`models/talker_inputs.py`), written out for every step at
once. With `P` prompt positions, reply tokens `r_0..r_{n-1}` and codes `c_0..c_{m-1}`:

    position     0 .. P-1        P          P+1        P+2 ..          P+2+m
    codec input  mask ...        pad        start      c_0 .. c_{m-1}  eos
    thinker      prompt entries  bos(spk)   entry r_0  r_1 .. r_{n-1}, tts-eos, tts-pad ...
    label        -100 ...        -100       -100       c_0 .. c_{m-1}  eos     (shifted inside the loss)

A reply entry is the Thinker's final hidden state at the token plus the token's embedding, the Thinker running
teacher-forced over prompt + reply (frozen, no gradient).
"""

import torch

from ..common.tmrope import MEDIA_LAYOUT_KEYS, media_layout
from ..talker.talker_inputs import talker_prompt, text_entry

# Processor outputs for the prompt's media: the Thinker encodes THINKER_MEDIA (with ENCODER_LAYOUT); TMRoPE ids of
# both decoders follow the media layout (`MEDIA_LAYOUT_KEYS`).
THINKER_MEDIA = ("input_features", "pixel_values", "pixel_values_videos")
ENCODER_LAYOUT = ("feature_attention_mask", "image_grid_thw", "video_grid_thw")


@torch.no_grad()
def thinker_track(model, prompt_ids: torch.Tensor, reply_ids: torch.Tensor, media: dict | None = None):
    """The frozen Thinker teacher-forced over prompt + reply, as generation sees it.

    Args:
        prompt_ids: `(1, P)` Thinker prompt, media placeholders expanded; reply_ids: `(1, n)` reply tokens.
        media: the processor's media outputs for the prompt (see `talker_training_example`).

    Returns:
        `full_ids` `(1, P+n)`, `inputs_embeds` and `last_hidden_state` `(1, P+n, width)`, and the media `layout`
        (the kwargs both decoders' TMRoPE ids need: grids, `feature_attention_mask`, `use_audio_in_video`).
    """
    thinker = model.thinker
    device = thinker.device
    media = dict(media or {})
    unknown = set(media) - set(THINKER_MEDIA) - set(MEDIA_LAYOUT_KEYS)
    if unknown:
        raise ValueError(
            f"media has unknown keys {sorted(unknown)}; expected processor outputs {THINKER_MEDIA + MEDIA_LAYOUT_KEYS}"
        )
    media = {k: v.to(device) if torch.is_tensor(v) else v for k, v in media.items() if v is not None}
    layout = media_layout(media)
    full = torch.cat([torch.as_tensor(prompt_ids).view(1, -1), torch.as_tensor(reply_ids).view(1, -1)], dim=1)
    full = full.to(device)
    encoded = {k: media[k] for k in (*THINKER_MEDIA, *ENCODER_LAYOUT) if k in media}
    embeds = thinker.embed_inputs(full, **encoded)
    positions, _ = thinker.get_rope_index(full, **layout)
    hidden = thinker.model(inputs_embeds=embeds, position_ids=positions).last_hidden_state
    return full, embeds, hidden, layout


def repeat_layout(layout: dict, times: int) -> dict:
    """The media layout of one prompt for a batch of `times` copies of it (per-row masks and per-item grids)."""
    repeated = {}
    for key, value in layout.items():
        repeated[key] = value.repeat(times, *([1] * (value.dim() - 1))) if torch.is_tensor(value) else value
    return repeated


@torch.no_grad()
def talker_training_example(
    model,
    prompt_ids: torch.Tensor,
    reply_ids: torch.Tensor,
    codes: torch.Tensor,
    speaker_bos_id: int,
    media: dict | None = None,
    track: tuple | None = None,
) -> dict[str, torch.Tensor]:
    """One example for `model.talker(**example)` (batch of one, every tensor on the Talker's device).

    Args:
        model: an `OmniForConditionalGeneration` (its Thinker makes the track, its Talker config the ids).
        prompt_ids: `(1, P)` Thinker prompt (ChatML up to the assistant header), media placeholders expanded.
        reply_ids: `(1, n ≥ 1)` the reply's text tokens (without the end token).
        codes: `(m ≥ 1,)` speech codes of the spoken reply.
        speaker_bos_id: the voice's bos id (`Speaker.bos_token_id`).
        media: the processor's media outputs for the prompt (`input_features`, `feature_attention_mask`,
            `pixel_values`, `image_grid_thw`, `pixel_values_videos`, `video_grid_thw`, `video_second_per_grid`,
            `use_audio_in_video`), as in generation: the Thinker encodes them and both TMRoPE ids follow their layout.
        track: `thinker_track(model, prompt_ids, reply_ids, media)` when already computed (e.g. shared by the
            chosen and rejected codes of one DPO pair); `media` is then not read.

    Returns:
        `input_ids` (codec ids), `inputs_embeds` `(1, P+3+m, width)`, `position_ids` `(3, 1, P+3+m)`,
        `attention_mask` and `labels` `(1, P+3+m)`.
    """
    thinker, config = model.thinker, model.talker.config
    if reply_ids.dim() != 2 or reply_ids.shape[1] == 0:
        raise ValueError(f"reply_ids must be a non-empty (1, n) tensor, got shape {tuple(reply_ids.shape)}")
    codes = torch.as_tensor(codes).reshape(-1)
    if codes.numel() == 0 or int(codes.min()) < 0 or int(codes.max()) >= config.num_speech_codes:
        raise ValueError(f"codes must be a non-empty sequence of speech codes in [0, {config.num_speech_codes})")
    full, embeds, hidden, layout = track or thinker_track(model, prompt_ids, reply_ids, media)
    device = full.device
    p, n, m = prompt_ids.shape[1], reply_ids.shape[1], codes.numel()
    entries = hidden[:, p:] + embeds[:, p:]  # (1, n, width): entry of each reply token
    prompt = talker_prompt(
        thinker,
        config,
        full[:, :p],
        (embeds[:, :p], hidden[:, :p]),
        entries[:, :1],
        full[:, p : p + 1],
        speaker_bos_id,
    )
    eos, pad = (
        text_entry(thinker, config.tts_text_end_token_id, 1),
        text_entry(thinker, config.tts_text_pad_token_id, 1),
    )
    stream = torch.cat([entries[:, 1:], eos, pad.expand(1, max(m + 1 - n, 1), -1)], dim=1)[:, : m + 1]
    codes = codes.to(device)
    end = torch.tensor([config.codec_eos_token_ids[-1]], device=device)
    input_ids = torch.cat([prompt["input_ids"], codes[None], end[None]], dim=1)
    inputs_embeds = torch.cat([prompt["inputs_embeds"], stream], dim=1)
    prompt_positions, _ = model.talker.get_rope_index(prompt["input_text_ids"], **layout)
    steps = torch.arange(1, m + 2, device=device).view(1, 1, -1) + prompt_positions[..., -1:]
    labels = torch.cat([torch.full((1, p + 2), -100, device=device), codes[None], end[None]], dim=1)
    return {
        "input_ids": input_ids,
        "inputs_embeds": inputs_embeds,
        "position_ids": torch.cat([prompt_positions, steps], dim=-1),
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
    }


def pad_talker_examples(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right-pad examples into one batch (padding masked out, labels -100)."""
    length = max(e["input_ids"].shape[1] for e in examples)

    def cat(key: str, value, dim: int) -> torch.Tensor:
        padded = []
        for e in examples:
            tensor = e[key]
            widths = [0, 0] * (tensor.dim() - 1 - dim % tensor.dim()) + [0, length - tensor.shape[dim]]
            padded.append(torch.nn.functional.pad(tensor, widths, value=value))
        return torch.cat(padded, dim=1 if key == "position_ids" else 0)

    return {
        "input_ids": cat("input_ids", 0, -1),
        "inputs_embeds": cat("inputs_embeds", 0.0, 1),
        "attention_mask": cat("attention_mask", 0, -1),
        "labels": cat("labels", -100, -1),
        "position_ids": cat("position_ids", 1, -1),
    }


__all__ = [
    "ENCODER_LAYOUT",
    "THINKER_MEDIA",
    "pad_talker_examples",
    "repeat_layout",
    "talker_training_example",
    "thinker_track",
]

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

from ..models.talker_inputs import talker_prompt, text_entry


@torch.no_grad()
def talker_training_example(
    model, prompt_ids: torch.Tensor, reply_ids: torch.Tensor, codes: torch.Tensor, speaker_bos_id: int
) -> dict[str, torch.Tensor]:
    """One example for `model.talker(**example)` (batch of one, every tensor on the Talker's device).

    Args:
        model: an `OmniForConditionalGeneration` (its Thinker makes the track, its Talker config the ids).
        prompt_ids: `(1, P)` Thinker prompt (ChatML up to the assistant header).
        reply_ids: `(1, n ≥ 1)` the reply's text tokens (without the end token).
        codes: `(m ≥ 1,)` speech codes of the spoken reply.
        speaker_bos_id: the voice's bos id (`Speaker.bos_token_id`).

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
    device = thinker.device
    full = torch.cat([prompt_ids, reply_ids], dim=1).to(device)
    embeds = thinker.get_input_embeddings()(full)
    positions, _ = thinker.get_rope_index(full)
    hidden = thinker.model(inputs_embeds=embeds, position_ids=positions).last_hidden_state
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
    prompt_positions, _ = model.talker.get_rope_index(prompt["input_text_ids"])
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


__all__ = ["pad_talker_examples", "talker_training_example"]

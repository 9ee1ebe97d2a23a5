"""Turn a Thinker generation into the Talker's dual-track inputs (the official recipe).

Talker positions: the prompt (Thinker hidden state + input embedding, media positions' embeddings zeroed), the
speaker's bos entry, then the first reply entry; each later reply entry (hidden state + embedding of the sampled
text token) is fed one per decode step, followed by the tts-eos entry and tts-pad entries forever.
"""

import torch


def _zero_media(embeds: torch.Tensor, input_ids: torch.Tensor, media_ids: list[int]) -> torch.Tensor:
    media = torch.isin(input_ids, torch.tensor(media_ids, device=input_ids.device))
    return embeds.masked_fill(media.unsqueeze(-1), 0.0)


def text_entry(thinker, token_id: int, batch: int, device=None) -> torch.Tensor:
    """The Talker-track entry of an embedding-only Thinker id (tts eos / pad, speaker bos): `(batch, 1, width)`."""
    embed = thinker.get_input_embeddings()
    return embed(torch.full((batch, 1), token_id, dtype=torch.long, device=device or embed.weight.device))


def talker_prompt(
    thinker,
    talker_config,
    input_ids: torch.Tensor,
    prompt_track: tuple[torch.Tensor, torch.Tensor],
    first_entry: torch.Tensor,
    first_token: torch.Tensor,
    speaker_bos_id: int,
    attention_mask: torch.Tensor | None = None,
) -> dict:
    """The Talker prompt: every Thinker prompt position, the speaker's bos entry and the first reply entry.

    Args:
        input_ids: `(batch, prompt)` the Thinker prompt.
        prompt_track: the Thinker's `(inputs_embeds, last_hidden_state)` over the prompt, each `(batch, prompt, width)`.
        first_entry: `(batch, 1, width)` the entry (hidden state + embedding) of the first reply token.
        first_token: `(batch, 1)` the first reply token.

    Returns:
        kwargs for the Talker's `generate`: `input_ids` (codec ids), `inputs_embeds`, `input_text_ids`,
        `attention_mask` (add `thinker_reply_part`).
    """
    batch = input_ids.shape[0]
    device = input_ids.device
    config = thinker.config
    media_ids = [config.audio_token_id, config.image_token_id, config.video_token_id]
    prompt_entries = prompt_track[1] + _zero_media(prompt_track[0], input_ids, media_ids)
    bos = text_entry(thinker, speaker_bos_id, batch, device)
    codes = torch.cat(
        [
            torch.full_like(input_ids, talker_config.tts_codec_mask_token_id),
            torch.full((batch, 1), talker_config.tts_codec_pad_token_id, dtype=torch.long, device=device),
            torch.full((batch, 1), talker_config.tts_codec_start_token_id, dtype=torch.long, device=device),
        ],
        dim=1,
    )
    text_ids = torch.cat([input_ids, torch.full((batch, 1), speaker_bos_id, device=device), first_token], dim=1)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    return {
        "input_ids": codes,
        "inputs_embeds": torch.cat([prompt_entries, bos, first_entry], dim=1),
        "input_text_ids": text_ids,
        "attention_mask": torch.cat([attention_mask, attention_mask.new_ones(batch, 2)], dim=1),
    }


def build_talker_inputs(
    thinker,
    talker_config,
    input_ids: torch.Tensor,
    sequences: torch.Tensor,
    hidden_states: tuple,
    speaker_bos_id: int,
    attention_mask: torch.Tensor | None = None,
    eos_token_ids: list[int] | None = None,
) -> dict:
    """
    Args:
        thinker: the [`OmniThinkerForConditionalGeneration`] that generated (its embedding table is used).
        input_ids: `(batch, prompt)` the Thinker prompt.
        sequences: the Thinker's `generate` output `(batch, prompt + reply)`.
        hidden_states: per Thinker forward (prefill, then one per decode step), a sequence whose first item is the
            input embeddings and last item the final hidden states, e.g. `generate(..., output_hidden_states=True,
            return_dict_in_generate=True).hidden_states`, or `(inputs_embeds, last_hidden_state)` pairs.
        speaker_bos_id: Thinker-vocabulary id of the speaker's bos entry.
        eos_token_ids: Thinker end ids; the reply entries stop at the first one.

    Returns:
        kwargs for `talker.generate`: `input_ids` (codec ids), `inputs_embeds`, `thinker_reply_part`,
        `input_text_ids`, `attention_mask`.
    """
    batch, prompt_len = input_ids.shape
    device = input_ids.device
    generated = sequences[:, prompt_len:]
    if generated.shape[1] < 2:
        raise ValueError("The Thinker reply must have at least 2 tokens to be spoken")
    reply = torch.cat([h[-1] for h in hidden_states[1:]], dim=1) + torch.cat([h[0] for h in hidden_states[1:]], dim=1)
    inputs = talker_prompt(
        thinker,
        talker_config,
        input_ids,
        (hidden_states[0][0], hidden_states[0][-1]),
        reply[:, :1],
        generated[:, :1],
        speaker_bos_id,
        attention_mask,
    )
    eos = text_entry(thinker, talker_config.tts_text_end_token_id, batch, device)
    pad = text_entry(thinker, talker_config.tts_text_pad_token_id, batch, device)
    stream = torch.cat([reply[:, 1:], eos, pad], dim=1)
    if eos_token_ids is not None:
        ends = torch.isin(generated, torch.as_tensor(eos_token_ids, device=device).flatten())
        steps = torch.arange(generated.shape[1], device=device)
        first_end = torch.where(ends, steps, generated.shape[1]).min(-1).values.clamp(1, generated.shape[1] - 1)
        slot = torch.arange(stream.shape[1], device=device).unsqueeze(0)
        stream = torch.where((slot >= first_end[:, None]).unsqueeze(-1), pad, stream)
        stream = torch.where((slot == first_end[:, None] - 1).unsqueeze(-1), eos, stream)
    return {**inputs, "thinker_reply_part": stream}


__all__ = ["build_talker_inputs", "talker_prompt", "text_entry"]

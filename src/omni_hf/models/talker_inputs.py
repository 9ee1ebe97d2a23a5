"""Turn a Thinker generation into the Talker's dual-track inputs (the official recipe).

Talker positions: the prompt (Thinker hidden state + input embedding, media positions' embeddings zeroed), the
speaker's bos entry, then the first reply entry; each later reply entry (hidden state + embedding of the sampled
text token) is fed one per decode step, followed by the tts-eos entry and tts-pad entries forever.
"""

import torch


def _zero_media(embeds: torch.Tensor, input_ids: torch.Tensor, media_ids: list[int]) -> torch.Tensor:
    media = torch.isin(input_ids, torch.tensor(media_ids, device=input_ids.device))
    return embeds.masked_fill(media.unsqueeze(-1), 0.0)


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
    config = thinker.config
    embed = thinker.get_input_embeddings()
    generated = sequences[:, prompt_len:]
    if generated.shape[1] < 2:
        raise ValueError("The Thinker reply must have at least 2 tokens to be spoken")
    media_ids = [config.audio_token_id, config.image_token_id, config.video_token_id]
    prompt_embeds = _zero_media(hidden_states[0][0], input_ids, media_ids)
    prompt_entries = hidden_states[0][-1] + prompt_embeds
    reply = torch.cat([h[-1] for h in hidden_states[1:]], dim=1) + torch.cat([h[0] for h in hidden_states[1:]], dim=1)

    def entry(token_id: int) -> torch.Tensor:
        return embed(torch.full((batch, 1), token_id, dtype=torch.long, device=device))

    eos, pad = entry(talker_config.tts_text_end_token_id), entry(talker_config.tts_text_pad_token_id)
    inputs_embeds = torch.cat([prompt_entries, entry(speaker_bos_id), reply[:, :1]], dim=1)
    stream = torch.cat([reply[:, 1:], eos, pad], dim=1)
    if eos_token_ids is not None:
        ends = torch.isin(generated, torch.as_tensor(eos_token_ids, device=device).flatten())
        steps = torch.arange(generated.shape[1], device=device)
        first_end = torch.where(ends, steps, generated.shape[1]).min(-1).values.clamp(1, generated.shape[1] - 1)
        slot = torch.arange(stream.shape[1], device=device).unsqueeze(0)
        stream = torch.where((slot >= first_end[:, None]).unsqueeze(-1), pad, stream)
        stream = torch.where((slot == first_end[:, None] - 1).unsqueeze(-1), eos, stream)
    codes = torch.cat(
        [
            torch.full_like(input_ids, talker_config.tts_codec_mask_token_id),
            torch.full((batch, 1), talker_config.tts_codec_pad_token_id, dtype=torch.long, device=device),
            torch.full((batch, 1), talker_config.tts_codec_start_token_id, dtype=torch.long, device=device),
        ],
        dim=1,
    )
    text_ids = torch.cat([input_ids, torch.full((batch, 1), speaker_bos_id, device=device), generated[:, :1]], dim=1)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 2)], dim=1)
    return {
        "input_ids": codes,
        "inputs_embeds": inputs_embeds,
        "thinker_reply_part": stream,
        "input_text_ids": text_ids,
        "attention_mask": mask,
    }


__all__ = ["build_talker_inputs"]

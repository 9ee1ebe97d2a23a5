"""A `generate` decoding loop that advances one token per call, so two decoders can run interleaved.

`StepDecoder.start(model, **generate_kwargs)` hands `generate` a `custom_generate` callable: `generate` does all of
its usual preparation (generation config and kwargs, logits processors, stopping criteria, cache, TMRoPE position
ids) and passes the result to the callable, which keeps it instead of looping. Each `step()` then runs one iteration
of the sampling loop of `GenerationMixin` (prefill first, then one cached forward per token), with the same logits
processors, sampling and stopping rules, so greedy decoding reproduces `generate` token for token.

Lean decoding: for one unpadded sequence on a model with `decode_step_embeds` / `decode_head` (the Thinker and the
Talker), each step after the prefill skips `prepare_inputs_for_generation`, mask building and the kwargs update:
the model embeds the last token, runs its decoder on the cache with no mask (one query sees every cached position)
and returns the last hidden state; the head follows. With a `StaticCache` the step attends to the filled positions
only, and with a `compile_config` on CPU it is compiled (`omni_hf.common.compiled_step`). Greedy steps over a large
float32 vocabulary on CPU choose the token with `ScreenedArgmaxHead` (exact argmax, a quarter of the weight bytes).
`LeanGenerationMixin` routes `generate`'s greedy / sampling loop through this decoder when it applies.
"""

import torch
from torch import nn

from .compiled_step import CompiledStepRunner, compiled_decode_step, compiled_decoding_applies
from .screened_head import processors_are_monotone, screened_head, with_cached_masks

_UNSUPPORTED = ("num_beams", "assistant_model", "prompt_lookup_num_tokens", "num_return_sequences")


def lean_decoding_applies(model, input_ids: torch.Tensor, model_kwargs: dict) -> bool:
    """Whether `model` can decode `input_ids` `(batch, seq)` with the lean step (one row, no padding, full
    attention, a cache)."""
    if not hasattr(model, "decode_step_embeds") or input_ids.shape[0] != 1:
        return False
    if not model_kwargs.get("use_cache", True) or model_kwargs.get("position_ids") is None:
        return False
    mask = model_kwargs.get("attention_mask")
    if mask is not None and not bool(mask.all()):
        return False
    decoder = model.model
    return not decoder.has_sliding_layers


class StepDecoder:
    """State of one decoding run: `sequences` `(batch, prompt + generated)` grows by one column per `step()`."""

    def __init__(self, model, input_ids, logits_processor, stopping_criteria, generation_config, model_kwargs):
        self.model = model
        self.sequences = input_ids
        self.prompt_length = input_ids.shape[1]
        self.logits_processor = logits_processor
        self.stopping_criteria = stopping_criteria
        self.generation_config = generation_config
        self.model_kwargs = model_kwargs
        self.unfinished = torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        pad = generation_config._pad_token_tensor
        self.pad_token_id = None if pad is None else pad.to(input_ids.device)
        self.stops_on_eos = any(hasattr(criteria, "eos_token_id") for criteria in stopping_criteria)
        self.finished = False
        self.steps = 0
        self.lean = lean_decoding_applies(model, input_ids, model_kwargs)
        self.position = None  # (3, 1, 1) TMRoPE ids of the next token, in lean mode
        self.screen = self.compiled = None
        if self.lean:
            self.logits_processor = with_cached_masks(logits_processor)
            if compiled_decoding_applies(model, generation_config, model_kwargs):
                compiled_decode_step(generation_config.compile_config)  # a bad backend fails now, before the prefill
                self.compiled = generation_config.compile_config  # the runner is built after the prefill
        if self.lean and not generation_config.do_sample and processors_are_monotone(self.logits_processor):
            self.screen = screened_head(model.decode_head(), model)

    @classmethod
    def start(cls, model, **generate_kwargs) -> "StepDecoder":
        """Prepare decoding exactly as `model.generate(**generate_kwargs)` would, without decoding anything yet."""
        for key in _UNSUPPORTED:
            if generate_kwargs.get(key) not in (None, 1):
                raise ValueError(
                    f"Step-wise decoding supports greedy and sampling only, not {key}={generate_kwargs[key]}"
                )
        if generate_kwargs.get("streamer") is not None:
            raise ValueError("Step-wise decoding yields tokens itself; do not pass a streamer")
        return model.generate(custom_generate=cls._capture, **generate_kwargs)

    @classmethod
    def _capture(cls, model, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs):
        for key in ("synced_gpus", "streamer"):  # generation-mode kwargs `generate` passes along
            model_kwargs.pop(key, None)
        return cls(model, input_ids, logits_processor, stopping_criteria, generation_config, model_kwargs)

    @property
    def generated(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_length :]

    def forward(self):
        """The model forward of the next step (the prefill the first time); updates the generation kwargs."""
        model, kwargs = self.model, self.model_kwargs
        if self.steps == 0:
            outputs = model._prefill(self.sequences, self.generation_config, kwargs)
        else:
            inputs = model.prepare_inputs_for_generation(self.sequences, next_sequence_length=1, **kwargs)
            outputs = model(**inputs, return_dict=True)
        self.model_kwargs = model._update_model_kwargs_for_generation(outputs, kwargs, is_encoder_decoder=False)
        return outputs

    def lean_scores(self) -> torch.Tensor:
        """One lean decode step: processed scores `(1, vocab)` of the next token (exact wherever they can win)."""
        if self.position is None:
            self.position = self.model_kwargs["position_ids"][..., -1:].clone()
        else:
            self.position = self.position + 1  # not in place: the tensor may come from inference mode
        hidden = self.decode_step(self.model.decode_step_embeds(self.sequences[:, -1], self.model_kwargs))
        scores = None
        if self.screen is not None:
            scores = self.screen.scores(hidden[:, -1], self.sequences, self.logits_processor)
        if scores is None:
            logits = self.model.decode_head()(hidden)[:, -1].to(dtype=torch.float32, device=self.sequences.device)
            scores = self.logits_processor(self.sequences, logits)
        return scores

    def decode_step(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """The decoder on one new position `(1, 1, hidden)` → final hidden state `(1, 1, hidden)`."""
        cache = self.model_kwargs["cache"]
        if self.compiled is not None and not isinstance(self.compiled, CompiledStepRunner):
            self.compiled = CompiledStepRunner(self.model, self.compiled, cache)
        return self.model.model.decode_step(inputs_embeds, self.position, cache, step_fn=self.compiled)

    @torch.no_grad()
    def step(self) -> torch.Tensor:
        """Run one forward and choose the next token `(batch,)`; sets `finished` when every row has stopped."""
        if self.finished:
            raise RuntimeError("This decoder has finished; start a new one")
        if self.lean and self.steps > 0:
            scores = self.lean_scores()
        else:
            outputs = self.forward()
            logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32, device=self.sequences.device)
            del outputs
            scores = self.logits_processor(self.sequences, logits)
        return self.pick(scores)

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Pick the next tokens `(batch,)` from last-position float32 logits `(batch, vocab)` (logits processors,
        sampling or greedy, stopping); used when a batched forward was run for several decoders at once."""
        return self.pick(self.logits_processor(self.sequences, logits))

    def pick(self, scores: torch.Tensor) -> torch.Tensor:
        """Sample (or take the argmax of) processed `scores` `(batch, vocab)`, append the tokens, apply stopping."""
        if self.generation_config.do_sample:
            tokens = torch.multinomial(nn.functional.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            tokens = torch.argmax(scores, dim=-1)
        if self.stops_on_eos and self.pad_token_id is not None:
            tokens = tokens * self.unfinished + self.pad_token_id * (1 - self.unfinished)
        self.sequences = torch.cat([self.sequences, tokens[:, None]], dim=-1)
        self.unfinished = self.unfinished & ~self.stopping_criteria(self.sequences, None)
        self.finished = bool(self.unfinished.max() == 0)
        self.steps += 1
        return tokens

    def close(self) -> None:
        """Drop the cache and inputs (frees memory when a stream stops early)."""
        self.model_kwargs = {}
        self.finished = True


class LeanGenerationMixin:
    """Routes `generate`'s greedy / sampling loop through a lean `StepDecoder` when it applies (one unpadded row,
    no streamer, no per-step outputs requested, no CUDA-compiled forward); otherwise `GenerationMixin._sample`
    runs. Put it before `GenerationMixin` in the bases. The model provides `decode_step_embeds` and `decode_head`."""

    def _sample(
        self,
        input_ids,
        logits_processor,
        stopping_criteria,
        generation_config,
        synced_gpus: bool = False,
        streamer=None,
        **model_kwargs,
    ):
        lean = (
            not synced_gpus
            and streamer is None
            and not generation_config.return_dict_in_generate
            and not generation_config.is_assistant
            and lean_decoding_applies(self, input_ids, model_kwargs)
            and (
                compiled_decoding_applies(self, generation_config, model_kwargs)
                or not self._valid_auto_compile_criteria(model_kwargs, generation_config)
            )
        )
        if not lean:
            return super()._sample(
                input_ids,
                logits_processor,
                stopping_criteria,
                generation_config,
                synced_gpus=synced_gpus,
                streamer=streamer,
                **model_kwargs,
            )
        decoder = StepDecoder(self, input_ids, logits_processor, stopping_criteria, generation_config, model_kwargs)
        while not decoder.finished:
            decoder.step()
        sequences = decoder.sequences
        decoder.close()
        return sequences


__all__ = ["LeanGenerationMixin", "StepDecoder", "lean_decoding_applies"]

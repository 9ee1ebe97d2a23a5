"""Talker re-alignment after Thinker fine-tuning: teach the Talker to speak a fine-tuned Thinker's replies as the
original model would.

The Talker reads the Thinker's hidden states; fine-tuning the Thinker (SFT) moves them, and the original Talker then
speaks its replies differently (users of the official model report broken speech). Re-alignment is distillation
with teacher-forced targets:

* teacher: the original Talker on the ORIGINAL Thinker's track of (prompt, reply) → greedy codes;
* student: the Talker (LoRA adapter or full) on the FINE-TUNED Thinker's track of the same (prompt, reply), trained
  with cross-entropy on the teacher's codes (`talker_training_example`, the layout generation feeds it);
* replies are the fine-tuned Thinker's own (or given texts), so the Talker learns the new Thinker's outputs.

`code_agreement` measures the share of code positions where the Talker's next-code choice (teacher-forced argmax
over speech codes and the end token) equals the teacher's code: 1.0 for the original pair by construction, lower
after the Thinker SFT, recovering after re-alignment. `free_running_agreement` compares greedy generations.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.utils import logging

from .preference_pairs import prepare_prompt, sample_candidates
from .talker_data import pad_talker_examples, talker_training_example
from .voice_lora import DEFAULT_PROMPT, train_voice_adapter

logger = logging.get_logger(__name__)

GREEDY = {"do_sample": False, "repetition_penalty": 1.0}


def load_thinker(path: str | os.PathLike, dtype=None):
    """A fine-tuned Thinker: a folder saved by `recipes/sft.py` (a Thinker) or a full omni_hf model folder."""
    import json

    from ..omni import OmniForConditionalGeneration
    from ..thinker import OmniThinkerForConditionalGeneration

    config = Path(path) / "config.json"
    if not config.is_file():
        raise ValueError(f"fine-tuned Thinker {str(path)!r} is not a saved model folder (no config.json)")
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if "thinker_config" in json.loads(config.read_text()):
        return OmniForConditionalGeneration.from_pretrained(str(path), **kwargs).thinker
    return OmniThinkerForConditionalGeneration.from_pretrained(str(path), **kwargs)


def check_same_shape(original, tuned) -> None:
    """The fine-tuned Thinker must have the original's width and vocabulary (the Talker reads its states)."""
    for key in ("hidden_size", "vocab_size"):
        a, b = getattr(original.config.text_config, key), getattr(tuned.config.text_config, key)
        if a != b:
            raise ValueError(f"the fine-tuned Thinker's {key} is {b}, the original's {a}: not the same model family")


@contextmanager
def use_thinker(model, thinker):
    """Run `model` with another Thinker in place (restored afterwards)."""
    original = model.thinker
    model.thinker = thinker
    try:
        yield model
    finally:
        model.thinker = original


def teacher_targets(
    model,
    processor,
    items: list,
    tuned_thinker,
    speaker: str = "Chelsie",
    max_new_tokens: int = 600,
    template: str = DEFAULT_PROMPT,
) -> list[dict]:
    """Prompts → rows `{"prompt_ids" (1, P), "reply_ids" (1, n), "codes" (m,), "media", "text", "ended"}`.

    Replies: given texts, or the fine-tuned Thinker's greedy answer. Codes: the ORIGINAL model's greedy speech of
    that reply (its Thinker must be `model.thinker`). Items whose teacher speech is empty are skipped (logged)."""
    if speaker not in model.speakers:
        raise ValueError(f"speaker {speaker!r} is not one of the model's speakers {list(model.speakers)}")
    if not items:
        raise ValueError("no prompts to re-align on")
    with use_thinker(model, tuned_thinker):
        rows = [prepare_prompt(model, processor, item, i, template) for i, item in enumerate(items)]
    targets = []
    for i, row in enumerate(rows):
        (codes,) = sample_candidates(
            model, row["thinker_prompt_ids"], row["thinker_reply_ids"], 1, speaker, None, max_new_tokens,
            media=row["media"], **GREEDY,
        )  # fmt: skip
        if codes.numel() == 0:
            logger.warning(f"prompt {i}: the original Talker says nothing for {row['text']!r}; skipped")
            continue
        targets.append(
            {
                "prompt_ids": torch.tensor([row["thinker_prompt_ids"]]),
                "reply_ids": torch.tensor([row["thinker_reply_ids"]]),
                "codes": codes,
                "media": row["media"],
                "text": row["text"],
                "ended": codes.numel() < max_new_tokens,  # else cut at the limit: no end token to learn
            }
        )
    if not targets:
        raise ValueError("the original Talker produced no speech for any prompt: nothing to re-align on")
    return targets


def realign_examples(model, targets: list[dict], speaker: str = "Chelsie") -> list[dict]:
    """Teacher-forced Talker examples on `model.thinker`'s track (swap in the fine-tuned Thinker first)."""
    bos = model.speakers[speaker].bos_token_id
    examples = []
    for t in targets:
        example = talker_training_example(model, t["prompt_ids"], t["reply_ids"], t["codes"], bos, media=t["media"])
        if not t.get("ended", True):
            example["labels"][0, -1] = -100  # the teacher was cut at max_new_tokens, it did not end there
        examples.append(example)
    return examples


@torch.no_grad()
def code_agreement(talker, examples: list[dict], allowed: torch.Tensor | None = None) -> float:
    """Share of labelled positions (codes + end) where argmax of the Talker's logits (over `allowed` ids: speech
    codes and end tokens by default) equals the label."""
    config = getattr(talker, "config", None)
    if allowed is None:
        allowed = torch.cat([torch.arange(config.num_speech_codes), torch.tensor(config.codec_eos_token_ids)])
    was_training = talker.training
    talker.eval()
    hits = total = 0
    for example in examples:
        batch = {k: v.to(talker.device) for k, v in example.items() if k != "labels"}
        logits = talker(**batch).logits[0, :-1].float()
        labels = example["labels"][0, 1:].to(logits.device)
        keep = labels != -100
        mask = torch.full((logits.shape[-1],), float("-inf"), device=logits.device)
        mask[allowed.to(logits.device)] = 0.0
        predicted = (logits + mask).argmax(-1)
        hits += int((predicted[keep] == labels[keep]).sum())
        total += int(keep.sum())
    talker.train(was_training)
    return hits / max(total, 1)


@torch.no_grad()
def free_running_agreement(
    model, targets: list[dict], speaker: str = "Chelsie", voice_adapter: str | None = None
) -> float:
    """Share of the teacher's code positions where the Talker's own greedy speech has the same code (generation as
    at inference, `max_new_tokens` = the teacher's length)."""
    hits = total = 0
    for t in targets:
        (codes,) = sample_candidates(
            model, t["prompt_ids"][0].tolist(), t["reply_ids"][0].tolist(), 1, speaker, voice_adapter, len(t["codes"]),
            media=t["media"], **GREEDY,
        )  # fmt: skip
        n = min(len(codes), len(t["codes"]))
        hits += int((codes[:n] == t["codes"][:n]).sum())
        total += len(t["codes"])
    return hits / max(total, 1)


def train_full_talker(
    model,
    examples: list[dict],
    output_dir: str,
    max_steps: int = 200,
    learning_rate: float = 1e-5,
    batch_size: int = 4,
    seed: int = 0,
    **training_args,
) -> dict:
    """Fine-tune every Talker weight on `examples` (transformers' `Trainer`; the Thinker stays frozen)."""
    if not examples:
        raise ValueError("No training examples")
    model.thinker.requires_grad_(False)
    talker = model.talker.requires_grad_(True)
    args = TrainingArguments(
        output_dir=output_dir, max_steps=max_steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, seed=seed, report_to=[], remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(), **training_args,
    )  # fmt: skip
    talker.train()
    trainer = Trainer(model=talker, args=args, train_dataset=list(examples), data_collator=pad_talker_examples)
    trainer.train()
    talker.eval()
    return {"steps": trainer.state.global_step, "trainable_parameters": sum(p.numel() for p in talker.parameters())}


def realign_talker(
    model,
    processor,
    items: list,
    tuned_thinker,
    output_dir: str | os.PathLike,
    lora_config=None,
    adapter_name: str = "realigned",
    speaker: str = "Chelsie",
    max_new_tokens: int = 600,
    max_steps: int = 200,
    learning_rate: float = 2e-4,
    batch_size: int = 4,
    seed: int = 0,
    **training_args,
) -> dict:
    """Teacher targets from the original model, then the Talker trained on the fine-tuned Thinker's track.

    On return `model.thinker` is the fine-tuned Thinker (the pair that now speaks as the original did) and the
    Talker is re-aligned (adapter `adapter_name` active with `lora_config`, else its weights changed). Returns the
    code agreement of the original pair, after the SFT (before re-alignment) and after, and training figures."""
    check_same_shape(model.thinker, tuned_thinker)
    tuned_thinker.requires_grad_(False).eval()
    targets = teacher_targets(model, processor, items, tuned_thinker, speaker, max_new_tokens)
    original = code_agreement(model.talker, realign_examples(model, targets, speaker))
    model.thinker = tuned_thinker.to(model.thinker.device)
    examples = realign_examples(model, targets, speaker)
    before = code_agreement(model.talker, examples)
    before_free = free_running_agreement(model, targets, speaker)
    common = dict(max_steps=max_steps, learning_rate=learning_rate, batch_size=batch_size, seed=seed)
    if lora_config is not None:
        figures = train_voice_adapter(
            model, examples, adapter_name, str(output_dir), lora_config, **common, **training_args
        )
        student, adapter = model.voice_adapters.peft, adapter_name
    else:
        figures = train_full_talker(model, examples, str(output_dir), **common, **training_args)
        student, adapter = model.talker, None
    after = code_agreement(student, examples)
    after_free = free_running_agreement(model, targets, speaker, adapter)  # with the adapter, if any
    return {
        "prompts": len(targets),
        "codes": int(sum(len(t["codes"]) for t in targets)),
        "agreement_original": original,
        "agreement_after_sft": before,
        "agreement_realigned": after,
        "free_running_after_sft": before_free,
        "free_running_realigned": after_free,
        **{k: v for k, v in figures.items() if k in ("steps", "trainable_parameters", "loss_before", "loss_after")},
    }


__all__ = [
    "check_same_shape",
    "code_agreement",
    "free_running_agreement",
    "load_thinker",
    "realign_examples",
    "realign_talker",
    "teacher_targets",
    "train_full_talker",
    "use_thinker",
]

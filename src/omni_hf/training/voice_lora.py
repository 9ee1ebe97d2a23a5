"""Train a LoRA voice adapter on the Talker from (text, speech codes) pairs of one speaker.

Each pair becomes a teacher-forced example (`omni_hf.training.talker_training_example`): the frozen Thinker reads a
ChatML prompt whose assistant reply is the text, and the Talker learns to predict the codes of that speech. Training
runs on transformers' `Trainer` (logging, checkpoints, `resume_from_checkpoint`), only the adapter is trainable.
"""

import random
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.utils import logging

from ..voices.adapters import voice_lora_config
from .recipe_inputs import read_jsonl, synthetic_count
from .talker_data import pad_talker_examples, talker_training_example

logger = logging.get_logger(__name__)

DEFAULT_PROMPT = "Read this aloud: {text}"


def voice_examples(model, processor, rows, speaker: str, prompt: str = DEFAULT_PROMPT) -> list[dict]:
    """`rows`: dicts with `text` and `codes` (speech codes of that text said by the voice) → Talker examples."""
    tokenizer = processor.tokenizer
    bos = model.speakers[speaker].bos_token_id
    examples = []
    for i, row in enumerate(rows):
        text = (row.get("text") or "").strip()
        if not text:
            raise ValueError(f"Row {i} has an empty text")
        conversation = [{"role": "user", "content": [{"type": "text", "text": prompt.format(text=text)}]}]
        prompt_text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        prompt_ids = torch.tensor([tokenizer(prompt_text, add_special_tokens=False)["input_ids"]])
        reply_ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        examples.append(talker_training_example(model, prompt_ids, reply_ids, torch.as_tensor(row["codes"]), bos))
    return examples


def synthetic_rows(count: int, seed: int, vocabulary: int = 64) -> list[dict]:
    """A stand-in voice for CPU runs: its speech only uses `vocabulary` codes (a voice-specific code distribution)."""
    rng = random.Random(seed)
    return [
        {"text": f"sentence number {i}", "codes": [rng.randrange(vocabulary) for _ in range(24)]} for i in range(count)
    ]


def load_rows(data: str, speech_tokenizer: str | None, seed: int) -> list[dict]:
    """Rows `{"text", "codes"}`, plus `"waveform"` and `"sampling_rate"` where the row has audio (the DiT part
    trains on those). Rows whose audio cannot be decoded are skipped and counted."""
    if data.startswith("synthetic:"):
        return synthetic_rows(synthetic_count(data), seed)
    import soundfile

    manifest = Path(data)
    rows = read_jsonl(manifest)  # a malformed line is named by file and line
    tokenizer, skipped, ready = None, 0, []
    for i, row in enumerate(rows):
        if "text" not in row or not ({"codes", "audio"} & set(row)):
            raise ValueError(f"{data} row {i} needs 'text' and either 'codes' or 'audio', got {sorted(row)}")
        if "codes" not in row and speech_tokenizer is None:
            raise ValueError(f"{data} row {i} has audio but no codes: pass --speech_tokenizer to encode it")
        item = {"text": row["text"]}
        if "audio" in row:
            try:
                audio, rate = soundfile.read(manifest.parent / row["audio"], dtype="float32", always_2d=True)
            except Exception as error:  # undecodable: skipped and counted
                logger.warning(f"Skipping row {i}: cannot decode {row['audio']!r} ({error})")
                skipped += 1
                continue
            item |= {"waveform": audio.mean(axis=1), "sampling_rate": rate}
        if "codes" in row:
            item["codes"] = list(row["codes"])
        else:
            if tokenizer is None:
                from ..voices.speech_tokenizer import OmniSpeechTokenizer

                tokenizer = OmniSpeechTokenizer.from_pretrained(speech_tokenizer).eval()
            item["codes"] = tokenizer.encode(item["waveform"], item["sampling_rate"]).tolist()
        ready.append(item)
    if skipped:
        logger.warning(f"Skipped {skipped} of {len(rows)} rows with undecodable audio")
    if not ready:
        raise ValueError(f"{data}: no usable rows ({skipped} undecodable)")
    return ready


@torch.no_grad()
def code_share(model, processor, voice_adapter: str | None, vocabulary: int = 64, prompts: int = 3) -> float:
    """Share of greedy speech codes inside the stand-in voice's code set (tiny runs: how much the voice took)."""
    from ..omni import StreamStats

    codes = []
    for i in range(prompts):
        conversation = [{"role": "user", "content": [{"type": "text", "text": f"Read this aloud: sentence {i}"}]}]
        inputs = processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        for event in model.stream(
            inputs["input_ids"],
            voice_adapter=voice_adapter,
            thinker_max_new_tokens=6,
            thinker_do_sample=False,
            talker_do_sample=False,
            talker_max_new_tokens=24,
            return_audio=True,
        ):
            if isinstance(event, StreamStats):
                codes += event.speech_code_ids
    return sum(c < vocabulary for c in codes) / max(len(codes), 1)


class _Examples(torch.utils.data.Dataset):
    def __init__(self, examples):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, index):
        return self.examples[index]


@torch.no_grad()
def mean_loss(talker, examples: list[dict]) -> float:
    talker.eval()
    return float(sum(talker(**{k: v.to(talker.device) for k, v in e.items()}).loss for e in examples) / len(examples))


def train_voice_adapter(
    model,
    examples: list[dict],
    name: str,
    output_dir: "str | TrainingArguments",
    lora_config=None,
    max_steps: int = 200,
    learning_rate: float = 2e-4,
    batch_size: int = 4,
    seed: int = 0,
    logging_steps: int = 10,
    save_steps: int = 100,
    resume_from_checkpoint: str | bool | None = None,
    **training_args,
) -> dict:
    """Add adapter `name` to `model.voice_adapters` (unless it is loaded already) and train it on `examples`.

    `output_dir` is the checkpoint folder, or the whole `TrainingArguments` (a recipe's parsed flags; then the
    other training keywords are ignored).

    Returns the mean loss before and after training and the numbers of trainable / total Talker parameters."""
    if not examples:
        raise ValueError("No training examples")
    if name not in model.voice_adapters:
        model.voice_adapters.add(name, lora_config or voice_lora_config())
    peft = model.voice_adapters.peft
    peft.set_adapter(name)  # only this adapter is trainable
    before = mean_loss(peft, examples)
    args = output_dir if isinstance(output_dir, TrainingArguments) else None
    args = args or TrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        logging_steps=logging_steps,
        save_steps=save_steps,
        save_total_limit=2,
        report_to=[],
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        **training_args,
    )
    peft.train()
    trainer = Trainer(model=peft, args=args, train_dataset=_Examples(examples), data_collator=pad_talker_examples)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    peft.eval()
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    return {
        "loss_before": before,
        "loss_after": mean_loss(peft, examples),
        "trainable_parameters": trainable,
        "talker_parameters": sum(p.numel() for p in peft.parameters()),
        "steps": trainer.state.global_step,
    }


__all__ = [
    "DEFAULT_PROMPT",
    "code_share",
    "load_rows",
    "mean_loss",
    "synthetic_rows",
    "train_voice_adapter",
    "voice_examples",
]

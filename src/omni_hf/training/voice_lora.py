"""Train a LoRA voice adapter on the Talker from (text, speech codes) pairs of one speaker.

Each pair becomes a teacher-forced example (`omni_hf.training.talker_training_example`): the frozen Thinker reads a
ChatML prompt whose assistant reply is the text, and the Talker learns to predict the codes of that speech. Training
runs on transformers' `Trainer` (logging, checkpoints, `resume_from_checkpoint`), only the adapter is trainable.
"""

import torch
from transformers import Trainer, TrainingArguments
from transformers.utils import logging

from ..voices.adapters import voice_lora_config
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
    output_dir: str,
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
    """Add adapter `name` to `model.voices` (unless it is loaded already) and train it on `examples`.

    Returns the mean loss before and after training and the numbers of trainable / total Talker parameters."""
    if not examples:
        raise ValueError("No training examples")
    if name not in model.voices:
        model.voices.add(name, lora_config or voice_lora_config())
    peft = model.voices.peft
    peft.set_adapter(name)  # only this adapter is trainable
    before = mean_loss(peft, examples)
    args = TrainingArguments(
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


__all__ = ["DEFAULT_PROMPT", "mean_loss", "train_voice_adapter", "voice_examples"]

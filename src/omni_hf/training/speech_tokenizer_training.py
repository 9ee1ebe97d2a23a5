"""Training an [`OmniSpeechTokenizer`] by inverting the released decoder (token2wav).

1. `sample_code_sequences`: speech code sequences, from the Talker on text prompts (`source="talker"`, the codes real
   replies use), uniformly from all codes (`"uniform"`), or from a fixed subset of `code_vocabulary` codes
   (`"vocabulary"`; a random tiny Talker emits near-uniform codes, so a small subset makes learning measurable).
2. `synthesize`: codes → audio with `model.token2wav` across the model's speakers, augmented (random gain, white
   noise at a random SNR) → `SpeechCodePair(mel (2n, 80), codes (n,))`.
3. `collate_pairs` pads a batch; `fit_tokenizer` trains on transformers' `Trainer` (`train_tokenizer`: AdamW,
   warmup + cosine, grad clipping, no checkpoints).
4. `evaluate`: held-out code accuracy (chance is 1 / number of codes in use), and a round-trip score: predicted
   codes → token2wav (same speaker) → log-mel L1 against the held-out mel, next to the same score for random codes
   (the baseline) and for the true codes re-decoded with other noise (the floor the decoder's noise allows).
"""

import itertools
import logging
import math
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..token2wav.mel import MelSettings, log_mel_spectrogram
from ..voices.speech_tokenizer import OmniSpeechTokenizer

logger = logging.getLogger(__name__)

MEL = MelSettings()


@dataclass
class SpeechCodePair:
    """One training example: `mel` `(2 * n, 80)` log-mel of the synthesised audio, `codes` `(n,)`, its speaker."""

    mel: torch.Tensor
    codes: torch.LongTensor
    speaker: str


@dataclass
class Augmentation:
    """Waveform augmentation: gain uniform in `gain_db` (dB); with probability `noise_probability`, white noise at an
    SNR uniform in `snr_db` (dB)."""

    gain_db: tuple[float, float] = (-12.0, 6.0)
    snr_db: tuple[float, float] = (10.0, 40.0)
    noise_probability: float = 0.5

    def __call__(self, audio: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`(batch, samples)` → augmented `(batch, samples)` (each row drawn independently)."""
        batch = audio.shape[0]
        low, high = self.gain_db
        gain = 10 ** ((low + (high - low) * torch.rand(batch, 1, generator=generator)) / 20)
        audio = audio * gain
        low, high = self.snr_db
        snr = low + (high - low) * torch.rand(batch, 1, generator=generator)
        use_noise = torch.rand(batch, 1, generator=generator) < self.noise_probability
        power = audio.pow(2).mean(-1, keepdim=True).clamp_min(1e-10)
        noise = torch.randn(audio.shape, generator=generator) * (power / 10 ** (snr / 10)).sqrt()
        return audio + noise * use_noise


def make_code_vocabulary(size: int, num_codes: int = 8193, seed: int = 0) -> torch.LongTensor:
    """A fixed random subset of `size` codes out of `[0, num_codes)`, sorted."""
    if not 0 < size <= num_codes:
        raise ValueError(f"code_vocabulary size must be in (0, {num_codes}], got {size}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_codes, generator=generator)[:size].sort().values


def sample_code_sequences(
    num_sequences: int,
    length: int,
    source: str = "vocabulary",
    *,
    generator: torch.Generator | None = None,
    code_vocabulary: torch.Tensor | Sequence[int] | None = None,
    num_codes: int = 8193,
    model=None,
    prompts: Sequence[torch.Tensor] | None = None,
    speakers: Sequence[str] | None = None,
    max_prompt_runs: int | None = None,
    **stream_kwargs,
) -> list[torch.LongTensor]:
    """`num_sequences` code sequences of `length` codes each (`(length,)` LongTensors).

    Args:
        source: `"vocabulary"` (uniform over `code_vocabulary`), `"uniform"` (over `[0, num_codes)`), or `"talker"`
            (`model.stream` on `prompts`, cycling `speakers`; each reply's codes are cut into `length`-code pieces).
        generator: random source for `"vocabulary"` / `"uniform"` (the Talker samples from torch's global RNG).
        prompts: `"talker"` only: `(1, tokens)` Thinker input ids, one per prompt; reused round-robin.
        max_prompt_runs: `"talker"` only: give up after this many replies (default `4 * num_sequences + 8`).
        stream_kwargs: passed to `model.stream` (e.g. `talker_max_new_tokens`, `thinker_max_new_tokens`).
    """
    if num_sequences < 0 or length < 1:
        raise ValueError(f"need num_sequences >= 0 and length >= 1, got {num_sequences} and {length}")
    if source in ("vocabulary", "uniform"):
        if source == "vocabulary":
            if code_vocabulary is None:
                raise ValueError('source="vocabulary" needs code_vocabulary')
            vocabulary = torch.as_tensor(code_vocabulary, dtype=torch.long)
        else:
            vocabulary = torch.arange(num_codes)
        if vocabulary.dim() != 1 or vocabulary.numel() == 0:
            raise ValueError(
                f"code_vocabulary must be a non-empty 1-D list of codes, got shape {tuple(vocabulary.shape)}"
            )
        picks = torch.randint(len(vocabulary), (num_sequences, length), generator=generator)
        return list(vocabulary[picks])
    if source != "talker":
        raise ValueError(f'source must be "vocabulary", "uniform" or "talker", got {source!r}')
    if model is None or not prompts:
        raise ValueError('source="talker" needs model and at least one prompt')
    from ..omni import StreamStats

    speakers = list(speakers or model.speakers)
    max_runs = max_prompt_runs if max_prompt_runs is not None else 4 * num_sequences + 8
    sequences: list[torch.LongTensor] = []
    runs = zip(range(max_runs), itertools.cycle(prompts), itertools.cycle(speakers))
    with tqdm(total=num_sequences, desc="talker codes", leave=False) as progress:
        for _, prompt, speaker in runs:
            if len(sequences) >= num_sequences:
                break
            stats = None
            for event in model.stream(prompt, speaker=speaker, return_audio=True, **stream_kwargs):
                if isinstance(event, StreamStats):
                    stats = event
            codes = torch.tensor(stats.speech_code_ids if stats else [], dtype=torch.long)
            codes = codes[(codes >= 0) & (codes < num_codes)]
            pieces = list(codes[: len(codes) // length * length].view(-1, length))[: num_sequences - len(sequences)]
            sequences.extend(pieces)
            progress.update(len(pieces))
    if len(sequences) < num_sequences:
        raise RuntimeError(
            f"the Talker gave only {len(sequences)} sequences of {length} codes in {max_runs} replies; "
            "raise talker_max_new_tokens or max_prompt_runs, or shorten the sequences"
        )
    return sequences


def _batches(items: list, batch_size: int) -> Iterable[list]:
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


@torch.no_grad()
def decode_codes(model, codes: torch.LongTensor, speaker: str, generator: torch.Generator, num_inference_steps: int):
    """`(batch, n)` codes → `(batch, n * 480)` float32 CPU waveforms at 24 kHz with `model.speakers[speaker]`."""
    conditioning = model.speakers[speaker]
    return (
        model.token2wav(
            codes.to(model.token2wav.device),
            reference_mel=conditioning.reference_mel,
            speaker_embedding=conditioning.speaker_embedding,
            generator=generator,
            num_inference_steps=num_inference_steps,
        )
        .audios.float()
        .cpu()
    )


def synthesize(
    model,
    code_sequences: Sequence[torch.LongTensor],
    *,
    speakers: Sequence[str] | None = None,
    num_inference_steps: int = 10,
    batch_size: int = 16,
    augmentation: Augmentation | None = None,
    generator: torch.Generator | None = None,
) -> list[SpeechCodePair]:
    """Decode every sequence with token2wav (speaker `i % len(speakers)` for sequence `i`), augment the audio, and
    return mel/code pairs in the input order. Sequences of equal length and speaker are decoded as one batch.

    The token2wav noise comes from a generator on the pipeline's device seeded from `generator`.
    """
    generator = generator or torch.Generator().manual_seed(0)
    speakers = list(speakers or model.speakers)
    if not speakers:
        raise ValueError("the model has no speakers to synthesise with")
    unknown = [name for name in speakers if name not in model.speakers]
    if unknown:
        raise ValueError(f"unknown speakers {unknown}; the model has {list(model.speakers)}")
    noise = torch.Generator(device=model.token2wav.device)
    noise.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for index, codes in enumerate(code_sequences):
        groups[(len(codes), speakers[index % len(speakers)])].append(index)
    pairs: list[SpeechCodePair | None] = [None] * len(code_sequences)
    with tqdm(total=len(code_sequences), desc="token2wav", leave=False) as progress:
        for (_, speaker), indices in groups.items():
            for chunk in _batches(indices, batch_size):
                codes = torch.stack([torch.as_tensor(code_sequences[i], dtype=torch.long) for i in chunk])
                audio = decode_codes(model, codes, speaker, noise, num_inference_steps)
                if augmentation is not None:
                    audio = augmentation(audio, generator)
                mel = log_mel_spectrogram(audio, MEL)
                for row, index in enumerate(chunk):
                    pairs[index] = SpeechCodePair(mel=mel[row].clone(), codes=codes[row].clone(), speaker=speaker)
                progress.update(len(chunk))
    return pairs


def collate_pairs(pairs: Sequence[SpeechCodePair], frames_per_code: int = 2) -> dict[str, torch.Tensor]:
    """Pad a batch: `mel` `(batch, frames, 80)` (zeros), `attention_mask` `(batch, frames)`, `labels`
    `(batch, frames // frames_per_code)` (-100 on padding)."""
    if not pairs:
        raise ValueError("cannot collate an empty batch")
    frames = max(pair.mel.shape[0] for pair in pairs)
    frames += -frames % frames_per_code
    mel = torch.zeros(len(pairs), frames, pairs[0].mel.shape[-1])
    mask = torch.zeros(len(pairs), frames, dtype=torch.long)
    labels = torch.full((len(pairs), frames // frames_per_code), -100, dtype=torch.long)
    for row, pair in enumerate(pairs):
        mel[row, : pair.mel.shape[0]] = pair.mel
        mask[row, : pair.mel.shape[0]] = 1
        labels[row, : len(pair.codes)] = pair.codes
    return {"mel": mel, "attention_mask": mask, "labels": labels}


class StopAfterSeconds(TrainerCallback):
    """Stop training once `seconds` of wall time have passed since the first step."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, None

    def on_step_end(self, args, state, control, **kwargs):
        self.start = self.start or time.perf_counter()
        if time.perf_counter() - self.start > self.seconds:
            logger.info("stopping after %d steps: max_seconds=%s reached", state.global_step, self.seconds)
            control.should_training_stop = True


def fit_tokenizer(
    tokenizer: OmniSpeechTokenizer,
    pairs: Sequence[SpeechCodePair],
    args: TrainingArguments,
    max_seconds: float | None = None,
) -> Trainer:
    """Train `tokenizer` on the cross-entropy of `pairs` with transformers' `Trainer` under `args` (optimiser,
    schedule, clipping, logging: the Trainer's own), stopping early after `max_seconds`. Returns the trainer
    (`trainer.state.log_history` holds the logged losses)."""
    if not pairs:
        raise ValueError("no training pairs")
    tokenizer.train()
    trainer = Trainer(
        model=tokenizer,
        args=args,
        train_dataset=list(pairs),
        data_collator=partial(collate_pairs, frames_per_code=tokenizer.config.frames_per_code),
        callbacks=[StopAfterSeconds(max_seconds)] if max_seconds is not None else None,
    )
    trainer.train()
    tokenizer.eval()
    return trainer


def train_tokenizer(
    tokenizer: OmniSpeechTokenizer,
    pairs: Sequence[SpeechCodePair],
    *,
    max_steps: int = 1000,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_steps: int = 50,
    max_grad_norm: float = 1.0,
    max_seconds: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """`fit_tokenizer` with AdamW, linear warmup then cosine decay to 0, for `max_steps` steps (or `max_seconds`
    of wall time); no checkpoints. Returns the loss of every step taken."""
    with tempfile.TemporaryDirectory(prefix="speech_tokenizer_") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            max_steps=max_steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            warmup_steps=min(warmup_steps, max_steps // 2),
            lr_scheduler_type="cosine",
            max_grad_norm=max_grad_norm,
            logging_steps=1,
            save_strategy="no",
            seed=seed,
            disable_tqdm=not progress,
            report_to="none",
            remove_unused_columns=False,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = fit_tokenizer(tokenizer, pairs, args, max_seconds)
    return logged_losses(trainer)


def logged_losses(trainer: Trainer) -> list[float]:
    """The training losses in `trainer.state.log_history`, in order."""
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@torch.no_grad()
def predict_codes(
    tokenizer: OmniSpeechTokenizer, pairs: Sequence[SpeechCodePair], batch_size: int = 32
) -> list[torch.LongTensor]:
    """Argmax codes for each pair's mel: `(n,)` LongTensors (on CPU), in order."""
    was_training = tokenizer.training
    tokenizer.eval()
    predictions = []
    for chunk in _batches(list(pairs), batch_size):
        batch = collate_pairs(chunk, tokenizer.config.frames_per_code)
        logits = tokenizer(batch["mel"].to(tokenizer.device), batch["attention_mask"].to(tokenizer.device)).logits
        codes = logits.argmax(-1).cpu()
        predictions.extend(codes[row, : len(pair.codes)] for row, pair in enumerate(chunk))
    tokenizer.train(was_training)
    return predictions


def code_accuracy(tokenizer: OmniSpeechTokenizer, pairs: Sequence[SpeechCodePair], batch_size: int = 32) -> float:
    """Fraction of codes of `pairs` the tokenizer predicts exactly."""
    predictions = predict_codes(tokenizer, pairs, batch_size)
    correct = sum(int((pred == pair.codes).sum()) for pred, pair in zip(predictions, pairs))
    return correct / max(1, sum(len(pair.codes) for pair in pairs))


@torch.no_grad()
def _roundtrip_l1(model, pairs, code_sequences, num_inference_steps, seed, batch_size) -> float:
    """Mean over pairs of the log-mel L1 between `pairs[i].mel` and token2wav(`code_sequences[i]`, same speaker)."""
    generator = torch.Generator(device=model.token2wav.device).manual_seed(seed)
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        groups[(len(pair.codes), pair.speaker)].append(index)
    total = 0.0
    for (_, speaker), indices in groups.items():
        for chunk in _batches(indices, batch_size):
            codes = torch.stack([code_sequences[i] for i in chunk])
            mel = log_mel_spectrogram(decode_codes(model, codes, speaker, generator, num_inference_steps), MEL)
            for row, index in enumerate(chunk):
                target = pairs[index].mel
                total += float((mel[row, : target.shape[0]] - target).abs().mean())
    return total / len(pairs)


def evaluate(
    tokenizer: OmniSpeechTokenizer,
    model,
    pairs: Sequence[SpeechCodePair],
    *,
    baseline_vocabulary: torch.Tensor | Sequence[int] | None = None,
    num_inference_steps: int = 10,
    roundtrip: bool = True,
    batch_size: int = 16,
    seed: int = 1234,
) -> dict[str, float]:
    """Held-out scores of `tokenizer` on `pairs` (synthesised by `model`'s token2wav).

    Returns a dict with `code_accuracy`, `chance_accuracy` (1 / codes in `baseline_vocabulary`, default all
    `num_codes`) and, with `roundtrip`, log-mel L1 to the held-out mel after re-decoding: `roundtrip_l1` (predicted
    codes), `roundtrip_l1_random` (random codes from `baseline_vocabulary`, the baseline) and `roundtrip_l1_oracle`
    (the true codes with other decoder noise: the best any tokenizer can do). Lower L1 is better.
    """
    if not pairs:
        raise ValueError("no evaluation pairs")
    vocabulary = torch.as_tensor(
        baseline_vocabulary if baseline_vocabulary is not None else range(tokenizer.config.num_codes), dtype=torch.long
    )
    predictions = predict_codes(tokenizer, pairs, batch_size)
    correct = sum(int((pred == pair.codes).sum()) for pred, pair in zip(predictions, pairs))
    scores = {
        "code_accuracy": correct / sum(len(pair.codes) for pair in pairs),
        "chance_accuracy": 1.0 / len(vocabulary),
    }
    if roundtrip:
        generator = torch.Generator().manual_seed(seed)
        random_codes = [
            vocabulary[torch.randint(len(vocabulary), (len(p.codes),), generator=generator)] for p in pairs
        ]
        for name, codes in (("", predictions), ("_random", random_codes), ("_oracle", [p.codes for p in pairs])):
            scores[f"roundtrip_l1{name}"] = _roundtrip_l1(model, pairs, codes, num_inference_steps, seed, batch_size)
    if any(math.isnan(value) for value in scores.values()):
        logger.warning("NaN in evaluation scores: %s", scores)
    return scores


PROMPTS = [
    "Please read this sentence aloud, clearly and slowly.",
    "Tell me about the weather today in two sentences.",
    "Count from one to ten, then say goodbye.",
    "Describe a quiet morning by the sea.",
]


def recipe_code_sequences(
    source: str,
    count: int,
    length: int,
    generator: torch.Generator,
    *,
    vocabulary_size: int = 64,
    seed: int = 0,
    model=None,
    processor=None,
    prompts: Sequence[str] = PROMPTS,
) -> list[torch.LongTensor]:
    """`sample_code_sequences` as `recipes/speech_tokenizer.py` calls it: `"talker"` speaks the chat-templated
    `prompts`; `"vocabulary"` draws from `make_code_vocabulary(vocabulary_size, seed)`; `"uniform"` from all."""
    if source != "talker":
        vocabulary = make_code_vocabulary(vocabulary_size, seed=seed)
        return sample_code_sequences(count, length, source, generator=generator, code_vocabulary=vocabulary)
    ids = []
    for text in prompts:
        conversation = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        encoded = processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        ids.append(torch.tensor([encoded["input_ids"]]).reshape(1, -1))
    return sample_code_sequences(count, length, "talker", model=model, prompts=ids)


def tokenizer_card(base_model: str, code_source: str, num_train: int, sequence_length: int, scores: dict):
    """The model card of a trained tokenizer: provenance and its held-out scores."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="omni_hf", tags=["omni_hf", "qwen2.5-omni", "speech-tokenizer", "audio"])
    table = "\n".join(f"| {key} | {value:.4f} |" for key, value in scores.items() if isinstance(value, float))
    return ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n# OmniSpeechTokenizer\n\nAudio → Qwen2.5-Omni speech codes (50 per second), "
        f"trained by inverting the token2wav decoder of `{base_model}` with omni_hf's `recipes/speech_tokenizer.py` "
        f"(codes from `{code_source}`, {num_train} sequences of {sequence_length} codes).\n\n"
        f"## Held-out scores\n\n| metric | value |\n|---|---|\n{table}\n\n"
        "`roundtrip_l1*`: log-mel L1 after re-decoding predicted / random / true codes (lower is better).\n\n"
        "```python\nfrom omni_hf.voices.speech_tokenizer import OmniSpeechTokenizer\n\n"
        'tokenizer = OmniSpeechTokenizer.from_pretrained("PATH_OR_REPO")\n'
        "codes = tokenizer.encode(waveform, sampling_rate=16000)\n```\n"
    )


__all__ = [
    "PROMPTS",
    "recipe_code_sequences",
    "tokenizer_card",
    "Augmentation",
    "SpeechCodePair",
    "StopAfterSeconds",
    "code_accuracy",
    "collate_pairs",
    "decode_codes",
    "evaluate",
    "fit_tokenizer",
    "logged_losses",
    "make_code_vocabulary",
    "predict_codes",
    "sample_code_sequences",
    "synthesize",
    "train_tokenizer",
]

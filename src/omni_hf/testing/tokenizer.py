"""A tiny Qwen2-style byte-level BPE tokenizer (1000 base tokens + the Omni special tokens), trained offline.

The tokenizer is a real `Qwen2Tokenizer` (same pre-tokenizer regex, NFC normaliser and byte-level decoder as the
official one), so transformers' own `Qwen2_5OmniProcessor` accepts it too. Its vocabulary is small enough for tiny
random models (`omni_hf.testing.tiny.TINY_VOCAB_SIZE`) and its special-token ids differ from the official ones, so
tests catch hard-coded ids.

Example:

```python
>>> from omni_hf.testing.tokenizer import build_tiny_tokenizer
>>> tok = build_tiny_tokenizer()
>>> tok.convert_tokens_to_ids("<|AUDIO|>"), tok.audio_token_id, len(tok)
(1003, 1003, 1011)
```
"""

import functools
import json
import tempfile

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer

from ..processing.processing_omni import OMNI_NAMED_TOKENS
from .tiny import TINY_SPECIAL_TOKENS

BASE_VOCAB_SIZE = 1000
# Same regex as the official Qwen2 tokenizer (`transformers.models.qwen2.tokenization_qwen2.PRETOKENIZE_REGEX`).
QWEN2_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
# Words that must be single tokens (the chat roles), repeated so BPE merges them early.
_ROLE_WORDS = ("user", "assistant", "system")

_CORPUS = """
You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory and visual
inputs, as well as generating text and speech. You are a helpful assistant.
The user asks a question and the assistant answers. The system prompt tells the assistant how to behave.
What is in this picture? The picture shows a red circle, a blue square and a green triangle on a white background.
What do you hear in this audio clip? I hear a short tone, then some noise, then a higher tone and a lower tone.
Describe the video. The video shows a coloured box moving from the left to the right while a tone is playing.
Hello, world! How are you today? I am fine, thank you. What time is it? It is about three o'clock in the afternoon.
The weather is sunny and warm, with a light wind from the west. Tomorrow it will rain in the morning.
Please transcribe the speech in the recording. Please translate the sentence into French. Please summarise the text.
The quick brown fox jumps over the lazy dog. A small cat sleeps on the warm window sill next to the green plant.
Speech recognition turns spoken words into text; speech synthesis turns text into spoken words.
Images are split into patches of fourteen by fourteen pixels; two by two patches are merged into one token.
Audio is resampled to sixteen thousand samples per second and turned into a log mel spectrogram with 128 bins.
Each second of audio becomes twenty five tokens, and every video frame pair becomes one grid of visual tokens.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 16 25 28 100 128 160 400 1000 2025. Dates like 2024-05-01 and times like 10:30.
Punctuation: commas, periods. Questions? Exclamations! Quotes "like this" and 'this'; parentheses (yes) [and] {too}.
Can you count the objects? There are three objects: one circle, one square and one triangle.
Which sound is louder, the first or the second one? The second sound is louder and slightly longer.
Who is speaking? A woman is speaking slowly and clearly about the history of the city and its old bridges.
Thank you very much for your help. You are welcome; let me know if there is anything else I can do for you.
The model thinks with a thinker and speaks with a talker; the talker turns hidden states into speech codes.
Good morning, good afternoon, good evening and good night. See you later, goodbye!
"""


def _training_corpus() -> list[str]:
    lines = [line for line in _CORPUS.strip().splitlines() if line]
    roles = [" ".join(_ROLE_WORDS)] * 20 + [f"{w}\n" for w in _ROLE_WORDS] * 20
    return lines * 3 + roles


@functools.lru_cache(maxsize=1)
def _base_vocab_and_merges() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    """Train a byte-level BPE with exactly `BASE_VOCAB_SIZE` entries (padded with unreachable fillers)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BASE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if len(vocab) > BASE_VOCAB_SIZE:
        raise RuntimeError(f"BPE training produced {len(vocab)} tokens, more than {BASE_VOCAB_SIZE}.")
    # Fill up to exactly BASE_VOCAB_SIZE with tokens no merge can produce (never emitted by encoding).
    filler = 0
    while len(vocab) < BASE_VOCAB_SIZE:
        token = f"<|filler_{filler}|>"
        filler += 1
        if token not in vocab:
            vocab[token] = len(vocab)
    if sorted(vocab.values()) != list(range(BASE_VOCAB_SIZE)):
        raise RuntimeError("The trained base vocabulary does not have contiguous ids 0..999.")
    return tuple(vocab.items()), tuple(merges)


def build_tiny_tokenizer(model_max_length: int = 32768) -> Qwen2Tokenizer:
    """A fresh tiny Qwen2 tokenizer: ids 0..999 byte-level BPE, then the Omni special tokens at ids 1000..1010.

    Special ids follow `omni_hf.testing.tiny.TINY_SPECIAL_TOKENS` (`<|endoftext|>` 1000 is pad, `<|im_end|>` 1002 is
    eos). The multimodal tokens are named (`tokenizer.audio_token`, `tokenizer.image_token_id`, ...), as transformers'
    `Qwen2_5OmniProcessor` expects. "user", "assistant" and "system" are single tokens. Builds in ~0.1 s, offline.
    """
    base_vocab, merges = _base_vocab_and_merges()
    vocab = dict(base_vocab)
    for token, token_id in sorted(TINY_SPECIAL_TOKENS.items(), key=lambda kv: kv[1]):
        if token_id != len(vocab):
            raise RuntimeError(f"Special token {token} expects id {token_id}, the next free id is {len(vocab)}.")
        vocab[token] = token_id
    named = set(OMNI_NAMED_TOKENS.values())
    extra = [t for t in TINY_SPECIAL_TOKENS if t != "<|endoftext|>" and t not in named]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(m) for m in merges],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=model_max_length,
        extra_special_tokens=dict(OMNI_NAMED_TOKENS),
    )
    # Unnamed special tokens (<|im_start|>, <|im_end|>, <|vision_pad|>) are special too, never split or merged.
    tokenizer.add_special_tokens({"extra_special_tokens": extra}, replace_extra_special_tokens=False)
    _check_ids(tokenizer)
    return tokenizer


def _check_ids(tokenizer) -> None:
    for token, token_id in TINY_SPECIAL_TOKENS.items():
        got = tokenizer.convert_tokens_to_ids(token)
        if got != token_id:
            raise RuntimeError(f"Tiny tokenizer maps {token} to {got}, expected {token_id}.")
    for word in _ROLE_WORDS:
        ids = tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"Tiny tokenizer splits the role word {word!r} into {len(ids)} tokens.")


def build_tiny_processor(tmpdir: str | None = None, **processor_kwargs):
    """An `OmniProcessor` with the tiny tokenizer and the official image/audio settings.

    Args:
        tmpdir: if given, the processor is saved there and reloaded with `OmniProcessor.from_pretrained`, which
            proves the round trip and gives a directory that other code (demo, benchmarks) can load.
        **processor_kwargs: forwarded to `OmniProcessor` (e.g. `fps`, `default_system_prompt`).
    """
    from ..processing import OmniProcessor

    processor = OmniProcessor(tokenizer=build_tiny_tokenizer(), **processor_kwargs)
    if tmpdir is None:
        return processor
    processor.save_pretrained(tmpdir)
    return OmniProcessor.from_pretrained(tmpdir)


def save_tiny_tokenizer(path: str | None = None) -> str:
    """Save the tiny tokenizer to `path` (a new temporary directory by default) and return the directory."""
    path = path or tempfile.mkdtemp(prefix="omni_hf_tiny_tokenizer_")
    build_tiny_tokenizer().save_pretrained(path)
    return path


__all__ = [
    "BASE_VOCAB_SIZE",
    "build_tiny_processor",
    "build_tiny_tokenizer",
    "save_tiny_tokenizer",
]

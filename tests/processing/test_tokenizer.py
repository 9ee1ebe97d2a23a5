"""The tiny Qwen2-style tokenizer: exact special ids, single-token roles, speed, save/load, reference compatibility."""

from transformers import AutoTokenizer, Qwen2Tokenizer

from omni_hf.processing import OmniProcessor
from omni_hf.testing.tiny import TINY_SPECIAL_TOKENS, TINY_VOCAB_SIZE
from omni_hf.testing.tokenizer import BASE_VOCAB_SIZE, build_tiny_processor, build_tiny_tokenizer


def test_vocabulary_layout_and_special_ids():
    tok = build_tiny_tokenizer()
    assert isinstance(tok, Qwen2Tokenizer)
    vocab = tok.get_vocab()
    assert len(vocab) == BASE_VOCAB_SIZE + len(TINY_SPECIAL_TOKENS) <= TINY_VOCAB_SIZE
    assert sorted(i for t, i in vocab.items() if t not in TINY_SPECIAL_TOKENS) == list(range(1000))
    for token, token_id in TINY_SPECIAL_TOKENS.items():
        assert tok.convert_tokens_to_ids(token) == token_id
        assert tok.encode(token, add_special_tokens=False) == [token_id]
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token) == (1000, 1002, None)
    named = {
        "audio_token": 1003,
        "image_token": 1009,
        "video_token": 1010,
        "audio_bos_token": 1004,
        "audio_eos_token": 1005,
        "vision_bos_token": 1006,
        "vision_eos_token": 1007,
    }
    assert {name: getattr(tok, f"{name}_id") for name in named} == named


def test_roles_are_single_tokens_and_text_round_trips():
    tok = build_tiny_tokenizer()
    for word in ("user", "assistant", "system"):
        assert len(tok.encode(word, add_special_tokens=False)) == 1
    text = "<|im_start|>user\nHello, world! Café 日本 123<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text and max(ids) < len(tok)


def test_builds_the_same_tokenizer_each_time():
    first, second = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    text = "<|im_start|>user\nHello<|im_end|>"
    assert first.encode(text, add_special_tokens=False) == second.encode(text, add_special_tokens=False)


def test_save_load_and_reference_attributes(tmp_path, reference):
    tok = build_tiny_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tok.get_vocab() and loaded.video_token_id == 1010
    ref = reference()  # transformers' Qwen2_5OmniProcessor reads these tokenizer attributes
    assert (ref.audio_token, ref.image_token_id, ref.video_token_id) == ("<|AUDIO|>", 1009, 1010)
    assert (ref.vision_bos_token, ref.audio_eos_token) == ("<|vision_bos|>", "<|audio_eos|>")


def test_build_tiny_processor_round_trip(tmp_path):
    processor = build_tiny_processor(tmpdir=str(tmp_path))
    assert isinstance(processor, OmniProcessor) and processor.tokenizer.audio_token_id == 1003
    assert (tmp_path / "processor_config.json").exists() and (tmp_path / "chat_template.jinja").exists()

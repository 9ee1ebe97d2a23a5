"""OmniSpeechTokenizer: shapes and loss, training lowers the loss, the recipe runs end to end and its tokenizer
encodes real (espeak-ng) speech for the voice recipe; codes from the Talker; bad input."""

import json

import numpy as np
import pytest
import soundfile
import torch

from helpers.recipes import load_recipe
from omni_hf.training import speech_tokenizer_training as tt
from omni_hf.training.voice_lora import load_rows
from omni_hf.voices.speech_tokenizer import OmniSpeechTokenizer, OmniSpeechTokenizerConfig

SMALL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def _recipe(name):
    return load_recipe(name)


def test_forward_shapes_mask_and_loss():
    torch.manual_seed(0)
    tokenizer = OmniSpeechTokenizer(OmniSpeechTokenizerConfig(**SMALL)).eval()
    mel = torch.randn(2, 21, 80) - 4
    mask = torch.ones(2, 21, dtype=torch.long)
    mask[1, 15:] = 0
    labels = torch.randint(0, 8193, (2, 10))
    out = tokenizer(mel, attention_mask=mask, labels=labels)
    assert out.logits.shape == (2, 10, 8193) and out.last_hidden_state.shape == (2, 10, 32)
    assert out.code_mask[0].tolist() == [1] * 10 and out.code_mask[1].tolist() == [1] * 7 + [0] * 3
    expected = torch.nn.functional.cross_entropy(
        torch.cat([out.logits[0], out.logits[1, :7]]), torch.cat([labels[0], labels[1, :7]])
    )
    assert torch.allclose(out.loss, expected, atol=1e-6)
    # padding frames do not change the valid positions of a bidirectional encoder once masked
    alone = tokenizer(mel[1:, :15]).logits[0]  # the 15 valid frames of row 1
    assert (alone - out.logits[1, :7]).abs().max() < 1e-4


def test_training_lowers_the_loss_and_learns_codes(voice_model):
    tt_vocab = tt.make_code_vocabulary(4, seed=0)
    generator = torch.Generator().manual_seed(0)
    sequences = tt.sample_code_sequences(16, 10, "vocabulary", generator=generator, code_vocabulary=tt_vocab)
    pairs = tt.synthesize(voice_model, sequences, num_inference_steps=2, generator=generator)
    assert pairs[0].mel.shape == (20, 80) and pairs[0].codes.shape == (10,)
    assert {p.speaker for p in pairs} == {"Chelsie", "Ethan"}
    torch.manual_seed(0)
    tokenizer = OmniSpeechTokenizer(OmniSpeechTokenizerConfig(**SMALL))
    batch = tt.collate_pairs(pairs)
    with torch.no_grad():
        before = tokenizer(**batch).loss.item()
    losses = tt.train_tokenizer(
        tokenizer, pairs, max_steps=40, batch_size=16, learning_rate=3e-3, warmup_steps=5, progress=False
    )
    with torch.no_grad():
        after = tokenizer(**batch).loss.item()
    assert len(losses) == 40 and after < before - 4  # from ~ln(8193) = 9.0 towards ln(4) = 1.4
    assert tt.code_accuracy(tokenizer, pairs) > 0.25  # at least the 4 codes in use, not the other 8189


@pytest.fixture(scope="module")
def trained_tokenizer(tiny_voice_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer_run") / "tok"
    argv = ["--model", str(tiny_voice_model_dir), "--output_dir", str(out), "--code_source", "vocabulary"]
    argv += ["--vocabulary_size", "8", "--num_train", "24", "--num_eval", "8", "--sequence_length", "20"]
    argv += ["--num_inference_steps", "2", "--stand_in_decoder", "--max_steps", "6", "--batch_size", "8"]
    argv += ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2"]
    return _recipe("speech_tokenizer").main([*argv, "--intermediate_size", "64"]), out


def test_recipe_end_to_end_and_reload(trained_tokenizer, speech_clip):
    scores, out = trained_tokenizer
    assert scores["steps"] == 6 and scores["last_loss"] < scores["first_loss"]
    assert scores["chance_accuracy"] == 1 / 8 and 0 <= scores["code_accuracy"] <= 1
    for key in ("roundtrip_l1", "roundtrip_l1_random", "roundtrip_l1_oracle"):
        assert np.isfinite(scores[key]) and scores[key] > 0
    assert {"config.json", "model.safetensors", "metrics.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6
    assert not list(out.parent.glob(".speech-tokenizer-*"))  # no staging folder left behind
    tokenizer = OmniSpeechTokenizer.from_pretrained(out).eval()
    audio, rate = speech_clip
    codes = tokenizer.encode(audio, sampling_rate=rate)
    assert codes.shape == (len(audio) * 24000 // rate // 480,) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 8193
    # a 16 kHz copy of the clip gives (nearly) the same codes: encode resamples to 24 kHz first
    from omni_hf.token2wav.mel import resample

    again = tokenizer.encode(torch.from_numpy(resample(audio, rate, 16000)), sampling_rate=16000)
    n = min(len(codes), len(again))
    assert (codes[:n] == again[:n]).float().mean() > 0.8


def test_voice_recipe_encodes_audio_rows_and_skips_undecodable(trained_tokenizer, speech_clip, tmp_path):
    _, out = trained_tokenizer
    audio, rate = speech_clip
    soundfile.write(tmp_path / "good.wav", audio, rate)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    rows = [{"text": "hello there", "audio": "good.wav"}, {"text": "broken", "audio": "broken.wav"}]
    manifest = tmp_path / "data.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ready = load_rows(str(manifest), str(out), seed=0)
    assert [r["text"] for r in ready] == ["hello there"]  # the undecodable row is skipped (and counted in the log)
    assert len(ready[0]["codes"]) == len(audio) * 24000 // rate // 480
    manifest.write_text(json.dumps(rows[1]) + "\n")
    with pytest.raises(ValueError, match="no usable rows"):
        load_rows(str(manifest), str(out), seed=0)


def test_codes_from_the_talker(voice_model, tiny_voice_model_dir):
    from omni_hf.processing import OmniProcessor

    processor = OmniProcessor.from_pretrained(tiny_voice_model_dir)
    conversation = [{"role": "user", "content": [{"type": "text", "text": "Read this aloud"}]}]
    ids = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=True)
    prompt = torch.tensor([ids["input_ids"]]).reshape(1, -1)
    torch.manual_seed(0)
    sequences = tt.sample_code_sequences(
        3, 8, "talker", model=voice_model, prompts=[prompt], thinker_max_new_tokens=4, talker_max_new_tokens=20
    )
    assert len(sequences) == 3 and all(s.shape == (8,) for s in sequences)
    assert all(int(s.min()) >= 0 and int(s.max()) < 8193 for s in sequences)
    with pytest.raises(RuntimeError, match="raise talker_max_new_tokens"):
        tt.sample_code_sequences(
            2, 50, "talker", model=voice_model, prompts=[prompt], max_prompt_runs=1, talker_max_new_tokens=10
        )


def test_bad_input(tiny_voice_model_dir, tmp_path):
    tokenizer = OmniSpeechTokenizer(OmniSpeechTokenizerConfig(**SMALL))
    with pytest.raises(ValueError, match=r"mel must be \(batch, frames, 80\)"):
        tokenizer(torch.zeros(1, 10, 40))
    with pytest.raises(ValueError, match="at least frames_per_code"):
        tokenizer(torch.zeros(1, 1, 80))
    with pytest.raises(ValueError, match="labels must be"):
        tokenizer(torch.zeros(1, 10, 80), labels=torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        tokenizer.encode(np.zeros(0), 16000)
    with pytest.raises(ValueError, match="NaN"):
        tokenizer.encode(np.full(16000, np.nan), 16000)
    with pytest.raises(ValueError, match="too short"):
        tokenizer.encode(np.zeros(100), 16000)
    with pytest.raises(ValueError, match="sampling_rate"):
        tokenizer.encode(np.zeros(16000), 0)
    with pytest.raises(ValueError, match="mono"):
        tokenizer.encode(np.zeros((2, 16000)), 16000)
    with pytest.raises(ValueError, match="divisible"):
        OmniSpeechTokenizerConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match='source must be "vocabulary"'):
        tt.sample_code_sequences(1, 4, "words")
    with pytest.raises(ValueError, match="code_vocabulary size"):
        tt.make_code_vocabulary(0)
    recipe = _recipe("speech_tokenizer")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("user file")
    with pytest.raises(SystemExit, match="not empty"):
        recipe.main(["--model", str(tiny_voice_model_dir), "--output_dir", str(busy)])
    assert (busy / "keep.txt").read_text() == "user file"
    with pytest.raises(SystemExit):  # argparse: an unknown YAML key is named
        config = tmp_path / "bad.yaml"
        config.write_text("model: x\nnum_codes: 3\n")
        recipe.parse_args(["--config", str(config)])

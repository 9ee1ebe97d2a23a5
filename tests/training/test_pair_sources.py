"""Pairs from any source: (a) the Talker's samples keep playable audio; (b) a manifest of judged recordings is
encoded with the speech tokenizer and trains an adapter through the DPO recipe (its card names the base model);
(c) a Hub dataset id (the stand-in Hub of tests/hub, in a subprocess) trains the same way, pushed in one commit;
bad input is refused before any encoding."""

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from datasets import load_from_disk

from omni_hf.training.pair_sources import judged_pairs, load_pairs, read_manifest
from omni_hf.training.preference_pairs import build_preference_pairs
from omni_hf.training.rewards import CandidateScore
from omni_hf.voices.speech_tokenizer import OmniSpeechTokenizer, OmniSpeechTokenizerConfig

HUB_TESTS = Path(__file__).parents[1] / "hub"
TINY_TOKENIZER = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
TRAIN = ["--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--max_steps", "2", "--batch_size", "2"]
TRAIN += ["--learning_rate", "0.002", "--logging_steps", "1", "--save_steps", "100"]


def tone(seconds: float, hz: float, rate: int = 16000, vibrato: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    pitch = hz * 2 ** (vibrato * np.sin(2 * np.pi * 3 * t) / 12)
    return (0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / rate)).astype(np.float32)


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """A manifest of 3 judged pairs (16 kHz WAVs in a sub-folder, relative paths) and a tiny speech tokenizer."""
    root = tmp_path_factory.mktemp("judged")
    (root / "wavs").mkdir()
    rows = []
    texts = ["hello there, friend.", "the cat sat on the mat", "good day to you"]
    for i, text in enumerate(texts):
        soundfile.write(root / "wavs" / f"{i}-good.wav", tone(0.5 + 0.1 * i, 180, vibrato=3), 16000)
        soundfile.write(root / "wavs" / f"{i}-bad.wav", tone(0.4, 120), 16000)
        row = {"chosen_audio": f"wavs/{i}-good.wav", "rejected_audio": f"wavs/{i}-bad.wav", "chosen_score": 4.5}
        row |= {"rejected_score": 2.0}
        if i == 2:
            conversation = [{"role": "user", "content": [{"type": "text", "text": "Greet me."}]}]
            row |= {"conversation": conversation, "reply": text}
        else:
            row["text"] = text
        rows.append(row)
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.manual_seed(0)
    OmniSpeechTokenizer(OmniSpeechTokenizerConfig(**TINY_TOKENIZER)).save_pretrained(root / "speech_tokenizer")
    return root


def test_manifest_pairs_train_an_adapter(judged, tiny_model_dir, recipe, tmp_path):
    out = tmp_path / "run"
    argv = ["--model", str(tiny_model_dir), "--pairs", str(judged / "pairs.jsonl"), "--output_dir", str(out)]
    argv += ["--speech_tokenizer", str(judged / "speech_tokenizer"), "--base_model", "Qwen/Qwen2.5-Omni-7B"]
    metrics = recipe.main([*argv, *TRAIN])
    assert metrics["pairs"] == 3 and metrics["steps"] == 2 and metrics["last_margin"] > 0
    pairs = load_from_disk(str(out / "pairs" / "dataset"))
    tokenizer = OmniSpeechTokenizer.from_pretrained(judged / "speech_tokenizer").eval()
    for i, row in enumerate(pairs):
        assert row["source"] == "manifest" and row["chosen_score"] == 4.5 and row["rejected_score"] == 2.0
        for side, name in (("chosen", "good"), ("rejected", "bad")):
            file = judged / "wavs" / f"{i}-{name}.wav"
            assert row[f"{side}_audio"]["bytes"] == file.read_bytes()  # the recording itself, playable
            audio, rate = soundfile.read(io.BytesIO(row[f"{side}_audio"]["bytes"]), dtype="float32")
            assert row[f"{side}_codes"] == tokenizer.encode(audio, rate).tolist()
            assert len(row[f"{side}_codes"]) == int(len(audio) * 24000 / rate) // 480  # 50 codes per second
    assert (
        json.loads(pairs[2]["prompt"])[0]["content"][0]["text"] == "Greet me."
        and pairs[2]["text"] == "good day to you"
    )
    card = (out / "final" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "Qwen/Qwen2.5-Omni-7B" and meta["library_name"] == "peft"
    assert meta["pipeline_tag"] == "text-to-speech" and "# Talker DPO adapter `talker_dpo`" in card
    assert "Prosody: chosen" in card and "Prosody: rejected" in card  # the report of the judged recordings
    assert not [p for p in out.rglob("README.md") if p != out / "final" / "README.md"]


def test_manifest_bad_input_is_refused_before_encoding(judged, model_and_processor, tmp_path):
    model, processor = model_and_processor
    rows = read_manifest(judged / "pairs.jsonl")
    tokenizer = judged / "speech_tokenizer"
    with pytest.raises(ValueError, match="row 1: missing \\['rejected_audio'\\]"):
        judged_pairs(model, processor, [rows[0], {**rows[1], "rejected_audio": ""}], tokenizer, base_dir=judged)
    with pytest.raises(FileNotFoundError, match="row 2 chosen_audio: audio file .*nope.wav' does not exist"):
        judged_pairs(
            model, processor, [*rows[:2], {**rows[2], "chosen_audio": "nope.wav"}], tokenizer, base_dir=judged
        )
    with pytest.raises(ValueError, match="row 0: needs 'text'"):
        judged_pairs(model, processor, [{k: v for k, v in rows[0].items() if k != "text"}], tokenizer)
    with pytest.raises(ValueError, match="speech tokenizer"):
        judged_pairs(model, processor, rows, None, base_dir=judged)
    with pytest.raises(ValueError, match="not a saved OmniSpeechTokenizer"):
        judged_pairs(model, processor, rows, tmp_path, base_dir=judged)
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2 is not JSON"):
        load_pairs(tmp_path / "bad.jsonl", model, processor, tokenizer)
    with pytest.raises(ValueError, match="expected a pair dataset folder, a .jsonl manifest"):
        load_pairs(tmp_path / "missing.parquet", model, processor)


class CodeScorer:
    needs_audio = False

    def __call__(self, text, codes, waveform, sampling_rate):
        return CandidateScore(sum(c >= 4096 for c in codes) / max(len(codes), 1), len(codes))


@pytest.fixture(scope="module")
def built_pairs(model_and_processor, tmp_path_factory):
    model, processor = model_and_processor
    out = tmp_path_factory.mktemp("built")
    texts = ["hello world, how are you?", "the cat sat. on the mat", "one two, three four"]
    pairs = build_preference_pairs(
        model, processor, texts, out, scorer=CodeScorer(), num_candidates=3, talker_max_new_tokens=10,
        token2wav_kwargs={"num_inference_steps": 2},
    )  # fmt: skip
    return out, pairs


def test_built_pairs_keep_playable_audio(built_pairs):
    out, pairs = built_pairs
    assert len(pairs) >= 1 and pairs.features["chosen_audio"].decode is False
    for row in pairs:
        assert row["source"] == "talker_samples" and json.loads(row["chosen_scores"])["wer"] == row["chosen_wer"]
        assert row["chosen_score"] == row["chosen_wer"]  # the default rule's first metric
        for side in ("chosen", "rejected"):
            audio, rate = soundfile.read(io.BytesIO(row[f"{side}_audio"]["bytes"]), dtype="float32")
            assert rate == 24000 and len(audio) == 480 * len(row[f"{side}_codes"])  # token2wav: 480 samples/code
            assert np.abs(audio).max() > 0
    again = load_pairs(out)  # the build folder is a source too
    assert again.to_list() == pairs.to_list()


def _client_env(endpoint, home):
    spec = importlib.util.spec_from_file_location("hub_tests_conftest", HUB_TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.client_env(endpoint, home)


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory):
    sys.path.insert(0, str(HUB_TESTS))
    from fake_hub import FakeHub

    hub = FakeHub(tmp_path_factory.mktemp("fake_hub"))
    endpoint = hub.start()
    yield hub, endpoint
    hub.stop()


def test_hub_pairs_end_to_end(fake_hub, built_pairs, judged, tiny_model_dir, tmp_path):
    """In a client process: push the built pairs (one commit, with card), train from the Hub id and push the
    adapter; push judged recordings (audio only), train from that id through the speech tokenizer."""
    hub, endpoint = fake_hub
    out, pairs = built_pairs
    report = tmp_path / "report.json"
    argv = [sys.executable, str(Path(__file__).with_name("hub_pairs_client.py")), str(tiny_model_dir), str(out)]
    argv += [str(judged), str(tmp_path / "work"), str(report)]
    result = subprocess.run(argv, env=_client_env(endpoint, tmp_path / "hf"), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    got = json.loads(report.read_text())
    commits = [path for method, path in hub.requests if method == "POST" and "/commit/" in path]
    assert sum("tester/built-pairs" in c for c in commits) == 1  # data and card in one commit
    files = hub.files("dataset", "tester/built-pairs")
    assert set(files) == {"README.md", "data/train-00000-of-00001.parquet"}
    card = files["README.md"].read_text()
    assert "`talker_samples`: " in card and "--pairs\ntester/built-pairs" in card.replace("--pairs ", "--pairs\n")
    assert got["built"]["rows"] == len(pairs) and got["built"]["codes_equal"] and got["built"]["audio_equal"]
    assert got["built"]["metrics"]["steps"] == 2 and got["built"]["metrics"]["pairs"] == len(pairs)
    adapter = hub.files("model", "tester/dpo-adapter")
    assert {"adapter_model.safetensors", "voice.json", "README.md"} <= set(adapter)
    meta = yaml.safe_load(adapter["README.md"].read_text().split("---")[1])
    assert meta["base_model"] == "Qwen/Qwen2.5-Omni-7B" and meta["library_name"] == "peft"
    assert got["judged"]["metrics"]["pairs"] == 3 and got["judged"]["metrics"]["steps"] == 2
    assert got["judged"]["sources"] == ["hub:tester/judged-recordings"] and got["judged"]["codes_equal"]

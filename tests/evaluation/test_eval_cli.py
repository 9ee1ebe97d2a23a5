"""`omni-hf eval clips` and `omni-hf eval speech` end to end through `omni_hf.cli.main`: the report (results.json,
results.md, results.png, card.json) and clear errors for a corrupted clip, an empty text and nothing scorable."""

import json

import numpy as np
import soundfile as sf

from omni_hf.cli import main
from omni_hf.hub.cards import load_results


def _manifest(tmp_path, espeak, sentences, rows_extra=()):
    rows = []
    for i, text in enumerate(sentences[:2]):
        audio, rate = espeak(text)
        sf.write(tmp_path / f"clip{i}.wav", audio, rate)
        rows.append({"id": f"clip{i}", "text": text, "audio": f"clip{i}.wav"})
    rows += list(rows_extra)
    path = tmp_path / "clips.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_clips_report_with_a_corrupted_clip_and_an_empty_text(tmp_path, espeak, sentences, capsys):
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    audio, rate = espeak(sentences[2])
    sf.write(tmp_path / "reference.wav", audio, rate)
    extra = [
        {"id": "broken", "text": "Hello there.", "audio": "broken.wav"},
        {"id": "no-text", "text": "", "audio": "clip0.wav"},
    ]
    manifest = _manifest(tmp_path, espeak, sentences, extra)
    out = tmp_path / "report"
    code = main(
        ["eval", "clips", str(manifest), "--reference-audio", str(tmp_path / "reference.wav"), "--out", str(out)]
    )
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    items = {r["id"]: r for r in report["items"]}
    assert "unreadable audio" in items["broken"]["error"] and items["broken"]["system"] == "clips"
    assert "empty text" in items["no-text"]["error"]
    for name in ("clip0", "clip1"):
        assert 0 <= items[name]["wer"] < 1 and items[name]["speaker_similarity"] > 0.6 and items[name]["transcript"]
    summary = report["summary"]["clips"]
    assert summary["items"] == 4 and summary["errors"] == 2
    assert summary["wer"] == np.mean([items["clip0"]["wer"], items["clip1"]["wer"]])
    assert report["models"]["asr"].startswith("pocketsphinx") and report["models"]["speaker_similarity"].startswith(
        "resemblyzer"
    )
    table = (out / "results.md").read_text()
    assert "| clips | 4 | 2 |" in table and "broken: item broken: unreadable audio" in table
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    card = load_results(out / "card.json")  # what `omni-hf card ... --results` reads
    assert card["Speech quality (omni-hf eval)"]["clips: WER"] == round(summary["wer"], 4)
    assert "| clips | 4 | 2 |" in capsys.readouterr().out


def test_eval_clips_with_nothing_scorable_is_an_error(tmp_path, capsys):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "m.jsonl").write_text(json.dumps({"text": "Hi.", "audio": "empty.wav"}) + "\n")
    assert main(["eval", "clips", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "r")]) == 2
    assert "no clip could be scored" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert main(["eval", "clips", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "r")]) == 2
    assert "line 1: not JSON" in capsys.readouterr().err


def _voice_adapter(model_dir, folder):
    """A LoRA voice adapter with random (non-zero) weights, saved like recipes/voice_lora.py saves one."""
    import torch

    from omni_hf import OmniForConditionalGeneration

    model = OmniForConditionalGeneration.from_pretrained(model_dir).eval()
    model.voice_adapters.add("bright")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.talker.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    return model.voice_adapters.save("bright", folder)


def test_eval_speech_speaks_scores_and_reports_the_tiny_model_and_its_adapter(tiny_omni_dir, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("Hello there, how are you?\nThe sky is blue.\n")
    adapter = _voice_adapter(tiny_omni_dir, tmp_path / "adapter")
    out = tmp_path / "speech"
    argv = ["eval", "speech", str(tiny_omni_dir), "--texts", str(texts), "--out", str(out)]
    code = main(
        [*argv, "--max-speech-codes", "40", "--token2wav-steps", "2", "--save-audio", "--voice-adapter", str(adapter)]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "results.json").read_text())
    base = tiny_omni_dir.name
    assert [(r["system"], r["text"]) for r in report["items"]] == [
        (system, text)
        for system in (base, f"{base}+bright")
        for text in ("Hello there, how are you?", "The sky is blue.")
    ]
    for row in report["items"]:  # random weights: noise, but every metric is measured
        assert "error" not in row, row
        assert row["seconds"] > 0 and 0 <= row["wer"] <= 5 and -1 <= row["speaker_similarity"] <= 1
    assert report["models"]["reference voice"] == "Chelsie (model's reference mel)"
    assert set(report["summary"]) == {base, f"{base}+bright"}
    base_audio, adapted = (
        sorted((out / "audio" / base).glob("*.wav")),
        sorted((out / "audio" / f"{base}+bright").glob("*.wav")),
    )
    assert len(base_audio) == len(adapted) == 2
    assert base_audio[0].read_bytes() != adapted[0].read_bytes()  # the adapter changed the speech
    assert main(["eval", "speech", str(tiny_omni_dir), "--out", str(out)]) == 2
    assert "give one of --texts FILE or --dataset ID" in capsys.readouterr().err

"""Issue 28's unclear errors: a missing local model folder, a speaker name that cannot name files, and a recipe's
input error are each one clear line, not the Hub's repo-id message, a silent acceptance or a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("path", ["/nonexistent/omni", "./missing-omni", "models/omni/missing"])
def test_a_missing_local_folder_is_named(path):
    from omni_hf import OmniForConditionalGeneration, OmniProcessor
    from omni_hf.token2wav import OmniToken2WavPipeline

    for loader in (OmniForConditionalGeneration, OmniProcessor, OmniToken2WavPipeline):
        with pytest.raises(FileNotFoundError, match="is not a folder .*not a Hub repo id"):
            loader.from_pretrained(path)


def test_speaker_names_must_be_able_to_name_files(tiny_omni):
    from omni_hf.voices.speakers import Speaker

    model, _ = tiny_omni
    base = model.speakers["Chelsie"]
    for bad in ("a/b", "", "../x", ".hidden", "x" * 65, "tab\there"):
        with pytest.raises(ValueError, match="Speaker name"):
            Speaker(bad, base.bos_token_id, base.speaker_embedding, base.reference_mel)
    assert Speaker("Alice 2.0_b-c", base.bos_token_id, base.speaker_embedding, base.reference_mel).name


def test_cli_speaker_add_refuses_a_path_like_name(tiny_omni_dir, tmp_path):
    import numpy as np
    import soundfile

    wav = tmp_path / "clip.wav"
    soundfile.write(wav, (0.3 * np.sin(np.arange(48000) / 10)).astype(np.float32), 24000)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "omni_hf.cli",
            "speaker",
            "add",
            str(tiny_omni_dir),
            "--audio",
            str(wav),
            "--name",
            "a/b",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "Speaker name 'a/b'" in out.stderr and "Traceback" not in out.stderr
    assert "a/b" not in json.loads((tiny_omni_dir / "speakers.json").read_text())["speakers"]


def test_a_recipe_input_error_is_one_line_without_traceback(tiny_omni_dir, tmp_path):
    (tmp_path / "codes.jsonl").write_text('{"codes": [1, 2], "speaker": "Nobody"}\n')
    out = subprocess.run(
        [sys.executable, str(RECIPES / "token2wav_distill.py"), "--model", str(tiny_omni_dir), "--codes",
         str(tmp_path / "codes.jsonl"), "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "token2wav_distill.py: error: " in out.stderr and "unknown speaker 'Nobody'" in out.stderr

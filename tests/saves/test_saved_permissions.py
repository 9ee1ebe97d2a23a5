"""Saved files get the user's umask like any other file they write (issue 28: `model.safetensors` and
`speakers.safetensors` came out 0600 — safetensors writes through a private temp file — while the rest were 0644)."""

import os
import stat

import pytest
from safetensors.torch import save_file

from omni_hf.common.staged_save import staged_save
from omni_hf.voices.speakers import SpeakerBank


def _modes(folder) -> dict[str, int]:
    return {
        str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode)
        for path in folder.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }


@pytest.fixture()
def umask():
    """`umask(value)` sets the process umask for the test; the old one comes back after."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_speaker_bank_and_safetensors_get_the_umask(tiny_omni, tmp_path, umask, mask):
    model, _ = tiny_omni
    umask(mask)
    model.speakers.save(tmp_path / "speakers")
    with staged_save(tmp_path / "weights", "model") as stage:
        save_file({}, stage / "model.safetensors")
        (stage / "config.json").write_text("{}")
        os.chmod(stage / "config.json", 0o600)  # a file made private by a writer's temp file
        (stage / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(stage / "run.sh", 0o700)
    modes = _modes(tmp_path / "speakers") | _modes(tmp_path / "weights")
    assert set(modes) == {"speakers.safetensors", "speakers.json", "model.safetensors", "config.json", "run.sh"}
    expected = 0o666 & ~mask
    assert {name: mode for name, mode in modes.items() if name != "run.sh"} == dict.fromkeys(
        ["speakers.safetensors", "speakers.json", "model.safetensors", "config.json"], expected
    )
    assert modes["run.sh"] == 0o777 & ~mask  # executables stay executable
    assert isinstance(SpeakerBank.load(tmp_path / "speakers"), SpeakerBank)


def test_saved_model_files_all_get_the_same_mode(tiny_omni, tmp_path, umask):
    model, _ = tiny_omni
    umask(0o022)
    model.save_pretrained(tmp_path / "model")
    modes = _modes(tmp_path / "model")
    weights = [name for name in modes if name.endswith(".safetensors")]
    assert "speakers.safetensors" in weights and len(weights) >= 3
    assert set(modes.values()) == {0o644}, {n: oct(m) for n, m in modes.items() if m != 0o644}

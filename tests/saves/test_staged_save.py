"""Nothing lost: every save is staged. A save that fails part-way leaves the old artifact loadable and nothing stray;
a folder left half-written while files were moved in refuses to load; an overwrite keeps the user's files and
leaves none of the previous artifact's files behind."""

import json
import shutil

import pytest
import torch

from omni_hf import OmniForConditionalGeneration, OmniProcessor
from omni_hf.common import staged_save as staging
from omni_hf.common.staged_save import INCOMPLETE, IncompleteSaveError, read_manifest
from omni_hf.token2wav import OmniToken2WavPipeline
from omni_hf.voices.speakers import SpeakerBank


def _entries(folder):
    """Every path under `folder` and beside it (staging folders are siblings)."""
    return sorted(str(p.relative_to(folder.parent)) for p in folder.parent.rglob("*"))


@pytest.fixture()
def saved(tiny_omni_dir, tmp_path):
    """A copy of the tiny model (saved by omni_hf) plus a user's own files, and the model loaded from it."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_omni_dir, folder)
    (folder / "notes.txt").write_text("my notes")
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"the user's own file")
    return folder, OmniForConditionalGeneration.from_pretrained(folder).eval()


def _changed(model):
    with torch.no_grad():
        model.thinker.lm_head.weight.add_(1.0)
    model.speakers.add(model.speakers["Chelsie"].__class__("Extra", 1, model.speakers["Chelsie"].speaker_embedding,
                                                           model.speakers["Chelsie"].reference_mel))  # fmt: skip
    return model


def test_failed_model_save_leaves_the_old_model(saved, monkeypatch):
    folder, model = saved
    old_head = model.thinker.lm_head.weight.clone()
    before = _entries(folder)

    def broken(self, *args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(OmniToken2WavPipeline, "save_pretrained", broken)  # after the thinker/talker weights
    with pytest.raises(OSError, match="disk full"):
        _changed(model).save_pretrained(folder)
    assert _entries(folder) == before  # nothing written, nothing stray
    reloaded = OmniForConditionalGeneration.from_pretrained(folder)
    torch.testing.assert_close(reloaded.thinker.lm_head.weight, old_head)
    assert reloaded.speakers.names() == ["Chelsie", "Ethan"]


def test_save_killed_while_moving_in_refuses_to_load_then_a_new_save_completes_it(saved, monkeypatch):
    folder, model = saved
    real_move, moved = staging._move, []

    def dies_half_way(source, target):
        if len(moved) == 3:
            raise KeyboardInterrupt  # as if the process were killed between two renames
        moved.append(target)
        real_move(source, target)

    monkeypatch.setattr(staging, "_move", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        _changed(model).save_pretrained(folder)
    assert (folder / INCOMPLETE).is_file()
    for load in (OmniForConditionalGeneration.from_pretrained, OmniProcessor.from_pretrained, SpeakerBank.load):
        with pytest.raises(IncompleteSaveError, match="half-written by an interrupted save"):
            load(folder)
    with pytest.raises(IncompleteSaveError):
        OmniToken2WavPipeline.from_pretrained(folder / "token2wav")
    monkeypatch.setattr(staging, "_move", real_move)
    model.save_pretrained(folder)
    assert not (folder / INCOMPLETE).exists()
    reloaded = OmniForConditionalGeneration.from_pretrained(folder)
    torch.testing.assert_close(reloaded.thinker.lm_head.weight, model.thinker.lm_head.weight)
    assert "Extra" in reloaded.speakers
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".model.staging")]


def test_overwrite_keeps_user_files_and_leaves_nothing_stale(saved):
    folder, model = saved
    model.speakers = SpeakerBank()  # the new artifact has no speakers: the old speaker files must go
    model.save_pretrained(folder)
    names = {p.name for p in folder.iterdir()}
    assert "speakers.safetensors" not in names and "speakers.json" not in names
    assert (folder / "notes.txt").read_text() == "my notes"
    assert (folder / "model-00001-of-00002.safetensors").read_bytes() == b"the user's own file"
    assert {"model", "processor"} <= set(read_manifest(folder))  # the processor's files are its own part
    assert (folder / "tokenizer_config.json").is_file()  # a model save does not remove the processor's files
    assert len(OmniForConditionalGeneration.from_pretrained(folder).speakers) == 0


def test_failed_speaker_and_processor_saves_leave_the_old_ones(saved, monkeypatch):
    folder, model = saved
    before = _entries(folder)
    import omni_hf.voices.speakers as speakers_module

    def broken_save_file(tensors, path, metadata=None):
        path.write_bytes(b"half a file")
        raise OSError("interrupted (simulated)")

    monkeypatch.setattr(speakers_module, "save_file", broken_save_file)
    with pytest.raises(OSError, match="interrupted"):
        _changed(model).speakers.save(folder)
    processor = OmniProcessor.from_pretrained(folder)
    monkeypatch.setattr(
        type(processor.tokenizer), "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("x"))
    )
    with pytest.raises(OSError):
        processor.save_pretrained(folder)
    assert _entries(folder) == before
    assert SpeakerBank.load(folder).names() == ["Chelsie", "Ethan"]
    assert OmniProcessor.from_pretrained(folder).tokenizer.vocab_size == processor.tokenizer.vocab_size


def test_thinker_and_pipeline_saves_are_staged(saved, tmp_path, monkeypatch):
    from omni_hf import OmniThinkerForConditionalGeneration

    folder, model = saved
    target = tmp_path / "thinker"
    model.thinker.save_pretrained(target)
    assert json.loads((target / ".omni_hf_saved.json").read_text())["parts"]["model"]
    import omni_hf.common.remote_code as remote_code

    monkeypatch.setattr(remote_code, "_flatten", lambda dotted: (_ for _ in ()).throw(OSError("killed")))
    with torch.no_grad():
        model.thinker.lm_head.weight.add_(1.0)
    with pytest.raises(OSError, match="killed"):
        model.thinker.save_pretrained(target)  # the code set is written after the weights
    monkeypatch.undo()
    reloaded = OmniThinkerForConditionalGeneration.from_pretrained(target)
    assert not torch.equal(reloaded.lm_head.weight, model.thinker.lm_head.weight)
    pipe_dir = tmp_path / "t2w"
    model.token2wav.save_pretrained(pipe_dir)
    assert (pipe_dir / "model_index.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_failed_voice_adapter_save_leaves_the_old_adapter(saved, tmp_path, monkeypatch):
    pytest.importorskip("peft")
    folder, model = saved
    model.voice_adapters.add("robo")
    adapter_dir = model.voice_adapters.save("robo", tmp_path / "voice")
    (adapter_dir.parent / "my-recording.wav").write_bytes(b"user audio")
    before = {p: p.read_bytes() for p in adapter_dir.parent.rglob("*") if p.is_file()}
    with torch.no_grad():  # trained further: the new weights must not land beside the old card
        for name, parameter in model.voice_adapters.peft.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.5)
    monkeypatch.setattr(type(model.voice_adapters), "_write_card", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        model.voice_adapters.save("robo", tmp_path / "voice")  # the card is written after the weights
    assert {p: p.read_bytes() for p in adapter_dir.parent.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    model.voice_adapters.unload()
    assert model.voice_adapters.load(adapter_dir) == "robo"

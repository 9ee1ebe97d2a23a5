"""Export back: `omni-hf export` writes the official layout; transformers' own model loads it and answers (text ids and
waveforms, greedy, on a left-padded batch) exactly as omni_hf does on the source folder."""

import json

import pytest
import torch
from safetensors.torch import load_file

from omni_hf import OmniForConditionalGeneration, cli
from omni_hf.talker.modeling_talker import talker_generation_config

GREEDY = dict(
    speaker="Chelsie",
    thinker_max_new_tokens=4,
    thinker_do_sample=False,
    thinker_eos_token_id=1002,
    talker_do_sample=False,
    talker_max_new_tokens=16,
    talker_repetition_penalty=1.0,
)


@pytest.fixture(scope="module")
def exported(official_full, tmp_path_factory):
    """official → omni_hf layout (convert) → official layout again (export)."""
    root = tmp_path_factory.mktemp("export")
    assert cli.main(["convert", str(official_full), str(root / "ours")]) == 0
    assert cli.main(["export", str(root / "ours"), str(root / "official")]) == 0
    return root / "ours", root / "official"


def test_export_layout_is_official(official_full, exported):
    _, destination = exported
    config = json.loads((destination / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_omni"
    assert config["thinker_config"]["model_type"] == "qwen2_5_omni_thinker"
    assert config["thinker_config"]["text_config"]["model_type"] == "qwen2_5_omni_text"
    assert config["talker_config"]["model_type"] == "qwen2_5_omni_talker"
    assert "auto_map" not in config
    original, written = load_file(official_full / "model.safetensors"), load_file(destination / "model.safetensors")
    assert sorted(original) == sorted(written)  # the official names, token2wav.code2wav_* included
    for name, tensor in original.items():
        assert torch.equal(written[name], tensor), name
    speakers = torch.load(destination / "spk_dict.pt", weights_only=True)
    reference = torch.load(official_full / "spk_dict.pt", weights_only=True)
    assert sorted(speakers) == sorted(reference)
    for name, entry in reference.items():
        assert speakers[name]["bos_token"] == entry["bos_token"]
        assert torch.equal(speakers[name]["cond"], entry["cond"])
        assert torch.equal(speakers[name]["ref_mel"], entry["ref_mel"])
    assert json.loads((destination / "generation_config.json").read_text())["eos_token_id"] == 1002


def test_transformers_loads_the_export_and_answers_like_omni_hf(exported):
    from transformers import LogitsProcessorList, Qwen2_5OmniForConditionalGeneration, SuppressTokensLogitsProcessor

    source, destination = exported
    ours = OmniForConditionalGeneration.from_pretrained(source).eval()
    reference = Qwen2_5OmniForConditionalGeneration.from_pretrained(destination).eval()
    assert sorted(reference.speaker_map) == ["Chelsie", "Ethan"]
    ids = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10], [1000, 1000, 1000, 1001, 5, 11, 1002, 1001, 9]])
    batch = {"input_ids": ids, "attention_mask": (ids != 1000).long()}  # left-padded
    never = talker_generation_config(ours.config.talker_config).suppress_tokens
    torch.manual_seed(7)  # the reference draws its ODE noise from the global generator
    expected_ids, expected_waves = reference.generate(
        **batch, **GREEDY, talker_logits_processor=LogitsProcessorList([SuppressTokensLogitsProcessor(never)])
    )
    got_ids, got_waves = ours.generate(**batch, **GREEDY, generator=torch.Generator().manual_seed(7))
    assert torch.equal(got_ids, expected_ids)
    diffs = []
    for got, expected in zip(got_waves, expected_waves):
        assert got.shape == expected.shape and got.numel() > 0
        assert expected.abs().max() > 1e-3
        diffs.append(float((got - expected).abs().max()))
    print(f"export round trip: waveform max abs diff {max(diffs):.2e}")
    assert max(diffs) <= 1e-4


def test_export_refuses_a_non_empty_destination_before_loading(exported, tmp_path, capsys):
    source, destination = exported
    assert cli.main(["export", "does/not/exist", str(destination)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_export_overwrite_keeps_the_users_files(exported, tmp_path):
    """`--overwrite` replaces what an earlier export wrote and nothing else: it once deleted the whole folder (the
    user's files, and the source model when exporting into its parent)."""
    source, _ = exported
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text("print('mine')")
    (work / "data").mkdir()
    (work / "data" / "rows.jsonl").write_text("{}\n")
    model_copy = work / "model"
    model_copy.mkdir()
    for item in source.iterdir():  # the source model inside the destination
        if item.is_file():
            (model_copy / item.name).write_bytes(item.read_bytes())
    before = {p.relative_to(work): p.read_bytes() for p in work.rglob("*") if p.is_file()}
    for _ in range(2):  # a second export replaces the first one's files
        assert cli.main(["export", str(source), str(work), "--overwrite"]) == 0
    after = {p.relative_to(work): p.read_bytes() for p in work.rglob("*") if p.is_file()}
    assert all(after.get(path) == content for path, content in before.items())  # every user file as it was
    assert (work / "model.safetensors").is_file() and (work / "config.json").is_file()
    assert json.loads((work / "config.json").read_text())["model_type"] == "qwen2_5_omni"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".work.")]  # no staging folder left behind

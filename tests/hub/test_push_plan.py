"""Pushes without a network: `omni-hf push --dry-run` lists what would be uploaded (staged exactly as the real push),
the staged-save bookkeeping is never uploaded (nested folders too), a DPO adapter keeps its own card, and every card
carries its metadata (`library_name`, `pipeline_tag`, `base_model`, `license`, training tags) and the real install."""

import os
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import yaml  # noqa: E402
from huggingface_hub.utils import filter_repo_objects  # noqa: E402

from omni_hf import OmniForConditionalGeneration, cli  # noqa: E402
from omni_hf.hub import TEMPLATES, push, render_card  # noqa: E402

DETAILS = dict(
    thinker_parameters="1M", talker_parameters="1M", token2wav_parameters="1M", speakers=["Chelsie"], speaker="Chelsie"
)


def _metadata(text: str) -> dict:
    return yaml.safe_load(text.split("---")[1])


def _dry_run(capsys, *argv) -> tuple[list[str], str]:
    assert cli.main(["push", *argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    listing, card = out.split("\nCard (README.md):\n", 1)
    return [line.strip() for line in listing.splitlines()[1:] if line.strip()], card


def test_push_dry_run_lists_the_full_model_without_bookkeeping(tiny_omni_dir, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)  # a dry run needs no token and uploads nothing
    files, card = _dry_run(capsys, "model", str(tiny_omni_dir), "me/tiny-omni")
    for path in ("config.json", "model.safetensors", "token2wav/model_index.json", "speakers.json", "README.md"):
        assert path in files
    assert "tokenizer.json" in files and "processor_config.json" in files
    assert not [path for path in files if ".omni_hf_" in path]  # the stage has them at the top and in token2wav/
    assert _metadata(card)["library_name"] == "omni_hf"


def test_push_dry_run_of_library_pushed_parts(tiny_omni_dir, capsys):
    files, card = _dry_run(capsys, "token2wav", str(tiny_omni_dir), "me/t2w")
    assert {"model_index.json", "scheduler/scheduler_config.json", "README.md"} <= set(files)
    assert any(path.startswith("dit/") for path in files) and not [p for p in files if ".omni_hf_" in p]
    assert _metadata(card)["library_name"] == "diffusers"
    files, _ = _dry_run(capsys, "speakers", str(tiny_omni_dir), "me/voices")
    assert files == ["README.md", "speakers.json", "speakers.safetensors"]


def test_publish_folder_never_uploads_nested_bookkeeping(tmp_path, monkeypatch):
    (tmp_path / "token2wav").mkdir()
    for path in ("config.json", ".omni_hf_saved.json", "token2wav/model_index.json", "token2wav/.omni_hf_saved.json"):
        (tmp_path / path).write_text("{}")
    assert push.folder_upload_files(tmp_path) == ["config.json", "token2wav/model_index.json"]
    calls = {}

    class FakeApi:  # what publish_folder hands huggingface_hub
        def __init__(self, token=None):
            pass

        def repo_exists(self, *args, **kwargs):
            return True

        def create_repo(self, *args, **kwargs):
            pass

        def upload_folder(self, **kwargs):
            calls.update(kwargs)
            return SimpleNamespace(commit_url="http://127.0.0.1/commit")

    monkeypatch.setattr(push, "HfApi", FakeApi)
    push.publish_folder(tmp_path, "me/x", token="t")
    uploaded = filter_repo_objects(
        ["config.json", ".omni_hf_saved.json", "token2wav/model_index.json", "token2wav/.omni_hf_saved.json"],
        ignore_patterns=calls["ignore_patterns"],
    )
    assert list(uploaded) == ["config.json", "token2wav/model_index.json"]


@pytest.fixture(scope="module")
def dpo_adapter(tiny_omni_dir, tmp_path_factory):
    """An adapter folder as the Talker DPO recipe leaves it: the adapter and its own card with the run's figures."""
    import datasets

    from omni_hf.training.dpo import ADAPTER
    from omni_hf.training.dpo_report import finish_dpo_outputs

    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir).eval()
    model.voice_adapters.add(ADAPTER)
    root = tmp_path_factory.mktemp("dpo")
    saved = model.voice_adapters.save(ADAPTER, root / "final", voice_label="calm")
    trainer = SimpleNamespace(omni_model=model, adapter_name="calm")
    pairs = datasets.Dataset.from_dict({"chosen_codes": [[1, 2]], "rejected_codes": [[3, 4]]})
    metrics = {"pairs": 1, "steps": 2, "first_loss": 0.6931, "last_loss": 0.5123}
    finish_dpo_outputs(trainer, pairs, saved, root, metrics, None, None, "Qwen/Qwen2.5-Omni-7B")
    return saved


def test_voice_adapter_push_keeps_the_dpo_card(tiny_omni_dir, dpo_adapter, capsys):
    own = (dpo_adapter / "README.md").read_text()
    assert "Talker DPO adapter `calm`" in own and "| last_loss | 0.5123 |" in own
    meta = _metadata(own)
    assert {"trl", "dpo"} <= set(meta["tags"]) and meta["library_name"] == "peft"
    files, card = _dry_run(
        capsys, "voice-adapter", str(dpo_adapter), "me/calm-voice", "--model", str(tiny_omni_dir),
        "--base-model", "Qwen/Qwen2.5-Omni-7B",
    )  # fmt: skip
    assert {"adapter_model.safetensors", "adapter_config.json", "voice.json", "README.md"} <= set(files)
    assert "Talker DPO adapter `calm`" in card and "| last_loss | 0.5123 |" in card  # its own figures kept
    assert "No measurements were given" not in card and "YOUR_USER" not in card
    assert 'model.voice_adapters.load("me/calm-voice"' in card
    meta = _metadata(card)
    assert meta["base_model"] == "Qwen/Qwen2.5-Omni-7B" and meta["license"] == "apache-2.0"
    assert {"trl", "dpo", "omni_hf", "lora"} <= set(meta["tags"]) and meta["library_name"] == "peft"


def test_plain_voice_card_is_rendered_with_the_given_figures(tiny_omni_dir, tmp_path, capsys):
    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir)
    model.voice_adapters.add("bright")
    folder = model.voice_adapters.save("bright", tmp_path / "bright")
    assert "No measurements were given" in (folder / "README.md").read_text()
    (tmp_path / "r.json").write_text('{"wer": {"test-en (%)": 3.1}}')
    args = (
        "voice-adapter",
        str(folder),
        "me/bright",
        "--model",
        str(tiny_omni_dir),
        "--results",
        str(tmp_path / "r.json"),
    )
    _, card = _dry_run(capsys, *args)
    assert "| test-en (%) | 3.1 |" in card and "# Voice adapter `bright`" in card


@pytest.mark.parametrize("kind", [k for k in TEMPLATES if k != "dataset"])
def test_cards_carry_library_name_and_the_real_install(kind):
    details = {
        "thinker": dict(thinker_parameters="1M"),
        "token2wav": dict(dit_parameters="1M", vocoder_parameters="1M", scheduler="S", num_inference_steps=4),
        "voice": dict(voice="v", rank=4, target_modules=["q_proj"], adapter_parameters="1", talker_shape="x"),
        "speakers": dict(speakers=["Chelsie"], speaker_rows=[]),
    }.get(kind, DETAILS)
    text = str(render_card(kind, "me/x", base_model="Qwen/Qwen2.5-Omni-7B", **details))
    meta = _metadata(text)
    assert meta["library_name"] and meta["pipeline_tag"] and meta["license"] == "apache-2.0"
    assert "pip install omni-hf" not in text and 'pip install "omni-hf' not in text
    assert "pip install -c requirements/lock.txt -e" in text and "not on PyPI" in text


def test_sft_card_metadata(tmp_path):
    from omni_hf.training.run import stage_card
    from omni_hf.training.stages import get_stage

    args = SimpleNamespace(model=str(tmp_path), data=str(tmp_path), base_model="Qwen/Qwen2.5-Omni-7B")
    metrics = {"steps": 6, "first_loss": 2.0, "last_loss": 1.5, "trainable_parameters": 10, "frozen_parameters": 5}
    meta = _metadata(str(stage_card(get_stage("sft"), args, {**metrics, "data": {"rows": 3}})))
    assert meta["pipeline_tag"] == "any-to-any" and meta["license"] == "apache-2.0"
    assert meta["base_model"] == "Qwen/Qwen2.5-Omni-7B" and meta["library_name"] == "transformers"
    assert {"omni_hf", "sft"} <= set(meta["tags"])

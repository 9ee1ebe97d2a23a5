"""Push every artifact to the stand-in Hub, load it back, check weights, card metadata and usage snippets."""

import pytest
import yaml

ARTIFACTS = ["model", "thinker", "token2wav", "speakers", "voice"]


@pytest.mark.parametrize("kind", ARTIFACTS)
def test_pushed_weights_load_back_equal(hub_report, kind):
    report = hub_report[0][kind]
    assert report["weights_equal"], f"{kind}: weights loaded from the Hub differ from the pushed ones"
    assert "README.md" in report["files"]


def test_full_model_layout_and_parts(hub_report):
    report = hub_report[0]["model"]
    assert report["token2wav_equal"] and report["speakers_equal"]
    for path in ("config.json", "model.safetensors", "token2wav/model_index.json", "speakers.json", "tokenizer.json"):
        assert path in report["files"]
    assert report["files"] == [f for f in hub_report[0]["snapshot_files"]]


@pytest.mark.parametrize("kind", [*ARTIFACTS, "dataset"])
def test_card_metadata_and_snippet(hub_report, kind):
    report = hub_report[0][kind]
    metadata = report["metadata"]
    assert isinstance(metadata, dict), f"{kind}: card has no YAML header"
    assert metadata["license"] == "apache-2.0"
    assert {"omni_hf", "qwen2.5-omni"} <= set(metadata["tags"])
    if kind != "dataset":
        assert metadata["library_name"] == {"voice": "peft", "token2wav": "diffusers"}.get(kind, "omni_hf")
        assert metadata["pipeline_tag"]
    assert report["snippet"] == "ok", f"{kind}: the card's usage code failed:\n{report['snippet']}"
    assert yaml.safe_load(report["text"].split("---")[1]) == metadata


def test_measured_figures_in_cards(hub_report):
    model = hub_report[0]["model"]["text"]
    for fragment in (
        "| thinker logits max |diff| | 2.5e-06 |",
        "| time to first audio (s) | 0.412 |",
        "| total | 0.35 |",
    ):
        assert fragment in model
    assert "### Word error rate" in model and "| test-en (%) | 2.3 |" in model
    assert "benchmarks/latency.py (test figures)" in model
    assert "No measurements were given" in hub_report[0]["token2wav"]["text"]


def test_speaker_bank_is_a_hub_mixin(hub_report):
    speakers = hub_report[0]["speakers"]
    assert speakers["mixin_load_equal"]  # SpeakerBank.from_pretrained(repo) reads what push_to_hub wrote
    assert sorted(speakers["files"]) == ["README.md", "speakers.json", "speakers.safetensors"]  # no config.json


def test_voice_card_points_at_base_model(hub_report):
    voice = hub_report[0]["voice"]
    assert voice["metadata"]["base_model"] == "tester/tiny-omni"
    assert 'model.voice_adapters.load("tester/voice-bright", name="bright")' in voice["text"]


def test_dataset_round_trip_keeps_push_to_hub_metadata(hub_report):
    dataset = hub_report[0]["dataset"]
    assert dataset["rows_equal"]
    assert dataset["metadata"]["configs"][0]["data_files"][0]["path"] == "data/train-*"
    assert dataset["metadata"]["dataset_info"]["splits"][0]["num_examples"] == 3
    assert "text-to-speech" in dataset["metadata"]["task_categories"]


def test_bad_inputs_are_clear_errors(hub_report):
    bad = hub_report[0]["bad"]
    for case in ("invalid_repo_id", "repo_id_without_namespace"):
        assert bad[case]["raised"] == "ValueError" and "Invalid repo id" in bad[case]["message"]
    assert bad["bad_results"]["raised"] == "ValueError" and "'wer'" in bad["bad_results"]["message"]
    assert bad["not_a_dataset"]["raised"] == "TypeError"
    assert bad["no_token"]["raised"] == "ValueError" and "token" in bad["no_token"]["message"]
    assert bad["no_token_repo_exists"] is False


def test_failed_upload_is_reported_and_nothing_half_published(hub_report):
    bad = hub_report[0]["bad"]
    for case in ("failed_commit_new_repo", "failed_commit_existing"):
        assert bad[case]["raised"] == "PushError", bad[case]
        assert "failed" in bad[case]["message"] and "500" in bad[case]["message"]
    assert bad["failed_commit_new_repo_exists"] is False  # the repo made for the failed push is gone again
    assert bad["failed_commit_existing_unchanged"] is True


def test_stand_in_saw_regular_and_lfs_uploads(hub_report):
    hub = hub_report[1]
    paths = [path for _, path in hub.requests]
    assert any(p.endswith("/info/lfs/objects/batch") for p in paths)
    assert any(p.startswith("/api/validate-yaml") for p in paths)

"""Card rendering without a network: templates found, metadata written by ModelCardData, figures read from JSON."""

import json

import pytest
import yaml

from omni_hf.hub import TEMPLATES, load_results, render_card, results_markdown, templates_dir


def _metadata(card) -> dict:
    return yaml.safe_load(str(card).split("---")[1])


def test_every_template_ships_and_renders():
    assert {p.name for p in templates_dir().glob("*.jinja")} >= set(TEMPLATES.values())
    card = render_card(
        "model",
        "me/omni",
        base_model="Qwen/Qwen2.5-Omni-7B",
        datasets=["me/pairs"],
        thinker_parameters="1M",
        talker_parameters="1M",
        token2wav_parameters="1M",
        speakers=["Chelsie"],
        speaker="Chelsie",
    )
    meta = _metadata(card)
    assert meta["base_model"] == "Qwen/Qwen2.5-Omni-7B" and meta["datasets"] == ["me/pairs"]
    assert meta["pipeline_tag"] == "any-to-any" and meta["license"] == "apache-2.0"
    assert 'OmniForConditionalGeneration.from_pretrained("me/omni")' in str(card)


def test_local_base_model_path_is_not_metadata(tmp_path):
    card = render_card("thinker", "me/t", base_model=str(tmp_path), thinker_parameters="1M")
    assert "base_model" not in _metadata(card)


def test_results_from_json_files_merge(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"latency": {"first audio (s)": 0.5}, "hardware": "1x H100"}))
    b.write_text(json.dumps({"latency": {"first audio (s)": 0.4}, "rtf": {"total": 0.3}}))
    results = load_results([a, b])
    assert results["latency"] == {"first audio (s)": 0.4} and results["rtf"] == {"total": 0.3}
    text = results_markdown(results)
    assert "hardware: 1x H100" in text and "| first audio (s) | 0.4 |" in text and "Real-time factor" in text


@pytest.mark.parametrize(
    "content, message",
    [("not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"wer": {"x": [1]}}', "'wer'")],
)
def test_bad_results_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        load_results(path)
    assert "bad.json" in str(error.value)


def test_missing_results_file_and_unknown_kind(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_results(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="Unknown card kind 'vae'"):
        render_card("vae", "me/x")


def test_cli_card_renders_a_saved_speaker_set(tmp_path, capsys):
    from omni_hf.cli import main
    from omni_hf.testing.tiny import tiny_speakers

    tiny_speakers(8).save(tmp_path)
    out = tmp_path / "README.md"
    assert main(["card", "speakers", str(tmp_path), "--repo-id", "me/voices", "--output", str(out)]) == 0
    text = out.read_text()
    assert _metadata(text)["pipeline_tag"] == "text-to-speech" and "| Chelsie |" in text
    assert main(["push", "speakers", str(tmp_path), "bad id!"]) == 2
    assert "Invalid repo id 'bad id!'" in capsys.readouterr().err

"""The recipes' input errors name the file and the line: malformed JSON lines, empty data files, YAML syntax errors,
a bad `synthetic:N`."""

import pytest

from helpers.recipes import load_recipe
from omni_hf.training.thinker_data import load_rows
from omni_hf.training.voice_lora import load_rows as load_rows_voice


@pytest.fixture()
def bad_jsonl(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "one", "codes": [1]}\n\n{"text": "two", "codes": [2]}\n{"text": "three", "codes": [3\n')
    return path


def test_malformed_jsonl_names_file_and_line(bad_jsonl):
    with pytest.raises(ValueError, match=rf"{bad_jsonl}:4: not valid JSON"):
        load_rows(str(bad_jsonl))
    with pytest.raises(ValueError, match=rf"{bad_jsonl}:4: not valid JSON"):
        load_rows_voice(str(bad_jsonl), None, 0)
    with pytest.raises(ValueError, match=rf"{bad_jsonl}:4: not valid JSON"):
        load_recipe("talker_dpo").read_texts(str(bad_jsonl))


def test_empty_data_file_is_a_clear_error(tmp_path):
    for suffix in (".jsonl", ".json", ".csv"):
        empty = tmp_path / f"empty{suffix}"
        empty.write_text("")
        with pytest.raises(ValueError, match=r"has no rows \(it is empty\)"):
            load_rows(str(empty))
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n")
    with pytest.raises(ValueError, match="has no rows"):
        load_rows_voice(str(blank), None, 0)
    with pytest.raises(ValueError, match="has no prompts"):
        (tmp_path / "prompts.txt").write_text("\n")
        load_recipe("talker_dpo").read_texts(str(tmp_path / "prompts.txt"))


def test_yaml_syntax_error_is_a_clear_message(tmp_path, capsys):
    config = tmp_path / "recipe.yaml"
    config.write_text("model: ./tiny\ndata: [unclosed\nmax_steps: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        load_recipe("voice_lora").parse_args(["--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{config}:3:" in err and "not valid YAML" in err and "Traceback" not in err


def test_synthetic_count_must_be_a_positive_integer(tmp_path):
    for bad in ("synthetic:eight", "synthetic:0", "synthetic:"):
        with pytest.raises(ValueError, match=rf"--data {bad}: expected synthetic:N with N a positive integer"):
            load_rows_voice(bad, None, 0)
    assert len(load_rows_voice("synthetic:3", None, 0)) == 3
    with pytest.raises(ValueError, match="--prompts synthetic:many"):
        load_recipe("talker_dpo").read_texts("synthetic:many")

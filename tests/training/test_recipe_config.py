"""The recipes' shared parser (TrlParser over dataclasses + YAML --config): every training-config field is a flag,
the earlier spellings still work, precedence is flags > YAML > recipe defaults, bad input fails before any work."""

import pytest

from helpers.recipes import load_recipe
from omni_hf.training.run import parse_args


def _stage(argv, stage="sft", allowed=("sft",)):
    return parse_args(stage, ["--model", "m", "--data", "d", "--output_dir", "o", *argv], allowed)


def test_training_arguments_fields_are_flags():
    _, script, training = _stage(
        ["--report_to", "tensorboard", "--warmup_steps", "0.1", "--per_device_train_batch_size", "3"]
        + ["--lr_scheduler_type", "linear", "--gradient_accumulation_steps", "2", "--max_grad_norm", "0.5"]
        + ["--packing", "false", "--trainable", "audio_tower", "visual"]
    )
    assert training.report_to == ["tensorboard"] and training.warmup_steps == 0.1
    assert training.per_device_train_batch_size == 3 and training.gradient_accumulation_steps == 2
    assert training.lr_scheduler_type.value == "linear" and training.max_grad_norm == 0.5
    assert script.packing is False and script.trainable == ["audio_tower", "visual"]


def test_stage_defaults_and_old_spellings():
    stage, _, training = _stage([], "stage1_encoders", ("stage1_adapters", "stage1_encoders"))
    assert training.learning_rate == stage.learning_rate == 2e-4 and training.warmup_steps == stage.warmup_ratio
    assert training.lr_scheduler_type.value == "cosine" and training.seed == 0 and training.logging_steps == 10
    _, script, training = _stage(["--batch_size", "5", "--warmup_ratio=0.2", "--repo_id", "me/x", "--overwrite"])
    assert training.per_device_train_batch_size == 5 and training.warmup_steps == 0.2
    assert training.hub_model_id == "me/x" and script.overwrite


def test_yaml_sits_between_defaults_and_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("batch_size: 7\nlearning_rate: 0.5\nmax_steps: 9\nstage: stage1_adapters\n")
    stage, _, training = parse_args(
        "stage1_encoders",
        ["--config", str(config), "--model", "m", "--data", "d", "--output_dir", "o", "--max_steps", "11"],
        ("stage1_adapters", "stage1_encoders"),
    )
    assert stage.name == "stage1_adapters" and training.per_device_train_batch_size == 7  # YAML alias key
    assert training.learning_rate == 0.5 and training.max_steps == 11  # YAML over the stage, flag over YAML


def test_dpo_config_fields_are_flags():
    recipe = load_recipe("talker_dpo")
    args, config = recipe.parse_args(
        ["--model", "m", "--prompts", "synthetic:2", "--beta", "0.3", "--loss_type", "ipo", "--batch_size", "3"]
        + ["--use_peft", "--lora_r", "4", "--warmup_steps", "5", "--report_to", "none"]
    )
    assert args.use_peft and args.lora_r == 4 and config.beta == 0.3 and config.loss_type == ["ipo"]
    assert config.per_device_train_batch_size == 3 and config.warmup_steps == 5
    assert config.learning_rate == 5e-6 and config.max_steps == 1000 and config.output_dir == "talker-dpo"


def test_bad_input_fails_before_any_work(tmp_path):
    with pytest.raises(SystemExit):  # unknown flag
        _stage(["--learning_rat", "0.1"])
    with pytest.raises(SystemExit):  # missing required option
        parse_args("sft", ["--data", "d", "--output_dir", "o"], ("sft",))
    with pytest.raises(SystemExit):  # no such config file
        _stage(["--config", str(tmp_path / "nope.yaml")])
    with pytest.raises(SystemExit):  # --push_to_hub without a repo id
        _stage(["--push_to_hub"])
    with pytest.raises(SystemExit):  # invalid repo id
        _stage(["--push_to_hub", "--hub_model_id", "no namespace"])
    with pytest.raises(SystemExit, match="--prompts / --pairs"):
        load_recipe("talker_dpo").parse_args(["--model", "m"])


def _users_folder(tmp_path):
    folder = tmp_path / "mine"
    (folder / "checkpoint-5").mkdir(parents=True)
    (folder / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (folder / "README.md").write_text("my notes")
    (folder / "config.json").write_text("{}")
    return folder, {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("recipe", ["sft", "voice_lora"])
def test_overwrite_refuses_a_folder_no_recipe_made_before_any_work(recipe, tmp_path):
    """`--overwrite` used to replace the user's README.md / config.json / weights and delete their checkpoint-5/
    through checkpoint rotation; now a folder without the recipes' marker is refused, naming what it holds."""
    folder, before = _users_folder(tmp_path)
    argv = ["--model", str(tmp_path / "not-loaded"), "--output_dir", str(folder), "--overwrite"]
    argv += ["--data", str(tmp_path / "not-read.jsonl")] if recipe == "sft" else ["--voice", "v", "--data", "x"]
    with pytest.raises(SystemExit, match=r"not made by an omni_hf recipe \(it holds README\.md, checkpoint-5, "):
        load_recipe(recipe).main(argv)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_overwrite_of_a_recipes_own_folder_is_allowed(tmp_path):
    from omni_hf.training.recipe_config import RECIPE_OUTPUT_MARKER, check_output_dir

    output = check_output_dir(tmp_path / "run")  # a first run marks its folder
    assert (output / RECIPE_OUTPUT_MARKER).is_file()
    (output / "model.safetensors").write_bytes(b"an earlier run's weights")
    with pytest.raises(SystemExit, match="is not empty"):
        check_output_dir(output)
    assert check_output_dir(output, overwrite=True) == output
    folder, _ = _users_folder(tmp_path)
    assert check_output_dir(folder, resume=True) == folder  # resuming reads the checkpoints: allowed
    assert not (folder / RECIPE_OUTPUT_MARKER).exists()  # and does not mark the folder as a recipe's

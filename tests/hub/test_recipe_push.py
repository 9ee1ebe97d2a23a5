"""Recipes publish through omni_hf.hub: `voice_lora.py --push_to_hub` uploads the trained adapter with its card in
one commit to the stand-in Hub; a push that cannot succeed (no token, bad repo id) is refused before any training."""

import json
import subprocess
import sys

from conftest import client_env
from helpers.recipes import RECIPES


def _voice_recipe(model_dir, out, repo_id, env):
    argv = [sys.executable, str(RECIPES / "voice_lora.py"), "--model", str(model_dir), "--data", "synthetic:2"]
    argv += ["--voice", "robo", "--output_dir", str(out), "--max_steps", "2", "--batch_size", "2"]
    return subprocess.run([*argv, "--push_to_hub", "--repo_id", repo_id], env=env, capture_output=True, text=True)


def test_voice_recipe_pushes_its_adapter(fake_hub, tiny_omni_dir, tmp_path):
    hub, endpoint = fake_hub
    result = _voice_recipe(tiny_omni_dir, tmp_path / "run", "tester/robo-voice", client_env(endpoint, tmp_path / "hf"))
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads(result.stdout[result.stdout.rindex("{\n") :])  # the JSON printed last
    assert "tester/robo-voice" in metrics["pushed_to"]
    files = hub.files("model", "tester/robo-voice")
    assert {"adapter_model.safetensors", "adapter_config.json", "voice.json", "README.md"} <= set(files)
    card = files["README.md"].read_text()
    assert "library_name: peft" in card and "# Voice adapter `robo`" in card and "loss_after" in card


def test_push_that_cannot_succeed_is_refused_before_training(fake_hub, tiny_omni_dir, tmp_path):
    _, endpoint = fake_hub
    no_token = client_env(endpoint, tmp_path / "hf", token=None)
    result = _voice_recipe(tiny_omni_dir, tmp_path / "a", "tester/robo-voice", no_token)
    assert result.returncode == 2 and "token" in result.stderr and not (tmp_path / "a").exists()
    result = _voice_recipe(tiny_omni_dir, tmp_path / "b", "no namespace", client_env(endpoint, tmp_path / "hf"))
    assert result.returncode == 2 and "Invalid repo id" in result.stderr and not (tmp_path / "b").exists()

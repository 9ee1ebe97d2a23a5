"""`import omni_hf` is quiet and light (it imports neither torch nor transformers), and the Auto classes still resolve
omni_hf's model types in every import order. Run in fresh interpreters: the test process has imported everything."""

import json
import subprocess
import sys

import pytest


def _python(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_import_prints_nothing_and_loads_no_heavy_library(tmp_path):
    result = _python(
        "import sys, json, omni_hf\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'diffusers', 'torchao') if m in sys.modules)))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    "order",
    [
        "import omni_hf\nfrom transformers import AutoConfig, AutoModel",  # omni_hf first, nothing of it touched
        "from transformers import AutoConfig, AutoModel\nimport omni_hf",  # transformers' Auto classes loaded first
        "import transformers\nimport omni_hf\nfrom transformers import AutoConfig, AutoModel",
    ],
)
def test_auto_classes_resolve_ours_in_any_import_order(tiny_omni_dir, tmp_path, order):
    code = (
        f"{order}\n"
        f"model = AutoModel.from_pretrained({str(tiny_omni_dir)!r})\n"
        f"print(type(AutoConfig.from_pretrained({str(tiny_omni_dir)!r})).__name__, type(model).__name__)\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["OmniConfig", "OmniForConditionalGeneration"]


def test_official_config_and_torchao_warnings_users_cannot_act_on_are_hidden(tmp_path):
    code = (
        "import omni_hf, logging\n"
        "from transformers import Qwen2_5OmniConfig\n"
        f"Qwen2_5OmniConfig().save_pretrained({str(tmp_path / 'official')!r})\n"
        "from transformers import AutoConfig\n"
        f"AutoConfig.from_pretrained({str(tmp_path / 'official')!r})\n"
        "logging.getLogger('torchao').warning('Failed to load /x/torchao/_C_mxfp8.cpython-311.so: no')\n"
        "logging.getLogger('torchao').warning('a torchao warning of another kind')\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "within the vocabulary" not in result.stderr and "_C_mxfp8" not in result.stderr
    assert "a torchao warning of another kind" in result.stderr  # only the known, harmless lines are dropped

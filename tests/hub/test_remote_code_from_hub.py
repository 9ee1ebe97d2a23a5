"""`trust_remote_code` from the Hub (the stand-in), in a Python where omni_hf cannot be imported: the code set lives in
one folder (`omni_code/`) and transformers' loader fetches it, and its relative imports, by path from the repo."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path


def client_env(*args, **kwargs):
    """tests/hub/conftest.py's, loaded by path (a bare `import conftest` may find another folder's)."""
    spec = importlib.util.spec_from_file_location("hub_conftest_env", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.client_env(*args, **kwargs)


def test_pushed_folders_load_with_remote_code_from_the_hub(hub_report, fake_hub, tmp_path):
    hub, endpoint = fake_hub
    full_files = hub.files("model", "tester/tiny-omni")
    assert not [name for name in full_files if name.endswith(".py") and "/" not in name]  # none at the top level
    assert "omni_code/modeling_omni.py" in full_files and "omni_code/processing_omni.py" in full_files
    script = textwrap.dedent(
        """
        import sys
        sys.modules["omni_hf"] = None  # only the repo's own code may be used
        import torch
        from huggingface_hub import hf_hub_download
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM, AutoModelForMultimodalLM, AutoProcessor
        thinker = AutoModelForCausalLM.from_pretrained("tester/tiny-omni-thinker", trust_remote_code=True)
        assert ".omni_code." in type(thinker).__module__, type(thinker).__module__
        saved = load_file(hf_hub_download("tester/tiny-omni-thinker", "model.safetensors"))
        state = thinker.state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved.items())
        processor = AutoProcessor.from_pretrained("tester/tiny-omni", trust_remote_code=True)
        assert type(processor).__name__ == "OmniProcessor"
        model = AutoModelForMultimodalLM.from_pretrained("tester/tiny-omni", trust_remote_code=True)
        assert type(model).__name__ == "OmniForConditionalGeneration" and model.has_talker
        print("HUB_REMOTE_OK")
        """
    )
    env = client_env(endpoint, tmp_path / "hf")
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert "HUB_REMOTE_OK" in result.stdout, result.stderr[-4000:]

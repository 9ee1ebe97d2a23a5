"""Auto classes after `import omni_hf`, and `trust_remote_code` loading in a process without omni_hf."""

import json
import os
import subprocess
import sys
import textwrap

import torch

import omni_hf
from omni_hf import OmniThinkerForConditionalGeneration


def test_auto_classes_resolve_ours(reference_full_dir, tmp_path, our_thinker):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    our_thinker.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is omni_hf.OmniThinkerConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is OmniThinkerForConditionalGeneration
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path)) is OmniThinkerForConditionalGeneration
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForCausalLM"] == "omni_code/modeling_thinker.OmniThinkerForConditionalGeneration"
    assert auto_map["AutoModel"] == "omni_code/modeling_thinker.OmniThinkerForConditionalGeneration"
    code = tmp_path / "omni_code"  # issue 27: the code set in one folder, not at the top level
    assert (code / "modeling_thinker.py").exists() and (code / "tmrope.py").exists()
    assert not list(tmp_path.glob("*.py"))


def test_remote_code_loads_without_omni_hf(tmp_path, our_thinker):
    our_thinker.save_pretrained(tmp_path / "model")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        expected = our_thinker(input_ids=ids).logits
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["omni_hf"] = None  # make `import omni_hf` fail: only the checkpoint's own code may be used
        import torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
        assert "omni_hf" not in type(model).__module__, type(model).__module__
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([[1, 2, 3, 4, 5]])).logits
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        assert (logits - expected).abs().max() < 1e-5
        print("REMOTE_OK", type(model).__module__)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HOME"] = str(tmp_path / "hf_home")
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


def test_auto_processor_resolves_ours(tmp_path):
    from transformers import AutoProcessor

    from omni_hf.testing.tokenizer import build_tiny_processor

    build_tiny_processor().save_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(processor) is omni_hf.OmniProcessor
    assert processor.audio_token_id == 1003

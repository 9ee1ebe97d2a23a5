"""int8 weight-only loading through transformers' TorchAoConfig: smaller, close logits, same greedy tokens."""

import pytest
import torch

from omni_hf import OmniThinkerForConditionalGeneration
from omni_hf.common.quantization import int8_quantization_config, linear_weight_bytes, load_int8

pytest.importorskip("torchao")  # the `quantization` extra (in `dev`)


def test_int8_thinker_is_smaller_and_close(reference_full_dir):
    full = OmniThinkerForConditionalGeneration.from_pretrained(reference_full_dir).eval()
    int8 = load_int8(OmniThinkerForConditionalGeneration, reference_full_dir).eval()
    assert type(int8.model.layers[0].mlp.up_proj.weight).__name__ == "Int8Tensor"
    assert linear_weight_bytes(int8) < 0.7 * linear_weight_bytes(full)
    ids = torch.tensor([[1001, 5, 6, 7, 8, 9, 1002]])
    with torch.no_grad():
        expected, got = full(input_ids=ids).logits, int8(input_ids=ids).logits
    drift = float((got - expected).abs().max() / expected.std())
    assert 0 < drift < 0.2, drift  # per-row int8 weights: a few percent of the logit spread
    gen = dict(max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    agree = (full.generate(input_ids=ids, **gen) == int8.generate(input_ids=ids, **gen)).float().mean()
    assert agree >= 0.9


def test_config_choice_and_errors():
    assert type(int8_quantization_config("cpu")).__name__ == "TorchAoConfig"
    with pytest.raises(ValueError, match="backend"):
        int8_quantization_config("cpu", backend="gptq")


def test_full_model_int8_keeps_token2wav_float32(tiny_omni_dir):
    from omni_hf import OmniForConditionalGeneration

    model = load_int8(OmniForConditionalGeneration, tiny_omni_dir)
    assert type(model.thinker.lm_head.weight).__name__ == "Int8Tensor"
    assert type(model.talker.codec_head.weight).__name__ == "Int8Tensor"
    assert all(type(p.data) is torch.Tensor and p.dtype == torch.float32 for p in model.token2wav.dit.parameters())

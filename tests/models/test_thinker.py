"""The Thinker against transformers' reference: loading, logits, greedy generation, losses, save/load, errors."""

import json

import pytest
import torch

from omni_hf import OmniThinkerConfig, OmniThinkerForConditionalGeneration
from omni_hf.testing import TINY_TOKEN_IDS as TOKENS


@pytest.fixture(scope="module")
def mixed(our_thinker, make_mixed_prompt):
    return make_mixed_prompt(TOKENS, our_thinker.rope_tokens, True)


def test_loads_official_full_checkpoint_without_missing_or_unexpected_keys(reference_full_dir):
    model, info = OmniThinkerForConditionalGeneration.from_pretrained(reference_full_dir, output_loading_info=True)
    assert info["missing_keys"] == set() and info["mismatched_keys"] == set() and info["error_msgs"] == []
    assert info["unexpected_keys"] == set()  # talker.* / token2wav.* are skipped by design
    assert isinstance(model.config, OmniThinkerConfig)
    assert model.config.model_type == "omni_hf_thinker"


def test_logits_match_reference_on_mixed_prompt(reference_thinker, our_thinker, mixed):
    with torch.no_grad():
        expected = reference_thinker(**mixed).logits
        got = our_thinker(**mixed).logits
    assert got.shape == expected.shape
    assert expected.std() > 0.5
    assert (got - expected).abs().max() <= 1e-4


def test_twelve_greedy_tokens_match_reference(reference_thinker, our_thinker, mixed):
    kwargs = dict(max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=TOKENS["pad"])
    expected = reference_thinker.generate(**mixed, **kwargs)
    got = our_thinker.generate(**mixed, **kwargs)
    assert got.shape[1] == mixed["input_ids"].shape[1] + 12
    assert torch.equal(got, expected)


def test_batched_left_padded_generation_matches_reference(reference_thinker, our_thinker, make_mixed_prompt):
    first = make_mixed_prompt(TOKENS, our_thinker.rope_tokens, False, seed=3)
    length = first["input_ids"].shape[1]
    second = [3, 4, 5, 6, 7]
    inputs = dict(first)
    inputs["input_ids"] = torch.cat([first["input_ids"], torch.tensor([[TOKENS["pad"]] * (length - 5) + second])])
    inputs["attention_mask"] = torch.cat([first["attention_mask"], torch.tensor([[0] * (length - 5) + [1] * 5])])
    kwargs = dict(max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=TOKENS["pad"])
    assert torch.equal(our_thinker.generate(**inputs, **kwargs), reference_thinker.generate(**inputs, **kwargs))


def test_only_last_position_logits_during_generation(our_thinker, mixed):
    seen = []
    handle = our_thinker.lm_head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    try:
        our_thinker.generate(**mixed, max_new_tokens=3, do_sample=False, eos_token_id=None, pad_token_id=TOKENS["pad"])
    finally:
        handle.remove()
    assert seen == [1, 1, 1]


def test_loss_matches_reference(reference_thinker, our_thinker, mixed):
    labels = mixed["input_ids"].clone()
    labels[:, :-5] = -100
    with torch.no_grad():
        expected = reference_thinker(**mixed, labels=labels).loss
        got = our_thinker(**mixed, labels=labels).loss
    assert torch.isfinite(got) and abs(got.item() - expected.item()) < 1e-4


def test_training_step_reduces_loss_and_gradient_checkpointing(reference_full_dir):
    model = OmniThinkerForConditionalGeneration.from_pretrained(reference_full_dir)
    model.gradient_checkpointing_enable()
    model.train()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_save_and_reload_round_trip(tmp_path, our_thinker, mixed):
    our_thinker.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "omni_hf_thinker"
    assert (tmp_path / "model.safetensors").exists()
    reloaded = OmniThinkerForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**mixed).logits, our_thinker(**mixed).logits)


def test_bf16_runs(reference_full_dir, mixed):
    model = OmniThinkerForConditionalGeneration.from_pretrained(reference_full_dir, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        logits = model(**mixed).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_clear_errors(tmp_path, our_thinker, mixed):
    bad = dict(mixed)
    bad["input_ids"] = mixed["input_ids"][:, :-40]  # drops placeholders of the video's audio
    bad["attention_mask"] = mixed["attention_mask"][:, :-40]
    with pytest.raises(ValueError, match="placeholder tokens"):
        our_thinker(**bad)
    too_long = torch.ones(1, our_thinker.config.text_config.max_position_embeddings + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="longer than the model's context"):
        our_thinker(input_ids=too_long)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(ValueError, match="model_type='llama'"):
        OmniThinkerForConditionalGeneration.from_pretrained(tmp_path)


def test_loads_official_thinker_only_checkpoint(tmp_path, tiny_config_dict):
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    from omni_hf.testing import reinit_

    reference = reinit_(
        Qwen2_5OmniThinkerForConditionalGeneration(Qwen2_5OmniThinkerConfig(**tiny_config_dict))
    ).eval()
    reference.save_pretrained(tmp_path)
    model, info = OmniThinkerForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        assert (model.eval()(input_ids=ids).logits - expected).abs().max() <= 1e-4


def test_lean_screened_greedy_decoding_matches_reference(reference_thinker, our_thinker, mixed, monkeypatch):
    """One unpadded row decodes through the lean step; with the int8 screened head forced on (the tiny head is
    normally too small to use it) and monotone processors, the tokens still equal the reference's."""
    import omni_hf.common.screened_head as screened
    from omni_hf.common.step_decoder import StepDecoder

    monkeypatch.setattr(screened, "MIN_SCREENED_WEIGHTS", 0)
    lean_steps = []
    original = StepDecoder.lean_scores

    def counting(self):
        lean_steps.append(self.screen is not None)
        return original(self)

    monkeypatch.setattr(StepDecoder, "lean_scores", counting)
    kwargs = dict(
        max_new_tokens=10,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=TOKENS["pad"],
        repetition_penalty=1.3,
        suppress_tokens=[3, 4],
    )
    expected = reference_thinker.generate(**mixed, **kwargs)
    got = our_thinker.generate(**mixed, **kwargs)
    assert torch.equal(got, expected)
    assert lean_steps == [True] * 9  # every step after the prefill, all screened


def test_compiled_decode_step_matches_reference(reference_thinker, our_thinker, mixed):
    """`cache_implementation="static"` plus a `compile_config` on CPU: the lean step runs compiled (inductor where a
    C++ compiler exists, else aot_eager) over a static cache, with the reference's greedy tokens."""
    import shutil

    from transformers import CompileConfig

    backend = "inductor" if shutil.which("g++") or shutil.which("c++") else "aot_eager"
    kwargs = dict(max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=TOKENS["pad"])
    expected = reference_thinker.generate(**mixed, **kwargs)
    got = our_thinker.generate(
        **mixed, **kwargs, cache_implementation="static", compile_config=CompileConfig(backend=backend)
    )
    assert torch.equal(got, expected)

"""The Talker against transformers' reference (same weights): prefill logits, 40 greedy codes, loss, sampling rules."""

import shutil

import pytest
import torch

from omni_hf import OmniTalkerConfig, OmniTalkerForConditionalGeneration
from omni_hf.talker.configuration_talker import translate_official_talker_config
from omni_hf.talker.modeling_talker import talker_generation_config
from omni_hf.talker.talker_inputs import build_talker_inputs
from omni_hf.testing.tiny import TINY_SPEAKER_BOS, reinit_, tiny_talker_config_dict, tiny_thinker_config_dict


@pytest.fixture(scope="module")
def pair():
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen2_5OmniConfig(
        thinker_config=tiny_thinker_config_dict(), talker_config=tiny_talker_config_dict(), enable_audio_output=False
    )
    reference = Qwen2_5OmniForConditionalGeneration(config).eval()
    reference.enable_talker()
    reinit_(reference.thinker)
    reinit_(reference.talker, std=0.1, seed=1)
    ours = OmniTalkerForConditionalGeneration(
        OmniTalkerConfig(**translate_official_talker_config(tiny_talker_config_dict()))
    )
    ours.load_state_dict(reference.talker.state_dict(), strict=True)
    return reference, ours.eval()


@pytest.fixture(scope="module")
def talker_inputs(pair):
    """A left-padded batch of two prompts through the Thinker, turned into the Talker's inputs."""
    reference, ours = pair
    ids = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10], [1000, 1000, 1000, 1001, 5, 11, 1002, 1001, 9]])
    mask = (ids != 1000).long()
    out = reference.thinker.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=12,
        do_sample=False,
        output_hidden_states=True,
        return_dict_in_generate=True,
        eos_token_id=None,
        pad_token_id=1000,
    )
    with torch.no_grad():
        return build_talker_inputs(
            reference.thinker,
            ours.config,
            ids,
            out.sequences,
            out.hidden_states,
            TINY_SPEAKER_BOS["Chelsie"],
            mask,
            [1002],
        )


def _reference_kwargs(inputs):
    # The reference mutates inputs_embeds in place: give it a copy.
    return dict(
        input_ids=inputs["input_ids"],
        inputs_embeds=inputs["inputs_embeds"].clone(),
        input_text_ids=inputs["input_text_ids"],
        attention_mask=inputs["attention_mask"],
        thinker_reply_part=inputs["thinker_reply_part"],
    )


def test_prefill_logits_match_reference(pair, talker_inputs):
    reference, ours = pair
    before = {k: v.clone() for k, v in talker_inputs.items()}
    with torch.no_grad():
        reference.talker.rope_deltas = None
        expected = reference.talker(**_reference_kwargs(talker_inputs)).logits
        got = ours(**talker_inputs).logits
    assert expected.std() > 0.3
    assert (got - expected).abs().max() <= 1e-4
    assert all(torch.equal(before[k], talker_inputs[k]) for k in before)  # inputs untouched


def test_forty_greedy_codes_match_reference(pair, talker_inputs):
    reference, ours = pair
    config = talker_generation_config(ours.config)
    kwargs = dict(
        do_sample=False,
        max_new_tokens=40,
        min_new_tokens=40,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        suppress_tokens=config.suppress_tokens,
        repetition_penalty=1.0,
    )
    expected = reference.talker.generate(**_reference_kwargs(talker_inputs), **kwargs)
    got = ours.generate(**talker_inputs, **kwargs)
    assert got.shape[1] == talker_inputs["input_ids"].shape[1] + 40
    assert torch.equal(got, expected)


def test_official_sampling_defaults_only_emit_speech_codes_or_end(pair, talker_inputs):
    _, ours = pair
    config = ours.generation_config
    assert (config.top_k, config.top_p, config.temperature, config.repetition_penalty) == (40, 0.8, 0.9, 1.05)
    assert config.eos_token_id == [8292, 8294] and 8293 in config.suppress_tokens
    torch.manual_seed(0)
    codes = ours.generate(**talker_inputs, max_new_tokens=60)[:, talker_inputs["input_ids"].shape[1] :]
    speech = codes < ours.config.num_speech_codes
    assert bool((speech | torch.isin(codes, torch.tensor([8292, 8294]))).all())


def test_teacher_forced_loss_trains(pair, talker_inputs):
    """Teacher forcing: position t sees the Thinker entry t plus code t-1 and predicts code t."""
    _, reference_weights = pair
    talker = OmniTalkerForConditionalGeneration(reference_weights.config)
    talker.load_state_dict(reference_weights.state_dict())
    talker.train()
    prompt, steps = talker_inputs["inputs_embeds"].shape[1], 9
    codes = torch.randint(0, 8192, (2, steps), generator=torch.Generator().manual_seed(0))
    track = torch.cat([talker_inputs["inputs_embeds"], talker_inputs["thinker_reply_part"][:, :steps]], dim=1)
    previous = torch.cat([talker_inputs["input_ids"], codes], dim=1)
    labels = torch.cat([torch.full((2, prompt), -100), codes], dim=1)  # shifted inside the loss
    mask = torch.cat([talker_inputs["attention_mask"], torch.ones(2, steps, dtype=torch.long)], 1)
    text_ids = torch.cat([talker_inputs["input_text_ids"], torch.zeros(2, steps, dtype=torch.long)], 1)
    position_ids, _ = talker.get_rope_index(text_ids, mask)
    optimizer = torch.optim.AdamW(talker.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss = talker(
            input_ids=previous, inputs_embeds=track, labels=labels, position_ids=position_ids, attention_mask=mask
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_config_validation():
    with pytest.raises(Exception, match="mrope_section"):  # strict-dataclass validation wraps the ValueError
        OmniTalkerConfig(
            head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 1]}
        )
    with pytest.raises(Exception, match="must be a codec id"):
        OmniTalkerConfig(vocab_size=100, num_speech_codes=50)


def test_lean_decoding_of_one_row_matches_reference(pair, talker_inputs):
    """Row 0 (unpadded) alone takes the lean step path (no per-step kwargs, masks or input preparation) and
    matches the reference's row 0 of the batch (the reference's own batch-of-one run diverges from its batched
    row from the first code, so the batched run is the oracle)."""
    row, kwargs, expected = _first_row_and_reference_codes(pair, talker_inputs)
    got = pair[1].generate(**row, **kwargs)
    assert torch.equal(got, expected)


def _first_row_and_reference_codes(pair, talker_inputs):
    """Row 0's inputs, 30-code greedy kwargs, and the reference's row 0 of the batched run (its oracle)."""
    reference, ours = pair
    config = talker_generation_config(ours.config)
    row = {k: v[:1] for k, v in talker_inputs.items()}
    kwargs = dict(
        do_sample=False,
        max_new_tokens=30,
        min_new_tokens=30,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        suppress_tokens=config.suppress_tokens,
        repetition_penalty=1.1,
    )
    reference.talker.rope_deltas = None  # the reference keeps TMRoPE state from its previous call
    return row, kwargs, reference.talker.generate(**_reference_kwargs(talker_inputs), **kwargs)[:1]


@pytest.mark.parametrize("compiled", [False, True], ids=["static-cache", "compiled-step"])
def test_static_cache_and_compiled_step_match_reference(pair, talker_inputs, compiled):
    """With `cache_implementation="static"` the lean step attends to the filled cache positions only; with a
    `compile_config` too it runs `torch.compile`d (inductor where a C++ compiler exists, else aot_eager): both give
    the reference's codes."""
    from transformers import CompileConfig

    from omni_hf.common.compiled_step import compile_warmup_seconds

    ours = pair[1]
    row, kwargs, expected = _first_row_and_reference_codes(pair, talker_inputs)
    extra = dict(cache_implementation="static")
    if compiled:
        backend = "inductor" if shutil.which("g++") or shutil.which("c++") else "aot_eager"
        extra["compile_config"] = CompileConfig(backend=backend, mode="default")
    got = ours.generate(**row, **kwargs, **extra)
    assert torch.equal(got, expected)
    again = ours.generate(**row, **kwargs, **extra)  # the compiled step is reused, its cache refilled
    assert torch.equal(again, expected)
    if compiled:
        assert "OmniTalkerForConditionalGeneration" in compile_warmup_seconds or backend == "aot_eager"

"""Parity of `OmniDiTModel` with transformers' `Qwen2_5OmniToken2WavDiTModel`, plus its own behaviour.

Random weights are re-initialised with std 0.15 (the default N(0, 0.02) init leaves velocities near zero), and the
same state dict is loaded into both models.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import transformers

from omni_hf.testing.tiny import reinit_, tiny_token2wav_config_dict
from omni_hf.token2wav import modeling_dit
from omni_hf.token2wav.modeling_dit import DiTConditioning, OmniDiTModel
from omni_hf.training.flow_matching import flow_matching_loss

BATCH, NUM_CODES, REF_FRAMES = 2, 53, 150  # 106 frames: 4 full blocks of 24 plus a partial one
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def dit_config():
    return tiny_token2wav_config_dict()["dit_config"]


@pytest.fixture(scope="module")
def oracle(dit_config):
    config = transformers.Qwen2_5OmniDiTConfig(**dit_config)
    model = transformers.Qwen2_5OmniToken2WavDiTModel._from_config(config).eval()
    return reinit_(model, std=0.15)


@pytest.fixture(scope="module")
def model(dit_config, oracle):
    ours = OmniDiTModel(**dit_config).eval()
    ours.load_state_dict(oracle.state_dict(), strict=True)
    return ours


@pytest.fixture(scope="module")
def inputs(dit_config):
    generator = torch.Generator().manual_seed(0)
    return {
        "codes": torch.randint(0, 8192, (BATCH, NUM_CODES), generator=generator),
        "reference_mel": torch.randn(BATCH, REF_FRAMES, 80, generator=generator),
        "speaker_embedding": torch.randn(BATCH, dit_config["enc_emb_dim"], generator=generator),
        "sample": torch.randn(BATCH, NUM_CODES * 2, 80, generator=generator),
    }


def oracle_velocity(oracle, inputs, timestep, guidance_scale):
    """The function the reference's `sample` integrates (its inner `ode_function`)."""
    frames = inputs["sample"].shape[1]
    kwargs = dict(
        hidden_states=inputs["sample"],
        condition_vector=inputs["reference_mel"],
        speaker_embedding=inputs["speaker_embedding"].unsqueeze(1).repeat(1, frames, 1),
        quantized_code=inputs["codes"],
        time_step=torch.tensor(timestep),
    )
    if guidance_scale < 1e-5:
        return oracle(**kwargs, apply_cfg=False)
    conditional, unconditional = oracle(**kwargs, apply_cfg=True).chunk(2)
    return conditional + (conditional - unconditional) * guidance_scale


def conditioning(model, inputs, guidance=True) -> DiTConditioning:
    return model.prepare_conditioning(
        inputs["codes"], inputs["reference_mel"], inputs["speaker_embedding"], guidance=guidance
    )


def sway_grid(num_points=10, sway=-1.0):
    t = torch.linspace(0, 1, num_points)
    return t + sway * (torch.cos(math.pi / 2 * t) - 1 + t)


def rk4_38(velocity, x, grid):
    """Plain Runge-Kutta 3/8 rule over `grid` (4 evaluations per interval)."""
    for t0, t1 in zip(grid[:-1], grid[1:]):
        h = t1 - t0
        k1 = velocity(t0, x)
        k2 = velocity(t0 + h / 3, x + h * k1 / 3)
        k3 = velocity(t0 + 2 * h / 3, x + h * (k2 - k1 / 3))
        k4 = velocity(t1, x + h * (k1 - k2 + k3))
        x = x + (k1 + 3 * (k2 + k3) + k4) * h / 8
    return x


# --------------------------------------------------------------------------------------------------------------
# Parity with the reference
# --------------------------------------------------------------------------------------------------------------


def test_state_dict_keys_match_reference(model, oracle):
    assert set(model.state_dict()) == set(oracle.state_dict())


@pytest.mark.parametrize("guidance_scale", [0.5, 0.0])
@pytest.mark.parametrize("timestep", [0.0, 0.5])
@torch.no_grad()
def test_velocity_matches_reference(model, oracle, inputs, timestep, guidance_scale):
    expected = oracle_velocity(oracle, inputs, timestep, guidance_scale)
    cond = conditioning(model, inputs, guidance=guidance_scale > 0)
    ours = model(inputs["sample"], timestep, cond, guidance_scale=guidance_scale).sample
    assert expected.abs().max() > 1.0  # meaningful numbers
    torch.testing.assert_close(ours, expected, atol=TOLERANCE, rtol=0)


@torch.no_grad()
def test_unconditional_half_matches_reference(model, oracle, inputs):
    frames = inputs["sample"].shape[1]
    _, expected = oracle(
        hidden_states=inputs["sample"],
        condition_vector=inputs["reference_mel"],
        speaker_embedding=inputs["speaker_embedding"].unsqueeze(1).repeat(1, frames, 1),
        quantized_code=inputs["codes"],
        time_step=torch.tensor(0.3),
        apply_cfg=True,
    ).chunk(2)
    # cond + (-1) * (cond - uncond) = uncond
    ours = model(inputs["sample"], 0.3, conditioning(model, inputs), guidance_scale=-1.0).sample
    torch.testing.assert_close(ours, expected, atol=TOLERANCE, rtol=0)


@torch.no_grad()
def test_convenience_forward_matches_prepared(model, inputs):
    prepared = model(inputs["sample"], 0.5, conditioning(model, inputs)).sample
    direct = model(
        inputs["sample"],
        torch.tensor(0.5),
        codes=inputs["codes"],
        reference_mel=inputs["reference_mel"],
        speaker_embedding=inputs["speaker_embedding"],
    ).sample
    torch.testing.assert_close(direct, prepared)


@torch.no_grad()
def test_full_sampling_matches_reference(model, oracle, inputs):
    codes, ref, xvec = inputs["codes"][:1, :30], inputs["reference_mel"][:1], inputs["speaker_embedding"][:1]
    torch.manual_seed(7)
    expected = oracle.sample(xvec, ref, codes)  # (batch, mel_dim, frames)
    torch.manual_seed(7)
    noise = torch.randn(1, 60, 80)  # the reference draws its initial state the same way

    cond = model.prepare_conditioning(codes, ref, xvec)
    mel = rk4_38(lambda t, x: model(x, t, cond).sample, noise, sway_grid())
    torch.testing.assert_close(mel.transpose(1, 2), expected, atol=TOLERANCE, rtol=0)


@torch.no_grad()
def test_sampling_with_scheduler_matches_reference(model, oracle, inputs):
    scheduling = pytest.importorskip("omni_hf.token2wav.scheduling_flow_match")
    codes, ref, xvec = inputs["codes"][1:, :30], inputs["reference_mel"][1:], inputs["speaker_embedding"][1:]
    torch.manual_seed(3)
    expected = oracle.sample(xvec, ref, codes)
    torch.manual_seed(3)
    sample = torch.randn(1, 60, 80)

    scheduler = scheduling.OmniFlowMatchScheduler()
    scheduler.set_timesteps(10)
    calls = []
    encoder = model.input_embed.spk_encoder
    handle = encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        cond = model.prepare_conditioning(codes, ref, xvec)
        for t in scheduler.timesteps:
            sample = scheduler.step(model(sample, t, cond).sample, t, sample).prev_sample
    finally:
        handle.remove()
    assert len(scheduler.timesteps) == 36
    assert len(calls) == 1  # the speaker encoder runs once per sampling, not per DiT evaluation
    torch.testing.assert_close(sample.transpose(1, 2), expected, atol=TOLERANCE, rtol=0)


# --------------------------------------------------------------------------------------------------------------
# Block-local attention
# --------------------------------------------------------------------------------------------------------------


def _attention_cost(model, monkeypatch, num_codes, dit_config):
    shapes = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(query, key, value, **kwargs):
        shapes.append((tuple(query.shape), tuple(key.shape)))
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(modeling_dit.F, "scaled_dot_product_attention", recording_sdpa)
    codes = torch.randint(0, 8192, (1, num_codes))
    cond = model.prepare_conditioning(codes, torch.randn(1, 40, 80), torch.randn(1, dit_config["enc_emb_dim"]))
    with torch.no_grad():
        model(torch.randn(1, num_codes * 2, 80), 0.5, cond)
    monkeypatch.undo()
    assert len(shapes) == dit_config["num_hidden_layers"]
    return shapes, sum(math.prod(q[:-1]) * k[-2] for q, k in shapes)  # query rows × keys each sees


def test_attention_cost_is_linear_in_length(model, monkeypatch, dit_config):
    block = dit_config["block_size"]
    short_shapes, short_cost = _attention_cost(model, monkeypatch, 240, dit_config)  # 480 frames = 20 blocks
    long_shapes, long_cost = _attention_cost(model, monkeypatch, 480, dit_config)
    assert long_cost == 2 * short_cost
    for query, key in short_shapes + long_shapes:
        assert query[-2] == block and key[-2] <= 3 * block  # never a frames × frames score matrix
    windows = [key[-2] // block for _, key in short_shapes]
    assert windows == [2, 1, 2, 2]  # tiny config: look back in layers 0 and 3, look ahead in layer 2


@torch.no_grad()
def test_receptive_field_is_local(model, inputs):
    # Tiny config: one look-ahead layer, so frames of block 0 only see blocks 0 and 1.
    cond = conditioning(model, inputs)
    sample = inputs["sample"].clone()
    before = model(sample, 0.5, cond).sample
    sample[:, 48:] += 1.0  # perturb blocks 2..4
    after = model(sample, 0.5, cond).sample
    torch.testing.assert_close(after[:, :24], before[:, :24], atol=0, rtol=0)
    assert (after[:, 24:48] - before[:, 24:48]).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------------------
# Training, serialisation, input checks
# --------------------------------------------------------------------------------------------------------------


def test_flow_matching_loss_decreases(dit_config, oracle, inputs):
    model = OmniDiTModel(**dit_config)
    model.load_state_dict(oracle.state_dict())
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mel = torch.randn(BATCH, NUM_CODES * 2, 80, generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(6):
        loss = flow_matching_loss(
            model,
            mel,
            inputs["codes"],
            inputs["reference_mel"],
            inputs["speaker_embedding"],
            generator=torch.Generator().manual_seed(0),  # same t / noise / dropout each step
        )
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_gradient_checkpointing_gives_same_gradients(dit_config, oracle, inputs):
    def grads(checkpointing):
        model = OmniDiTModel(**{**dit_config, "dropout": 0.0})
        model.load_state_dict(oracle.state_dict())
        if checkpointing:
            model.enable_gradient_checkpointing()
        mel = torch.randn(1, 40, 80, generator=torch.Generator().manual_seed(2))
        loss = flow_matching_loss(
            model,
            mel,
            inputs["codes"][:1, :20],
            inputs["reference_mel"][:1],
            inputs["speaker_embedding"][:1],
            generator=torch.Generator().manual_seed(0),
        )
        loss.backward()
        return model.proj_out.weight.grad, model.transformer_blocks[0].attn.to_q.weight.grad

    for with_ckpt, without in zip(grads(True), grads(False)):
        torch.testing.assert_close(with_ckpt, without)


@torch.no_grad()
def test_save_and_load_round_trip(model, inputs, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = OmniDiTModel.from_pretrained(tmp_path).eval()
    assert loaded.config.block_size == 24 and list(loaded.config.look_ahead_layers) == [2]
    cond = conditioning(model, inputs)
    torch.testing.assert_close(
        loaded(inputs["sample"], 0.5, conditioning(loaded, inputs)).sample, model(inputs["sample"], 0.5, cond).sample
    )


def test_official_config_dict_is_accepted(dit_config):
    official = {**dit_config, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
    model = OmniDiTModel.from_config(official)
    assert model.rope_theta == 10000.0


@pytest.mark.parametrize(
    "codes",
    [torch.tensor([[1, 8193]]), torch.tensor([[-1, 5]]), torch.zeros(1, 0, dtype=torch.long), torch.tensor([0.5])],
    ids=["too-large", "negative", "empty", "not-ids"],
)
def test_invalid_codes_raise(model, codes, dit_config):
    with pytest.raises(ValueError, match="codes"):
        model.prepare_conditioning(codes, torch.randn(1, 40, 80), torch.randn(1, dit_config["enc_emb_dim"]))


def test_wrong_sample_shape_raises(model, inputs):
    cond = conditioning(model, inputs)
    with pytest.raises(ValueError, match="sample must have shape"):
        model(inputs["sample"][:, :-1], 0.5, cond)


def test_lora_adapter_round_trip(dit_config, oracle, inputs, tmp_path):
    peft = pytest.importorskip("peft")
    model = OmniDiTModel(**dit_config).eval()
    model.load_state_dict(oracle.state_dict())
    with torch.no_grad():
        base = model(inputs["sample"], 0.5, conditioning(model, inputs)).sample
    model.add_adapter(peft.LoraConfig(r=4, target_modules=["to_q", "to_v"], init_lora_weights=False), "voice")
    with torch.no_grad():
        adapted = model(inputs["sample"], 0.5, conditioning(model, inputs)).sample
    assert (adapted - base).abs().max() > 1e-3
    model.save_lora_adapter(tmp_path, adapter_name="voice")

    fresh = OmniDiTModel(**dit_config).eval()
    fresh.load_state_dict(oracle.state_dict())
    fresh.load_lora_adapter(tmp_path, adapter_name="voice", prefix=None, use_safetensors=True)
    with torch.no_grad():
        reloaded = fresh(inputs["sample"], 0.5, conditioning(fresh, inputs)).sample
    torch.testing.assert_close(reloaded, adapted)

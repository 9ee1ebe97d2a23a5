"""`OmniFlowMatchScheduler` against transformers' token2wav ODE solver, diffusers' flow-matching Euler and
hand-written solvers, on a deterministic toy velocity field (no model weights needed)."""

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
    Qwen2_5OmniToken2WavDiTModel,
    RungeKutta4ODESolver,
)

from omni_hf.token2wav.scheduling_flow_match import OmniFlowMatchScheduler

BATCH, FRAMES, MEL_DIM = 2, 6, 5


class ToyVelocity:
    """A batched, time-dependent velocity field v(t, x) = tanh(x @ A) * t + sin(3 t) * b - 0.5 x; records calls."""

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.matrix = torch.randn(MEL_DIM, MEL_DIM, generator=generator) / math.sqrt(MEL_DIM)
        self.bias = torch.randn(BATCH, 1, MEL_DIM, generator=generator)
        self.times = []
        self.samples = []

    def __call__(self, t, x):
        self.times.append(torch.as_tensor(t).clone())
        self.samples.append(x.clone())
        matrix, bias = self.matrix.to(x.dtype), self.bias.to(x.dtype)
        return torch.tanh(x @ matrix) * t + torch.sin(3 * t) * bias - 0.5 * x


@pytest.fixture
def noise():
    return torch.randn(BATCH, FRAMES, MEL_DIM, generator=torch.Generator().manual_seed(1))


def reference_sway_grid(num_steps=10, sway_coefficient=-1.0):
    """The time grid exactly as `Qwen2_5OmniToken2WavDiTModel.sample` builds it (float32 conditioning)."""
    time_embedding = torch.linspace(0, 1, num_steps, dtype=torch.float32)
    if sway_coefficient is not None:
        time_embedding += sway_coefficient * (torch.cos(torch.pi / 2 * time_embedding) - 1 + time_embedding)
    return time_embedding


def run_scheduler(scheduler, velocity, sample, num_inference_steps=10):
    scheduler.set_timesteps(num_inference_steps)
    for t in scheduler.timesteps:
        sample = scheduler.step(velocity(t, sample), t, sample).prev_sample
    return sample


def test_sway_grid_matches_reference():
    scheduler = OmniFlowMatchScheduler()
    scheduler.set_timesteps(10)
    assert torch.equal(scheduler.time_grid, reference_sway_grid())
    closed_form = torch.tensor([1 - math.cos(math.pi / 2 * k / 9) for k in range(10)])
    torch.testing.assert_close(scheduler.time_grid, closed_form, atol=1e-6, rtol=0)
    for sway in (None, 0.0, -0.5, 0.3):
        scheduler = OmniFlowMatchScheduler(sway_coefficient=sway)
        scheduler.set_timesteps(7)
        assert torch.equal(scheduler.time_grid, reference_sway_grid(7, sway))


@pytest.mark.parametrize(("solver", "evaluations"), [("rk4", 36), ("midpoint", 18), ("euler", 9)])
def test_number_of_model_evaluations(solver, evaluations, noise):
    scheduler = OmniFlowMatchScheduler(solver=solver)
    velocity = ToyVelocity()
    run_scheduler(scheduler, velocity, noise)
    assert scheduler.order == evaluations // 9
    assert len(scheduler.timesteps) == len(velocity.times) == evaluations


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rk4_matches_reference_solver(noise, dtype):
    """Same float32 time grid; the sample (and so the arithmetic) in `dtype`, as in the reference."""
    noise = noise.to(dtype)
    reference_velocity, our_velocity = ToyVelocity(), ToyVelocity()
    solver = RungeKutta4ODESolver(function=reference_velocity, initial_value=noise)
    expected = solver.integrate(reference_sway_grid())[-1]

    actual = run_scheduler(OmniFlowMatchScheduler(), our_velocity, noise)

    assert actual.dtype == dtype
    assert (actual - expected).abs().max().item() <= 1e-6
    # the model sees the same times and the same inputs, in the same order
    assert len(our_velocity.times) == len(reference_velocity.times) == 36
    for ours, theirs in zip(our_velocity.times, reference_velocity.times):
        assert torch.equal(ours, theirs)
    for ours, theirs in zip(our_velocity.samples, reference_velocity.samples):
        assert (ours - theirs).abs().max().item() <= 1e-6


class StubDiT:
    """Stands in for `Qwen2_5OmniToken2WavDiTModel` so its real `sample` method drives the toy velocity."""

    repeats, mel_dim = 2, MEL_DIM

    def __init__(self, velocity):
        self.velocity = velocity
        self.config = type("Config", (), {"max_position_embeddings": 1024})()

    def __call__(self, hidden_states, time_step, apply_cfg, **kwargs):
        assert not apply_cfg
        return self.velocity(time_step, hidden_states)


def test_rk4_matches_reference_dit_sample():
    """Drive the reference DiT's own `sample` (grid, solver, initial noise) and our loop with the same field."""
    reference_velocity, our_velocity = ToyVelocity(), ToyVelocity()
    code = torch.zeros(BATCH, FRAMES // StubDiT.repeats, dtype=torch.long)
    reference_mel = torch.zeros(BATCH, 4, MEL_DIM)
    torch.manual_seed(123)
    expected = Qwen2_5OmniToken2WavDiTModel.sample(
        StubDiT(reference_velocity), torch.zeros(BATCH, 3), reference_mel, code, guidance_scale=0.0
    )
    torch.manual_seed(123)
    initial = torch.randn(BATCH, FRAMES, MEL_DIM)

    actual = run_scheduler(OmniFlowMatchScheduler(), our_velocity, initial).permute(0, 2, 1)

    assert len(reference_velocity.times) == 36
    assert (actual - expected).abs().max().item() <= 1e-6


def test_euler_matches_diffusers_flow_match_euler(noise):
    velocity = ToyVelocity()
    actual = run_scheduler(OmniFlowMatchScheduler(solver="euler"), velocity, noise)

    grid = reference_sway_grid()
    diffusers_scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    diffusers_scheduler.set_timesteps(sigmas=(1 - grid[:-1]).tolist())
    sample = noise
    for t, time in zip(diffusers_scheduler.timesteps, grid[:-1]):
        sample = diffusers_scheduler.step(-velocity(time, sample), t, sample).prev_sample

    by_hand = noise
    for start, end in zip(grid[:-1], grid[1:]):
        by_hand = by_hand + (end - start) * velocity(start, by_hand)

    assert (actual - sample).abs().max().item() <= 1e-6
    assert (actual - by_hand).abs().max().item() <= 1e-6


def test_midpoint_matches_hand_written(noise):
    velocity = ToyVelocity()
    actual = run_scheduler(OmniFlowMatchScheduler(solver="midpoint"), velocity, noise)

    grid = reference_sway_grid()
    expected = noise
    for start, end in zip(grid[:-1], grid[1:]):
        h = end - start
        half = expected + h / 2 * velocity(start, expected)
        expected = expected + h * velocity(start + h / 2, half)

    assert (actual - expected).abs().max().item() <= 1e-6


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_linear_path_is_solved_exactly(solver):
    """On the straight noise-to-data path the velocity is constant: every solver lands on the data."""
    noise, data = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    scheduler = OmniFlowMatchScheduler(solver=solver)
    scheduler.set_timesteps(5)
    sample = noise
    for t in scheduler.timesteps:
        sample = scheduler.step(scheduler.get_velocity(data, noise, t), t, sample).prev_sample
    torch.testing.assert_close(sample, data, atol=1e-5, rtol=0)


def test_set_timesteps_resets_state(noise):
    velocity = ToyVelocity()
    scheduler = OmniFlowMatchScheduler()
    expected = run_scheduler(scheduler, velocity, noise)

    scheduler.set_timesteps(10)
    sample = noise
    for t in scheduler.timesteps[:6]:  # stop in the middle of an interval
        sample = scheduler.step(velocity(t, sample), t, sample).prev_sample
    assert scheduler.step_index == 6

    torch.testing.assert_close(run_scheduler(scheduler, velocity, noise), expected, atol=0, rtol=0)


def test_stage_times_and_output_forms():
    scheduler = OmniFlowMatchScheduler()
    scheduler.set_timesteps(4)
    grid = scheduler.time_grid
    h = grid[1] - grid[0]
    torch.testing.assert_close(scheduler.timesteps[:4], torch.stack([grid[0], h / 3, 2 * h / 3, grid[1]]))
    x = torch.ones(1, 2)
    assert scheduler.scale_model_input(x, scheduler.timesteps[0]) is x
    (out,) = scheduler.step(torch.ones(1, 2), scheduler.timesteps[0], x, return_dict=False)
    torch.testing.assert_close(out, x + h / 3)


def test_save_and_load_round_trip(tmp_path):
    scheduler = OmniFlowMatchScheduler(solver="midpoint", sway_coefficient=-0.5)
    scheduler.save_pretrained(tmp_path)
    loaded = OmniFlowMatchScheduler.from_pretrained(tmp_path)
    assert loaded.config.solver == "midpoint" and loaded.config.sway_coefficient == -0.5
    # every setting round-trips; Diffusers' own bookkeeping of defaulted arguments (`_use_default_values`, not saved)
    # is left out: the scheduler gained defaulted settings (a student's steps and guidance)
    settings = {k: v for k, v in dict(scheduler.config).items() if k != "_use_default_values"}
    assert dict(loaded.config) == settings
    assert loaded.order == 2
    scheduler.set_timesteps(10)
    loaded.set_timesteps(10)
    assert torch.equal(loaded.timesteps, scheduler.timesteps)
    assert OmniFlowMatchScheduler.from_config(scheduler.config, solver="rk4").order == 4


def test_add_noise_and_velocity():
    data, noise = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    scheduler = OmniFlowMatchScheduler()
    torch.testing.assert_close(scheduler.add_noise(data, noise, 0.0), noise)
    torch.testing.assert_close(scheduler.add_noise(data, noise, torch.tensor(1.0)), data)
    t = torch.tensor([0.0, 0.25, 1.0])
    x_t = scheduler.add_noise(data, noise, t)
    torch.testing.assert_close(x_t[1], 0.75 * noise[1] + 0.25 * data[1])
    # the training target is the time derivative of the path
    derivative = (scheduler.add_noise(data, noise, t + 1e-3) - x_t) / 1e-3
    torch.testing.assert_close(derivative, scheduler.get_velocity(data, noise, t), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="one time per sample"):
        scheduler.add_noise(data, noise, torch.tensor([0.1, 0.2]))


def test_errors():
    with pytest.raises(ValueError, match="Unknown solver 'heun'"):
        OmniFlowMatchScheduler(solver="heun")
    scheduler = OmniFlowMatchScheduler()
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(torch.zeros(1), 0.0, torch.zeros(1))
    for bad in (1, 0, None):
        with pytest.raises(ValueError, match="num_inference_steps"):
            scheduler.set_timesteps(bad)
    with pytest.raises(ValueError, match="strictly increasing"):
        scheduler.set_timesteps(time_grid=[0.0, 0.5, 0.5, 1.0])
    scheduler = OmniFlowMatchScheduler(solver="euler")
    scheduler.set_timesteps(time_grid=[0.0, 1.0])
    x = scheduler.step(torch.ones(1), scheduler.timesteps[0], torch.zeros(1)).prev_sample
    torch.testing.assert_close(x, torch.ones(1))
    with pytest.raises(ValueError, match="consumed"):
        scheduler.step(torch.ones(1), 1.0, x)

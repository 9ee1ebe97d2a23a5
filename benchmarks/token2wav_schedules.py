"""Fast token2wav schedules without training: the paper's solver (10-point sway grid, RK4, 36 DiT evaluations)
against fewer grid points, other solvers and other grids, on the same codes, speaker and noise.

For each schedule: DiT evaluations per solve, the mel error against the paper's output (mean absolute error over the
teacher mel's mean absolute deviation, as `omni_hf.training.token2wav_distill.mel_error` measures it), the speaker
similarity of its vocoded waveforms to the paper's (Resemblyzer, the evaluation harness's offline speaker encoder;
mean cosine) and the time of a solve; beside them the teacher's own run-to-run spread (the same codes with other
noise), which no schedule needs to beat. The named presets of `OmniFlowMatchScheduler.SCHEDULES` are marked; the default stays the paper's.

    python benchmarks/token2wav_schedules.py                    # small config, 4 utterances of 5 s
    python benchmarks/token2wav_schedules.py --utterances 2 --codes 100
"""

import argparse
import time

import torch

SCHEDULES = [
    ("rk4", 10, -1.0),  # the paper's
    *[("rk4", p, s) for p in (2, 3, 4, 5, 6) for s in (-1.0, None)],
    *[("midpoint", p, s) for p in (3, 4, 5, 7, 9) for s in (-1.0, None)],
    *[("euler", p, s) for p in (3, 5, 9, 17) for s in (-1.0, None)],
]


def build(size: str):
    from transformers import Qwen2_5OmniToken2WavConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniToken2WavModel

    from omni_hf.testing.tiny import reinit_, tiny_token2wav_config_dict
    from omni_hf.token2wav import OmniToken2WavPipeline

    torch.manual_seed(0)
    reference = Qwen2_5OmniToken2WavModel(Qwen2_5OmniToken2WavConfig(**tiny_token2wav_config_dict(size)))
    reinit_(reference, std=0.05)
    state = {f"token2wav.{k}": v for k, v in reference.state_dict().items()}
    pipe = OmniToken2WavPipeline.from_official(tiny_token2wav_config_dict(size), state)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> None:
    from omni_hf.token2wav.scheduling_flow_match import SCHEDULES as PRESETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="small", choices=["tiny", "small"])
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--codes", type=int, default=250, help="codes per utterance (50 per second)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    pipe = build(args.size)
    dit = pipe.dit.config
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, dit.num_embeds, (args.utterances, args.codes), generator=g)
    reference_mel = torch.randn(1, 300, dit.mel_dim, generator=g) - 5
    speaker = torch.randn(1, dit.enc_emb_dim, generator=g)
    frames = args.codes * dit.repeats
    noise = torch.randn(args.utterances, frames, dit.mel_dim, generator=g)
    other = torch.randn(args.utterances, frames, dit.mel_dim, generator=g)

    def solve(solver, points, sway, latents):
        begin = time.perf_counter()
        out = pipe(codes, reference_mel, speaker, num_inference_steps=points, solver=solver,
                   sway_coefficient=sway, latents=latents, output_type="latent").audios  # fmt: skip
        return out, time.perf_counter() - begin

    paper, _ = solve("rk4", 10, -1.0, noise)
    scale = (paper - paper.mean(dim=(1, 2), keepdim=True)).abs().mean()
    from omni_hf.evaluation.speaker import ResemblyzerEncoder, cosine

    encoder = ResemblyzerEncoder()

    def embeddings(mel):
        with torch.no_grad():
            waves = pipe.vocoder(mel.transpose(1, 2)).reshape(mel.shape[0], -1)
        return [encoder(w.numpy(), 24000) for w in waves]

    reference_voice = embeddings(paper)

    def error(mel):
        return float((mel - paper).abs().mean() / scale)

    def similarity(mel):
        return sum(cosine(a, b) for a, b in zip(embeddings(mel), reference_voice)) / len(reference_voice)

    spread, _ = solve("rk4", 10, -1.0, other)
    print(f"token2wav schedules, {args.size} config, {args.utterances} x {args.codes} codes; error vs the paper's mel")
    print(
        f"teacher run-to-run spread (other noise): mel error {error(spread):.4f}, similarity {similarity(spread):.3f}"
    )
    presets = {(p["solver"], p["num_inference_steps"], p["sway_coefficient"]): name for name, p in PRESETS.items()}
    order = {"euler": 1, "midpoint": 2, "rk4": 4}
    rows = []
    for solver, points, sway in SCHEDULES:
        mel, seconds = solve(solver, points, sway, noise)
        rows.append((order[solver] * (points - 1), solver, points, sway, error(mel), seconds, similarity(mel)))
    print(
        f"{'evals':>5} {'solver':>8} {'points':>6} {'sway':>5} {'mel error':>10} {'similarity':>10} {'s/solve':>8}  preset"
    )
    for evals, solver, points, sway, err, seconds, sim in sorted(rows, key=lambda r: (r[0], r[4])):
        name = presets.get((solver, points, sway), "")
        print(f"{evals:>5} {solver:>8} {points:>6} {str(sway):>5} {err:>10.4f} {sim:>10.3f} {seconds:>8.2f}  {name}")
    for budget in (4, 8, 16):
        best = min((r for r in rows if r[0] <= budget), key=lambda r: r[4])
        print(f"best within {budget:>2} evaluations: {best[1]} {best[2]} points sway {best[3]}: error {best[4]:.4f}")


if __name__ == "__main__":
    main()

"""Proof of the token2wav distillation recipe on the small config: the learning curve, and 1-, 2- and 4-step students
against the teacher cut to the same number of DiT evaluations and against the teacher's own run-to-run spread, on
held-out codes (mel error relative to the mel's spread; speaker similarity with Resemblyzer).

Same random small weights as `speech.py`. Codes are random (a random Talker's own samples would be as random) with
the checkpoint's two speakers; the student is trained by `recipes/token2wav_distill.py` itself.

    python benchmarks/token2wav_distill_proof.py                       # about 20 minutes on 2 cores
    python benchmarks/token2wav_distill_proof.py --segments 12 --max-steps 100
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from speech import build_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # helpers.recipes: load a recipe as a module


def main() -> None:
    from helpers.recipes import load_recipe
    from omni_hf import OmniForConditionalGeneration

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=24, help="segments of --segment-codes codes (4 held out)")
    parser.add_argument("--segment-codes", type=int, default=48)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_checkpoint(tmp / "official")
        OmniForConditionalGeneration.from_pretrained(tmp / "official").save_pretrained(tmp / "model")
        g = torch.Generator().manual_seed(0)
        lines = [
            json.dumps({"codes": torch.randint(0, 8192, (args.segment_codes,), generator=g).tolist(), "speaker": s})
            for s in ("Chelsie", "Ethan") * (args.segments // 2)
        ]
        (tmp / "codes.jsonl").write_text("\n".join(lines) + "\n")
        metrics = load_recipe("token2wav_distill").main(
            ["--model", str(tmp / "model"), "--codes", str(tmp / "codes.jsonl"),
             "--segment_codes", str(args.segment_codes), "--held_out", "4", "--steps", "1,2,4",
             "--save_steps_default", "2", "--max_steps", str(args.max_steps), "--learning_rate", str(args.learning_rate),
             "--per_device_train_batch_size", "4", "--logging_steps", str(max(1, args.max_steps // 10)),
             "--output_dir", str(tmp / "run"), "--disable_tqdm", "true", "--save_strategy", "no"]
        )  # fmt: skip
    proof = metrics["held_out_mel_error"]
    similarity = proof["speaker_similarity"]
    print(f"\ntoken2wav distillation proof: small config, {metrics['train_segments']} training segments of "
          f"{args.segment_codes} codes, {metrics['held_out_segments']} held out, {args.max_steps} steps")  # fmt: skip
    print(
        "learning curve (step: loss): " + ", ".join(f"{e['step']}: {e['loss']:.4f}" for e in metrics["learning_curve"])
    )
    print(f"distillation loss {metrics['loss_before']:.4f} -> {metrics['loss_after']:.4f}")
    print(f"teacher run-to-run (other noise): mel error {proof['teacher_run_to_run']:.4f}, "
          f"similarity {similarity.get('teacher_run_to_run', float('nan')):.3f} ({similarity['encoder']})")  # fmt: skip
    print(f"{'DiT evals':>9} {'student err':>12} {'cut teacher err':>16} {'student sim':>12} {'cut teacher sim':>16}")
    for n in (1, 2, 4):
        print(f"{n:>9} {proof['student'][n]:>12.4f} {proof['cut_teacher'][n]:>16.4f} "
              f"{similarity['student'].get(n, float('nan')):>12.3f} {similarity['cut_teacher'].get(n, float('nan')):>16.3f}")  # fmt: skip
        beats = proof["student"][n] < proof["cut_teacher"][n]
        print(f"TARGET {n}-step student mel error below the cut teacher's -> {'met' if beats else 'NOT met'}")


if __name__ == "__main__":
    main()

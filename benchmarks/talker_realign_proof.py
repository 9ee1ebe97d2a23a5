"""Learning proof of Talker re-alignment on the tiny random model (CPU, a few minutes).

1. Build the tiny demo model (Thinker + Talker + token2wav + speakers).
2. Thinker SFT with `recipes/sft.py` on a small chat set (assistant-only loss): the Thinker's hidden states move.
3. `recipes/talker_realign.py --thinker <sft output>`: the original model's greedy speech of each reply is the
   teacher; the share of Talker codes matching it (teacher-forced argmax, and greedy generation) is measured for the
   original pair, after the SFT, and after re-alignment (LoRA, and full fine-tuning).

    python benchmarks/talker_realign_proof.py --out runs/realign_proof   # prints and writes results.json
"""

import argparse
import json
import time
from pathlib import Path

REPLIES = [
    "Sure, here is a short answer.",
    "The weather today is sunny and warm.",
    "I think the second option is better.",
    "Paris is the capital of France.",
    "Two plus two makes four.",
    "Let me read that for you, slowly.",
    "Good morning, how can I help?",
    "That book was written long ago.",
]


def sft_data(path: Path, count: int) -> Path:
    rows = []
    for i in range(count):
        question = f"Question number {i}: tell me something."
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": REPLIES[i % 8]}]
        rows.append({"messages": messages})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/realign_proof")
    p.add_argument("--sft_steps", type=int, default=30)
    p.add_argument("--realign_steps", type=int, default=150)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--codes", type=int, default=24, help="longest teacher speech (codes)")
    args = p.parse_args(argv)
    from omni_hf.testing.demo import build_demo_model
    from recipe_loader import load_recipe

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = out / "tiny-omni"
    if not (model / "config.json").is_file():
        build_demo_model(model)
    started = time.perf_counter()
    sft = load_recipe("sft").main(
        ["--model", str(model), "--data", str(sft_data(out / "sft.jsonl", 32)), "--output_dir", str(out / "sft")]
        + ["--overwrite", "--max_steps", str(args.sft_steps), "--learning_rate", "0.002", "--batch_size", "4"]
        + ["--logging_steps", "10", "--save_steps", "1000", "--warmup_ratio", "0.0"]
    )
    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(REPLIES[: args.prompts]) + "\n")
    common = ["--model", str(model), "--thinker", str(out / "sft"), "--prompts", str(prompts), "--overwrite"]
    common += ["--talker_max_new_tokens", str(args.codes), "--batch_size", "4", "--logging_steps", "50"]
    realign = load_recipe("talker_realign")
    lora = realign.main(
        [*common, "--use_peft", "--lora_r", "8", "--lora_alpha", "16", "--learning_rate", "0.003"]
        + ["--max_steps", str(args.realign_steps), "--output_dir", str(out / "realign_lora")]
    )
    full = realign.main(
        [*common, "--learning_rate", "0.0005", "--max_steps", str(args.realign_steps)]
        + ["--output_dir", str(out / "realign_full")]
    )
    keys = ("agreement_original", "agreement_after_sft", "agreement_realigned", "free_running_after_sft")
    keys += ("free_running_realigned", "steps", "trainable_parameters")
    results = {
        "sft": {"steps": sft["steps"], "first_loss": sft.get("first_loss"), "last_loss": sft.get("last_loss")},
        "lora": {k: lora[k] for k in keys},
        "full": {k: full[k] for k in keys},
        "prompts": lora["prompts"],
        "teacher_codes": lora["codes"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

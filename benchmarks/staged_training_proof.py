"""Learning proof for the staged recipes: stage 1 (encoders, LLM frozen) then SFT on a tiny random Thinker, on CPU.

Task (synthetic, offline): spoken digits "zero".."nine" made by espeak-ng (10 classes, chance 10 %) and images of one
coloured shape (red/green/blue × circle/square/triangle, 9 classes, chance 11 %). Train and test differ in speaking
rate / voice and in random shape positions and sizes. Accuracy is greedy exact match of the answer, measured
teacher-forced (greedy decoding yields the answer iff every answer position's argmax is the answer token).

Both stages run through the real entry point (`omni_hf.training.run.run_stage`, as `recipes/*.py` do).

    python benchmarks/staged_training_proof.py --out /tmp/staged_proof            # ~5-10 min on 2 CPU cores
    python benchmarks/staged_training_proof.py --out demo_assets/staged_data --data_only   # data for *_tiny.yaml
"""

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 60, 210)}
SHAPES = ["circle", "square", "triangle"]
SYSTEM = {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]}


def shape_image(colour: str, shape: str, rng: random.Random, size: int = 56) -> Image.Image:
    image = Image.new("RGB", (size, size), tuple(rng.randint(225, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    side = rng.randint(size // 3, size * 2 // 3)
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    fill = tuple(int(np.clip(c + rng.randint(-25, 25), 0, 255)) for c in COLOURS[colour])
    if shape == "circle":
        draw.ellipse([x, y, x + side, y + side], fill=fill)
    elif shape == "square":
        draw.rectangle([x, y, x + side, y + side], fill=fill)
    else:
        draw.polygon([(x, y + side), (x + side // 2, y), (x + side, y + side)], fill=fill)
    return image


def write_data(out: Path, seed: int = 0, audio_per_digit: int = 12, images: int = 180) -> dict[str, Path]:
    """Write wavs, pngs and the stage-1 (pairs) / SFT (ChatML) / test JSON-lines files; returns their paths."""
    from omni_hf.testing.media import espeak_speech

    rng = random.Random(seed)
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    pairs, dialogues, tests = [], [], []
    train_speeds, test_speeds = [120, 140, 160, 180, 200, 220], [150, 190]
    for digit in DIGITS:
        for k in range(audio_per_digit + 4):
            test = k >= audio_per_digit
            speed = rng.choice(test_speeds if test else train_speeds)
            voice = rng.choice(["en", "en-us"])
            wave, rate = espeak_speech(digit, voice=voice, speed=speed)
            path = media / f"{digit}_{k}.wav"
            sf.write(path, wave, rate)
            _add(pairs, dialogues, tests, test, "audio", path.name, "Which number is spoken?", digit)
    for k in range(images + 45):
        test = k >= images
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        path = media / f"shape_{k}.png"
        shape_image(colour, shape, rng).save(path)
        _add(pairs, dialogues, tests, test, "image", path.name, "What is in the picture?", f"{colour} {shape}")
    # talker_icl rows: a stand-in "voice" whose speech codes depend on the word (for recipes/configs/talker_icl_tiny)
    talker = [
        {"text": f"the number {d}", "codes": [(7 * i + 3 * j) % 64 for j in range(20)]} for i, d in enumerate(DIGITS)
    ]
    files = {}
    for name, rows in (("stage1", pairs), ("sft", dialogues), ("test", tests), ("talker_icl", talker)):
        rng.shuffle(rows)
        files[name] = media.parent / f"{name}.jsonl"
        files[name].write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return files


def _add(pairs, dialogues, tests, test: bool, kind: str, path: str, question: str, answer: str) -> None:
    user = {"role": "user", "content": [{"type": kind, kind: f"media/{path}"}, {"type": "text", "text": question}]}
    if test:
        tests.append({"kind": kind, "messages": [SYSTEM, user], "answer": answer})
        return
    pairs.append({kind: f"media/{path}", "text": answer})
    dialogues.append(
        {"messages": [SYSTEM, user, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}
    )


@torch.no_grad()
def accuracy(model_dir: Path, test_file: Path) -> dict[str, float]:
    """Greedy exact-match accuracy of the answer per modality (teacher-forced argmax at every answer position)."""
    from omni_hf import OmniThinkerForConditionalGeneration
    from omni_hf.processing import OmniProcessor
    from omni_hf.training.collator import OmniThinkerCollator, encode_conversation

    processor = OmniProcessor.from_pretrained(model_dir)
    model = OmniThinkerForConditionalGeneration.from_pretrained(model_dir).eval()
    collator = OmniThinkerCollator(processor.tokenizer.pad_token_id)
    hits: dict[str, list[bool]] = {}
    base = test_file.parent
    for line in test_file.read_text().splitlines():
        row = json.loads(line)
        messages = json.loads(json.dumps(row["messages"]).replace('"media/', f'"{base}/media/'))
        messages.append({"role": "assistant", "content": [{"type": "text", "text": row["answer"]}]})
        example = encode_conversation(processor, messages)
        example["labels"][example["input_ids"] == processor.tokenizer.eos_token_id] = -100  # score the answer only
        batch = collator([example])
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0, :-1]
        target = batch["labels"][0, 1:]
        keep = target != -100
        hits.setdefault(row["kind"], []).append(bool((logits[keep].argmax(-1) == target[keep]).all()))
    return {kind: float(np.mean(v)) for kind, v in hits.items()} | {"n": {k: len(v) for k, v in hits.items()}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="staged_proof")
    parser.add_argument("--data_only", action="store_true", help="only write the data (for recipes/configs/*_tiny)")
    parser.add_argument("--stage1_steps", type=int, default=150)
    parser.add_argument("--sft_steps", type=int, default=150)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    out = Path(args.out)
    start = time.perf_counter()
    files = write_data(out)
    print(f"data written in {time.perf_counter() - start:.1f}s: {', '.join(str(f) for f in files.values())}")
    if args.data_only:
        return {"files": {k: str(v) for k, v in files.items()}}
    from omni_hf.testing.demo import build_demo_model
    from omni_hf.training.run import run_stage

    base = build_demo_model(out / "tiny-thinker", speech=False)
    common = ["--batch_size", str(args.batch_size), "--logging_steps", "25", "--save_steps", "100000", "--overwrite"]
    results = {"chance": {"audio": 1 / len(DIGITS), "image": 1 / (len(COLOURS) * len(SHAPES))}}
    results["before"] = accuracy(base, files["test"])
    timings = {}
    t0 = time.perf_counter()
    s1 = run_stage(
        "stage1_encoders",
        ["--model", str(base), "--data", str(files["stage1"]), "--output_dir", str(out / "stage1")]
        + ["--max_steps", str(args.stage1_steps), "--learning_rate", "2e-3", "--warmup_ratio", "0.05", *common],
    )
    timings["stage1_s"] = time.perf_counter() - t0
    results["after_stage1"] = accuracy(out / "stage1", files["test"])
    t0 = time.perf_counter()
    sft = run_stage(
        "sft",
        ["--model", str(out / "stage1"), "--data", str(files["sft"]), "--output_dir", str(out / "sft")]
        + ["--max_steps", str(args.sft_steps), "--learning_rate", "1e-3", "--warmup_ratio", "0.05", *common],
    )
    timings["sft_s"] = time.perf_counter() - t0
    results["after_stage1_sft"] = accuracy(out / "sft", files["test"])
    results["losses"] = {
        "stage1": [s1["first_loss"], s1["last_loss"]],
        "sft": [sft["first_loss"], sft["last_loss"]],
    }
    results["steps"] = {"stage1": s1["steps"], "sft": sft["steps"], "batch_size": args.batch_size}
    results["data"] = {"stage1": s1["data"], "sft": sft["data"]}
    results["wall_s"] = {**timings, "total": time.perf_counter() - start}
    print(json.dumps(results, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

"""Client side of test_pair_sources.test_hub_pairs_end_to_end, run in a process pointed at the stand-in Hub:
push built pairs, train the DPO recipe from the Hub id (and push the adapter); push judged recordings (audio only)
and train from that id through the speech tokenizer. Writes what it found to a JSON report."""

import json
import sys
from pathlib import Path

from datasets import Dataset, load_dataset, load_from_disk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers (run as a script)
from helpers.recipes import load_recipe  # noqa: E402
from omni_hf.hub import push_preference_dataset  # noqa: E402
from omni_hf.training.pair_audio import cast_audio_columns, file_entry  # noqa: E402
from omni_hf.training.pair_sources import read_manifest  # noqa: E402

TRAIN = ["--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--max_steps", "2", "--batch_size", "2"]
TRAIN += ["--learning_rate", "0.002", "--logging_steps", "1", "--save_steps", "100"]


def main(model_dir: str, built: str, judged: str, work: str, report: str) -> None:
    recipe, work, judged = load_recipe("talker_dpo"), Path(work), Path(judged)
    result = {}
    push_preference_dataset(built, "tester/built-pairs")
    local = load_from_disk(str(Path(built) / "dataset"))
    back = cast_audio_columns(load_dataset("tester/built-pairs", split="train"))
    metrics = recipe.main(
        ["--model", model_dir, "--pairs", "tester/built-pairs", "--output_dir", str(work / "a"), *TRAIN]
        + ["--push_to_hub", "--repo_id", "tester/dpo-adapter", "--base_model", "Qwen/Qwen2.5-Omni-7B"]
    )
    result["built"] = {
        "rows": back.num_rows,
        "codes_equal": back["chosen_codes"] == local["chosen_codes"]
        and back["rejected_codes"] == local["rejected_codes"],
        "audio_equal": [a["bytes"] for a in back["chosen_audio"]] == [a["bytes"] for a in local["chosen_audio"]],
        "metrics": {k: metrics[k] for k in ("pairs", "steps")},
    }
    rows = []
    for row in read_manifest(judged / "pairs.jsonl"):
        for key in ("chosen_audio", "rejected_audio"):
            row[key] = file_entry(judged / row[key])
        rows.append(row)
    keys = sorted({key for row in rows for key in row})  # Dataset.from_list takes the first row's keys
    rows = [{key: row.get(key) for key in keys} for row in rows]
    push_preference_dataset(cast_audio_columns(Dataset.from_list(rows)), "tester/judged-recordings")
    metrics = recipe.main(
        ["--model", model_dir, "--pairs", "tester/judged-recordings", "--output_dir", str(work / "b"), *TRAIN]
        + ["--speech_tokenizer", str(judged / "speech_tokenizer")]
    )
    pairs = load_from_disk(str(work / "b" / "pairs" / "dataset"))
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor
    from omni_hf.training.pair_sources import judged_pairs  # the manifest route gives the same codes

    model = OmniForConditionalGeneration.from_pretrained(model_dir)
    manifest = judged_pairs(
        model, OmniProcessor.from_pretrained(model_dir), read_manifest(judged / "pairs.jsonl"),
        judged / "speech_tokenizer", base_dir=judged,
    )  # fmt: skip
    result["judged"] = {
        "metrics": {k: metrics[k] for k in ("pairs", "steps")},
        "sources": sorted(set(pairs["source"])),
        "codes_equal": pairs["chosen_codes"] == manifest["chosen_codes"],
    }
    Path(report).write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])

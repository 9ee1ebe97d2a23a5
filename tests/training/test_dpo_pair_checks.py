"""Talker DPO refuses pairs it cannot learn from (issue 28): identical chosen/rejected codes and NaN / infinite
scores are clear errors before training; inverted scores (chosen above rejected) train with a warning and are
counted. Through the recipe's real entry point, `main(argv)`, on pair folders saved with `save_to_disk`."""

import json
import logging
import math
import random

import pytest
from datasets import Dataset

from omni_hf.training.dpo import check_pair_scores


def _pairs(bos: int, count: int = 4, seed: int = 0, **columns) -> Dataset:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append(
            {
                "thinker_prompt_ids": [1001, 5, 6, 7, 8, 1002, 1001, 9 + i],
                "thinker_reply_ids": [20 + i, 30, 40],
                "speaker_bos_id": bos,
                "chosen_codes": [rng.randrange(64) for _ in range(8)],
                "rejected_codes": [4096 + rng.randrange(64) for _ in range(8)],
                "chosen_score": 0.1,
                "rejected_score": 0.5,
                "chosen_scores": json.dumps({"wer": 0.1}),
                "rejected_scores": json.dumps({"wer": 0.5}),
            }
        )
    for column, values in columns.items():
        for row, value in zip(rows, values):
            if value is not None:
                row[column] = value
    return Dataset.from_list(rows)


@pytest.fixture(scope="module")
def bos(tiny_model_dir):
    from omni_hf.voices.speakers import SpeakerBank

    return SpeakerBank.load(tiny_model_dir)["Chelsie"].bos_token_id


def _run(recipe, tiny_model_dir, tmp_path, pairs: Dataset):
    folder = tmp_path / "pairs"
    pairs.save_to_disk(str(folder))
    argv = ["--model", str(tiny_model_dir), "--pairs", str(folder), "--output_dir", str(tmp_path / "out")]
    argv += ["--max_steps", "1", "--batch_size", "2", "--use_peft", "--lora_r", "2", "--lora_alpha", "4"]
    return recipe.main(argv)


def test_identical_chosen_and_rejected_are_refused(recipe, tiny_model_dir, tmp_path, bos):
    same = [3, 4, 5, 6, 7, 8, 9, 10]
    pairs = _pairs(bos, chosen_codes=[None, same], rejected_codes=[None, same])
    with pytest.raises(ValueError, match=r"identical in row\(s\) 1.*teaches nothing"):
        _run(recipe, tiny_model_dir, tmp_path, pairs)
    assert not (tmp_path / "out" / "checkpoints").exists()  # refused before any training


@pytest.mark.parametrize(
    "columns, where",
    [
        ({"chosen_score": [None, None, math.nan]}, r"chosen_score in row\(s\) 2"),
        ({"rejected_score": [math.inf]}, r"rejected_score in row\(s\) 0"),
        ({"chosen_scores": [None, json.dumps({"wer": math.nan})]}, r"chosen_scores in row\(s\) 1"),
    ],
)
def test_non_finite_scores_are_refused(recipe, tiny_model_dir, tmp_path, bos, columns, where):
    with pytest.raises(ValueError, match=rf"finite numbers, got NaN or infinity: {where}"):
        _run(recipe, tiny_model_dir, tmp_path, _pairs(bos, **columns))
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_inverted_scores_warn_and_are_counted(recipe, tiny_model_dir, tmp_path, bos, caplog):
    pairs = _pairs(bos, chosen_score=[0.9, None, 0.8], rejected_score=[0.1, None, 0.2])
    with caplog.at_level(logging.WARNING):
        metrics = _run(recipe, tiny_model_dir, tmp_path, pairs)
    assert metrics["inverted_pairs"] == 2 and metrics["steps"] == 1
    assert any(
        "2 of 4 pairs are inverted" in r.getMessage() and "row(s) 0, 2" in r.getMessage() for r in caplog.records
    )


def test_check_pair_scores_passes_good_pairs_and_pairs_without_scores():
    assert check_pair_scores(_pairs(0)) == 0
    bare = _pairs(0).remove_columns(["chosen_score", "rejected_score", "chosen_scores", "rejected_scores"])
    assert check_pair_scores(bare) == 0

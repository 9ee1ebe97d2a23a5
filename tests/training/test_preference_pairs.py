"""Pair building: K candidates sampled from the tiny Talker, scored (a code rule, or the real ASR + pause route),
best vs worst kept, saved as a datasets.Dataset; an interrupted build resumes without losing pairs; bad input."""

import json

import pytest
from datasets import Dataset

from omni_hf.training.asr import build_transcriber
from omni_hf.training.preference_pairs import (
    build_preference_pairs,
    check_pair_dataset,
    load_preference_pairs,
    sample_candidates,
)
from omni_hf.training.rewards import CandidateScore

TEXTS = ["hello world, how are you?", "the cat sat. on the mat", "a quick fox", "one two, three four", "good day"]
FAST = dict(talker_max_new_tokens=10, token2wav_kwargs={"num_inference_steps": 2})


class CodeScorer:
    """Stand-in ranker without audio: "WER" = share of codes >= 4096, pause error = number of codes."""

    needs_audio = False

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def __call__(self, text, codes, waveform, sampling_rate):
        self.calls.append(text)
        if self.fail_at is not None and text == TEXTS[self.fail_at]:
            raise KeyboardInterrupt  # the run is interrupted here
        return CandidateScore(sum(c >= 4096 for c in codes) / max(len(codes), 1), len(codes))


def test_pairs_from_a_code_rule(model_and_processor, tmp_path):
    model, processor = model_and_processor
    pairs = build_preference_pairs(model, processor, TEXTS, tmp_path, scorer=CodeScorer(), num_candidates=3, **FAST)
    assert isinstance(pairs, Dataset) and 1 <= len(pairs) <= len(TEXTS)
    for row in pairs:
        keys = sorted(zip(row["candidate_wers"], row["candidate_pause_errors"], strict=True))
        assert (row["chosen_wer"], row["chosen_pause_error"]) == keys[0]
        assert (row["rejected_wer"], row["rejected_pause_error"]) == keys[-1] != keys[0]
        assert row["chosen_codes"] and row["rejected_codes"] and row["speaker"] == "Chelsie"
        assert row["text"] == TEXTS[row["prompt_index"]] and len(row["thinker_reply_ids"]) >= 2
        assert json.loads(row["prompt"])[0]["role"] == "user"
    assert load_preference_pairs(tmp_path).to_list() == pairs.to_list()  # saved to disk


def test_candidates_are_batched_samples(model_and_processor):
    model, processor = model_and_processor
    from omni_hf.training.preference_pairs import prepare_prompt

    row = prepare_prompt(model, processor, TEXTS[0])
    candidates = sample_candidates(model, row["thinker_prompt_ids"], row["thinker_reply_ids"], 4, max_new_tokens=8)
    assert len(candidates) == 4 and len({tuple(c.tolist()) for c in candidates}) > 1
    greedy = sample_candidates(
        model, row["thinker_prompt_ids"], row["thinker_reply_ids"], 2, max_new_tokens=8, do_sample=False
    )
    assert greedy[0].tolist() == greedy[1].tolist()


def test_asr_and_pause_route(model_and_processor, tiny_asr_dir, tmp_path):
    model, processor = model_and_processor
    transcriber = build_transcriber(str(tiny_asr_dir))
    pairs = build_preference_pairs(
        model, processor, TEXTS[:3], tmp_path, transcriber=transcriber, num_candidates=4, **FAST
    )
    assert len(pairs) >= 1
    for row in pairs:
        assert (row["chosen_wer"], row["chosen_pause_error"]) < (row["rejected_wer"], row["rejected_pause_error"])
        assert row["chosen_wer"] == min(row["candidate_wers"]) and isinstance(row["chosen_transcript"], str)


def test_interrupted_build_resumes_without_losing_pairs(model_and_processor, tmp_path):
    model, processor = model_and_processor
    settings = dict(num_candidates=3, save_every=1, **FAST)
    full = build_preference_pairs(model, processor, TEXTS, tmp_path / "full", scorer=CodeScorer(), **settings)
    with pytest.raises(KeyboardInterrupt):
        build_preference_pairs(model, processor, TEXTS, tmp_path / "run", scorer=CodeScorer(fail_at=3), **settings)
    assert len(list((tmp_path / "run" / "shards").glob("*.jsonl"))) == 3  # prompts 0-2 were saved
    scorer = CodeScorer()
    resumed = build_preference_pairs(model, processor, TEXTS, tmp_path / "run", scorer=scorer, **settings)
    assert scorer.calls == [TEXTS[3]] * 3 + [TEXTS[4]] * 3  # only the missing prompts were sampled and scored
    assert resumed.to_list() == full.to_list()  # same candidates (seeded per prompt): nothing lost or changed
    again = build_preference_pairs(model, processor, TEXTS, tmp_path / "run", scorer=scorer, **settings)
    assert again.to_list() == full.to_list() and len(scorer.calls) == 6  # finished: just loaded


def test_bad_input(model_and_processor, tmp_path):
    model, processor = model_and_processor
    build = dict(scorer=CodeScorer(), **FAST)
    with pytest.raises(ValueError, match="num_candidates"):
        build_preference_pairs(model, processor, TEXTS, tmp_path / "a", num_candidates=1, **build)
    with pytest.raises(ValueError, match="prompt 1: the text to speak is empty"):
        build_preference_pairs(model, processor, ["hi there", "   "], tmp_path / "b", **build)
    with pytest.raises(ValueError, match="reply text is empty"):
        conversation = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
        build_preference_pairs(
            model, processor, [{"conversation": conversation, "reply": " \n"}], tmp_path / "c", **build
        )
    with pytest.raises(FileNotFoundError, match="Audio file not found: 'x.wav'"):
        media = [{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}]}]
        build_preference_pairs(
            model, processor, [{"conversation": media, "reply": "ok then"}], tmp_path / "d", **build
        )
    with pytest.raises(ValueError, match="must be file paths or URLs"):
        import numpy as np

        media = [{"role": "user", "content": [{"type": "audio", "audio": np.zeros(16000, dtype=np.float32)}]}]
        build_preference_pairs(
            model, processor, [{"conversation": media, "reply": "ok then"}], tmp_path / "d2", **build
        )
    build_preference_pairs(model, processor, TEXTS[:2], tmp_path / "e", num_candidates=2, **build)
    with pytest.raises(ValueError, match="other prompts or settings"):
        build_preference_pairs(model, processor, TEXTS[:3], tmp_path / "e", num_candidates=2, **build)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "other.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        build_preference_pairs(model, processor, TEXTS, tmp_path / "f", num_candidates=2, **build)
    with pytest.raises(ValueError, match="missing columns \\['speaker_bos_id', 'chosen_codes'"):
        check_pair_dataset(Dataset.from_dict({"thinker_prompt_ids": [[1]], "thinker_reply_ids": [[2, 3]]}))
    with pytest.raises(ValueError, match="does not exist"):
        load_preference_pairs(tmp_path / "nothing")

"""WER on known transcripts, pause detection on real espeak-ng speech with silences inserted at known places, the
punctuation-pause error, ranking, and the transcribers (callable and transformers pipeline)."""

import numpy as np
import pytest

from omni_hf.testing.media import espeak_speech
from omni_hf.token2wav.mel import resample
from omni_hf.training.asr import Transcriber, build_transcriber
from omni_hf.training.rewards import (
    CandidateScore,
    PauseConfig,
    SpeechScorer,
    detect_pauses,
    expected_pause_positions,
    normalize_text,
    pause_error,
    rank_candidates,
    word_error_rate,
)

SEGMENTS = ["the quick brown fox", "jumps over the lazy dog", "and runs away"]
GAP = 0.4


def test_wer_on_known_transcripts():
    assert normalize_text("  Hello,   World! ") == "hello world"
    assert word_error_rate("Hello, world! How are you?", "hello world how are you") == 0.0
    assert word_error_rate("the cat sat on the mat", "the cat sit on mat") == pytest.approx(2 / 6)
    assert word_error_rate("one two three", "one two three four five") == pytest.approx(2 / 3)
    assert word_error_rate("one two", "") == 1.0
    with pytest.raises(ValueError, match="reference"):
        word_error_rate("  ,  ", "anything")


def _trimmed(text):
    audio, rate = espeak_speech(text)
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    return audio[loud[0] : loud[-1] + 1], rate


@pytest.fixture(scope="module")
def segments():
    parts = [_trimmed(s) for s in SEGMENTS]
    return [p for p, _ in parts], parts[0][1]


def _join(parts, rate, gaps):
    out = [parts[0]]
    for part, gap in zip(parts[1:], gaps, strict=True):
        out += [np.zeros(int(gap * rate), np.float32), part]
    return np.concatenate(out)


def test_pause_detection_on_speech_with_inserted_silences(segments):
    parts, rate = segments
    speech = _join(parts, rate, [GAP, GAP])
    pauses, voiced = detect_pauses(speech, rate)
    starts = [len(parts[0]) / rate, (len(parts[0]) + len(parts[1])) / rate + GAP]
    assert len(pauses) == 2
    for (start, end), truth in zip(pauses, starts, strict=True):
        assert abs(start - truth) < 0.05 and abs(end - (truth + GAP)) < 0.05
    assert voiced[0] < 0.05 and abs(voiced[1] - len(speech) / rate) < 0.05
    assert detect_pauses(np.concatenate(parts), rate)[0] == []  # espeak's word gaps are no pauses
    # another rate (resampled) finds the same pauses; a silent clip has none
    again, _ = detect_pauses(resample(speech, rate, 48000), 48000)
    assert len(again) == 2 and abs(again[0][0] - pauses[0][0]) < 0.03
    assert detect_pauses(np.zeros(rate, np.float32), rate) == ([], None)


def test_punctuation_pause_error(segments):
    parts, rate = segments
    text = "The quick brown fox, jumps over the lazy dog. And runs away!"
    assert len(expected_pause_positions(text)) == 2  # the final "!" is not internal
    assert pause_error(text, _join(parts, rate, [GAP, GAP]), rate) == 0
    assert pause_error(text, _join(parts, rate, [GAP, 0]), rate) == 1  # one pause missing
    assert pause_error(" ".join(SEGMENTS), _join(parts, rate, [GAP, GAP]), rate) == 2  # pauses at no punctuation
    # a silence inside "jumps over | the lazy dog" instead of at the comma: one missing + one spurious
    half = len(parts[1]) // 2
    moved = np.concatenate([parts[0], parts[1][:half], np.zeros(int(GAP * rate), np.float32), parts[1][half:]])
    moved = np.concatenate([moved, np.zeros(int(GAP * rate), np.float32), parts[2]])
    assert pause_error(text, moved, rate, PauseConfig(tolerance=0.08)) == 2
    assert pause_error(text, np.zeros(0, np.float32), rate) == 2  # nothing said: every pause missing


def test_bad_audio_and_thresholds(segments):
    parts, rate = segments
    with pytest.raises(ValueError, match="sampling_rate"):
        detect_pauses(parts[0], 0)
    with pytest.raises(ValueError, match="sampling_rate"):
        pause_error("a, b", parts[0], 22050.5)
    with pytest.raises(ValueError, match="mono"):
        detect_pauses(np.stack([parts[0], parts[0]], 1), rate)
    with pytest.raises(ValueError, match="PauseConfig"):
        PauseConfig(silence_db=3)


def test_ranking_wer_first_pause_breaks_ties():
    s = [CandidateScore(0.2, 3), CandidateScore(0.1, 5), CandidateScore(0.2, 1), CandidateScore(0.5, 0)]
    assert rank_candidates(s) == (1, 3)
    assert rank_candidates([CandidateScore(0.2, 3), CandidateScore(0.2, 1)]) == (1, 0)
    assert rank_candidates([CandidateScore(0.2, 1), CandidateScore(0.2, 1)]) is None  # tie: dropped
    with pytest.raises(ValueError, match="at least 2"):
        rank_candidates([CandidateScore(0.0, 0)])


def test_callable_transcriber_gets_its_rate_and_scores(segments):
    parts, rate = segments
    seen = []

    def asr(waveform):
        seen.append(len(waveform))
        return "the quick brown fox jumps over the lazy dog and runs away"

    scorer = SpeechScorer(build_transcriber(asr, sampling_rate=16000))
    speech = _join(parts, rate, [GAP, GAP])
    score = scorer("The quick brown fox, jumps over the lazy dog. And runs away!", None, speech, rate)
    assert (score.wer, score.pause_error) == (0.0, 0.0)
    assert abs(seen[0] - len(speech) * 16000 / rate) <= 2  # resampled to what the callable wants
    with pytest.raises(ValueError, match="must return a str"):
        Transcriber(lambda w: 3)(speech, rate)


def test_pipeline_transcriber_and_unloadable_asr(tiny_asr_dir, tmp_path, segments):
    transcriber = build_transcriber(str(tiny_asr_dir))
    assert transcriber.sampling_rate == 16000
    text = transcriber(segments[0][0], segments[1])
    assert isinstance(text, str) and text and text == transcriber(segments[0][0], segments[1])
    broken = tmp_path / "broken-asr"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    for bad in (str(broken), str(tmp_path / "missing")):
        with pytest.raises(ValueError, match="cannot be loaded"):
            build_transcriber(bad)

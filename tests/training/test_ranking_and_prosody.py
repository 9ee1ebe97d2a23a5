"""Rewards that keep the voice: the ranking rule (lexicographic or weighted, speaker similarity in it), speaker
similarity from the model's own ECAPA encoder or a pluggable embedder, the prosody figures on signals whose pitch and
energy spread are known, and log levels that follow TRANSFORMERS_VERBOSITY / --log_level."""

import numpy as np
import pytest
import torch
from transformers.utils import logging

from omni_hf.token2wav.mel import log_mel_spectrogram
from omni_hf.training.prosody import format_prosody_report, prosody_stats, prosody_summary
from omni_hf.training.recipe_logging import apply_log_level
from omni_hf.training.rewards import CandidateScore, RankingRule, SpeakerSimilarity, SpeechScorer, rank_candidates

RATE = 24000


def wave(hz=150.0, vibrato=0.0, tremolo_db=0.0, seconds=1.0):
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = hz * 2 ** (vibrato * np.sin(2 * np.pi * 2 * t) / 12)
    gain = 10 ** (tremolo_db * np.sin(2 * np.pi * 3 * t) / 20)
    return (0.2 * gain * np.sin(2 * np.pi * np.cumsum(pitch) / RATE)).astype(np.float32)


def test_ranking_rule():
    a = CandidateScore(0.1, 2, speaker_similarity=0.2)
    b = CandidateScore(0.1, 1, speaker_similarity=0.9)
    c = CandidateScore(0.3, 0, speaker_similarity=0.95)
    assert rank_candidates([a, b, c]) == (1, 2)  # default: WER, then pauses
    assert rank_candidates([a, b, c], "-speaker_similarity") == (2, 0)  # higher similarity is better
    rule = RankingRule.parse("wer=1,pause_error=0.1,speaker_similarity=-1")
    assert rule.mode == "weighted" and rule.key(b) == (round(0.1 + 0.1 - 0.9, 6),)
    assert rank_candidates([a, b, c], rule) == (1, 0)  # b: -0.7, c: 0.3 - 0.95 = -0.65, a: 0.1 + 0.2 - 0.2 = 0.1
    assert rule.score(b) == pytest.approx(-0.7) and rule.score(c) == pytest.approx(-0.65)


def test_ranking_rule_orders_by_weighted_sum_and_bad_rules():
    rule = RankingRule.parse("wer=1,speaker_similarity=-1")
    scores = [CandidateScore(0.2, 0, speaker_similarity=0.9), CandidateScore(0.1, 0, speaker_similarity=0.1)]
    assert rank_candidates(scores, rule) == (0, 1)  # 0.2-0.9 = -0.7 < 0.1-0.1 = 0: the voice outweighs 0.1 WER
    assert str(RankingRule.parse("wer,-speaker_similarity")) == "wer,-speaker_similarity"
    with pytest.raises(ValueError, match="give every metric a weight"):
        RankingRule.parse("wer=1,pause_error")
    with pytest.raises(ValueError, match="weight of 'wer' is not a number"):
        RankingRule.parse("wer=x")
    with pytest.raises(ValueError, match="needs \\['speaker_similarity'\\] but the scorer measured only"):
        rank_candidates([CandidateScore(0, 0), CandidateScore(1, 0)], "wer,-speaker_similarity")


def test_speaker_similarity_from_the_models_encoder(model_and_processor):
    model, _ = model_and_processor
    similarity = SpeakerSimilarity.from_model(model, "Chelsie")
    encoder = model.token2wav.dit.input_embed.spk_encoder
    with torch.no_grad():
        reference = encoder(model.speakers["Chelsie"].reference_mel.float())[0].numpy()
        audio = wave(200, vibrato=2)
        own = encoder(log_mel_spectrogram(torch.from_numpy(audio)))[0].numpy()
    np.testing.assert_allclose(similarity.reference, reference, rtol=1e-5, atol=1e-6)
    expected = own @ reference / np.linalg.norm(own) / np.linalg.norm(reference)
    assert similarity(audio, RATE) == pytest.approx(float(expected), abs=1e-5)
    resampled = similarity(audio[::3].copy(), 8000)  # other rates are resampled to 24 kHz first
    assert -1.0 <= resampled <= 1.0
    with pytest.raises(ValueError, match="speaker 'Nobody'"):
        SpeakerSimilarity.from_model(model, "Nobody")


def test_pluggable_speaker_embedder_in_the_scorer():
    def embed(audio, rate):  # a toy embedder: (mean level, peak)
        return np.array([np.abs(audio).mean(), np.abs(audio).max()])

    similarity = SpeakerSimilarity(embed, np.array([1.0, 0.0]))
    scorer = SpeechScorer(lambda audio, rate: "hello there", speaker_similarity=similarity)
    score = scorer("hello there", [1, 2], wave(), RATE)
    level, peak = np.abs(wave()).mean(), np.abs(wave()).max()
    assert score.wer == 0.0 and score.speaker_similarity == pytest.approx(level / np.hypot(level, peak), rel=1e-5)
    with pytest.raises(ValueError, match="embed must be callable"):
        SpeakerSimilarity("not callable", np.zeros(2))


def test_prosody_figures():
    flat, vibrato = prosody_stats(wave(150), RATE), prosody_stats(wave(150, vibrato=4), RATE)
    assert flat["pitch_spread_semitones"] < 0.05 and flat["mean_pitch_hz"] == pytest.approx(150, rel=0.01)
    assert vibrato["pitch_spread_semitones"] == pytest.approx(4 / np.sqrt(2), rel=0.1)  # std of 4 sin(.)
    tremolo = prosody_stats(wave(150, tremolo_db=6), RATE)
    assert tremolo["energy_spread_db"] == pytest.approx(6 / np.sqrt(2), rel=0.15) and flat["energy_spread_db"] < 0.1
    noise = prosody_stats(np.random.default_rng(0).normal(0, 0.1, RATE).astype(np.float32), RATE)
    assert noise["voiced_share"] < 0.05 and prosody_stats(np.zeros(RATE), RATE)["voiced_share"] == 0.0
    summary = prosody_summary([wave(150), wave(150, vibrato=4), np.zeros(0)], RATE)
    assert summary["count"] == 2 and summary["pitch_spread_semitones"] == pytest.approx(
        (flat["pitch_spread_semitones"] + vibrato["pitch_spread_semitones"]) / 2
    )
    table = format_prosody_report({"chosen": summary, "rejected": prosody_summary([wave()], RATE)})
    assert table.splitlines()[1].startswith("chosen") and "pitch_spread_semitones" in table.splitlines()[0]


def test_log_level_follows_the_environment_and_the_flag(monkeypatch):
    before = logging.get_verbosity()
    try:
        monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
        assert apply_log_level(None) == "error" and logging.get_verbosity() == logging.ERROR
        assert apply_log_level("info") == "info" and logging.get_verbosity() == logging.INFO  # the flag wins
        monkeypatch.delenv("TRANSFORMERS_VERBOSITY")
        logging.set_verbosity_warning()
        assert apply_log_level(None) == "warning"  # no flag, no variable: transformers' default stays
        with pytest.raises(ValueError, match="log level must be one of"):
            apply_log_level("loud")
    finally:
        logging.set_verbosity(before)

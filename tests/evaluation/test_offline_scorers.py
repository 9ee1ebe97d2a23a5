"""The offline scorers on real speech (espeak-ng, known transcripts): pocketsphinx's WER is measured and low enough
to rank (each clip scores better against its own text than against the others'), Resemblyzer puts two clips of one
voice closer than clips of two voices, and each scorer names its model."""

import numpy as np

from omni_hf.evaluation.speaker import cosine
from omni_hf.evaluation.speech import SpeechScorers, score_clip
from omni_hf.evaluation.text import error_rates


def test_pocketsphinx_wer_on_espeak_speech_ranks(pocketsphinx, espeak, sentences):
    transcripts = [pocketsphinx(*espeak(text)) for text in sentences]
    own = [error_rates(text, hyp)["wer"] for text, hyp in zip(sentences, transcripts)]
    other = [
        np.mean([error_rates(sentences[j], hyp)["wer"] for j in range(len(sentences)) if j != i])
        for i, hyp in enumerate(transcripts)
    ]
    wer = float(np.mean(own))
    print(
        f"\npocketsphinx WER on {len(sentences)} espeak-ng sentences: {wer:.3f} (vs other texts {np.mean(other):.3f})"
    )
    assert wer < 0.7, transcripts  # measured 0.50 (klatt voice, 140 wpm)
    assert all(a < b for a, b in zip(own, other)), (own, other)  # its own text always scores better: it can rank
    assert np.mean(other) > 0.9
    assert pocketsphinx.name.startswith("pocketsphinx ") and "en-us" in pocketsphinx.name


def test_resemblyzer_same_voice_above_different_voice(resemblyzer, espeak, sentences, other_voice):
    a, b = sentences[0], sentences[4]
    same = cosine(resemblyzer(*espeak(a)), resemblyzer(*espeak(b)))
    different = cosine(resemblyzer(*espeak(a)), resemblyzer(*espeak(b, other_voice)))
    print(f"\nResemblyzer cosine: same voice {same:.3f}, different voices {different:.3f}, gap {same - different:.3f}")
    assert same > different + 0.15, (same, different)  # measured 0.80 vs 0.45
    assert resemblyzer.name.startswith("resemblyzer ")


def test_score_clip_reports_every_metric_and_the_models(pocketsphinx, resemblyzer, espeak, sentences):
    scorers = SpeechScorers(pocketsphinx, resemblyzer)
    reference = resemblyzer(*espeak(sentences[1]))
    row = score_clip(scorers, sentences[0], *espeak(sentences[0]), reference=reference)
    assert set(row) == {"transcript", "wer", "cer", "seconds", "pause_error", "speaker_similarity"}
    assert 0 <= row["wer"] < 1 and row["speaker_similarity"] > 0.6 and row["seconds"] > 1.5
    silent = score_clip(scorers, sentences[0], np.zeros(22050, np.float32), 22050)
    assert silent["wer"] == 1.0 and silent["transcript"] == ""
    names = scorers.names()
    assert names["asr"] == pocketsphinx.name and names["speaker_similarity"] == resemblyzer.name


def test_talker_dpo_ranks_with_pocketsphinx_when_no_asr_is_named(espeak, sentences):
    from omni_hf.training.asr import build_transcriber
    from omni_hf.training.card_figures import dpo_results

    transcriber = build_transcriber()  # what recipes/talker_dpo.py builds without --asr: offline, no download
    assert transcriber.name.startswith("pocketsphinx ")
    assert error_rates(sentences[2], transcriber(*espeak(sentences[2])))["wer"] < 0.7
    card = dpo_results({"wer_before": 0.5, "wer_after": 0.4, "asr": transcriber.name})
    assert card["Speech of the held-out texts"]["WER scored by"] == transcriber.name

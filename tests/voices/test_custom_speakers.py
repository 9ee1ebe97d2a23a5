"""Custom speakers from a reference clip: the DiT conditioning changes, the clip rule, save/load, CLI, bad input."""

import numpy as np
import pytest
import soundfile
import torch

from omni_hf import OmniForConditionalGeneration, cli
from omni_hf.voices.speaker_builder import build_speaker, prepare_reference_audio

PROMPT = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10]])
GREEDY = dict(thinker_max_new_tokens=5, thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=20)


def test_espeak_speaker_changes_the_dit_conditioning_and_round_trips(voice_model, speech_clip, tmp_path):
    audio, rate = speech_clip
    speaker = voice_model.add_speaker("Robo", audio, sampling_rate=rate)
    base = voice_model.speakers["Chelsie"]
    assert speaker.bos_token_id == base.bos_token_id and torch.equal(speaker.speaker_embedding, base.speaker_embedding)
    assert (
        speaker.reference_mel.shape[0] == 1
        and 150 < speaker.reference_mel.shape[1] <= 400
        and speaker.reference_mel.shape[2] == 80
    )
    dit = voice_model.token2wav.dit
    codes = torch.randint(0, 8000, (1, 12))
    with torch.no_grad():
        ours = dit.prepare_conditioning(codes, speaker.reference_mel, speaker.speaker_embedding).speaker_features
        theirs = dit.prepare_conditioning(codes, base.reference_mel, base.speaker_embedding).speaker_features
    assert (ours - theirs).abs().max() > 1e-3
    _, robo = voice_model.generate(PROMPT, speaker="Robo", generator=torch.Generator().manual_seed(0), **GREEDY)
    _, chelsie = voice_model.generate(PROMPT, speaker="Chelsie", generator=torch.Generator().manual_seed(0), **GREEDY)
    assert robo.shape == chelsie.shape and not torch.equal(robo, chelsie)
    assert list(voice_model.stream(PROMPT, speaker="Robo", **GREEDY))[-1].speech_codes == 20
    voice_model.save_pretrained(tmp_path)
    again = OmniForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(again.speakers["Robo"].reference_mel, speaker.reference_mel)
    assert again.speakers["Robo"].bos_token_id == speaker.bos_token_id


def test_clip_rule_resamples_trims_and_caps(speech_clip):
    audio, rate = speech_clip
    clip = prepare_reference_audio(audio, rate)
    padded = np.concatenate([np.zeros(rate), audio, np.zeros(rate // 2)]).astype(np.float32)
    assert abs(len(prepare_reference_audio(padded, rate)) - len(clip)) <= 480  # silence trimmed (10 ms frames)
    long = np.concatenate([audio] * 4)
    assert len(prepare_reference_audio(long, rate)) == 4 * 24000  # the first 4 s of sound
    custom = prepare_reference_audio(long, rate, max_seconds=2.5)
    assert len(custom) == int(2.5 * 24000)


def test_pluggable_speaker_encoder(voice_model, speech_clip):
    audio, rate = speech_clip
    base = voice_model.speakers["Ethan"]
    seen = []

    def encoder(waveform, sampling_rate):
        seen.append(sampling_rate)
        return torch.full((base.speaker_embedding.shape[1],), float(np.abs(waveform).mean()))

    speaker = build_speaker(audio, "Enc", base, sampling_rate=rate, speaker_encoder=encoder, bos_token_id=1013)
    assert (
        seen == [24000]
        and speaker.bos_token_id == 1013
        and not torch.equal(speaker.speaker_embedding, base.speaker_embedding)
    )
    with pytest.raises(ValueError, match="speaker_encoder returned"):
        build_speaker(audio, "Bad", base, sampling_rate=rate, speaker_encoder=lambda w, r: torch.zeros(3))


def test_bad_reference_clips(voice_model, speech_clip, tmp_path):
    audio, rate = speech_clip
    with pytest.raises(ValueError, match="silent"):
        voice_model.add_speaker("Quiet", np.zeros(rate * 2, dtype=np.float32), sampling_rate=rate)
    with pytest.raises(ValueError, match="at least 0.5 s"):
        voice_model.add_speaker("Short", audio[: rate // 5], sampling_rate=rate)
    with pytest.raises(ValueError, match="NaN"):
        voice_model.add_speaker("Broken", np.full(rate, np.nan, dtype=np.float32), sampling_rate=rate)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(ValueError, match="Could not decode"):
        voice_model.add_speaker("Corrupt", corrupt)
    with pytest.raises(ValueError, match="exists already"):
        voice_model.add_speaker("Chelsie", audio, sampling_rate=rate)
    voice_model.add_speaker("Chelsie", audio, sampling_rate=rate, overwrite=True)  # explicit replacement works


def test_cli_speaker_add_and_list(tiny_voice_model_dir, speech_clip, tmp_path, capsys):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_voice_model_dir, model_dir)
    audio, rate = speech_clip
    clip = tmp_path / "me.wav"
    soundfile.write(clip, audio, rate)
    assert cli.main(["speaker", "add", str(model_dir), "--audio", str(clip), "--name", "Me"]) == 0
    assert OmniForConditionalGeneration.from_pretrained(model_dir).speakers.names() == ["Chelsie", "Ethan", "Me"]
    before = (model_dir / "speakers.safetensors").read_bytes()
    assert cli.main(["speaker", "add", str(model_dir), "--audio", str(clip), "--name", "Me"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert (model_dir / "speakers.safetensors").read_bytes() == before  # nothing was touched
    assert cli.main(["speaker", "list", str(model_dir)]) == 0
    assert "Me\tbos" in capsys.readouterr().out


def test_two_cli_speaker_adds_at_once_keep_both(tiny_voice_model_dir, speech_clip, tmp_path, monkeypatch):
    """Two `omni-hf speaker add` on one model at once: both speakers are there afterwards (one used to be lost: each
    read the bank before the other saved). The bank's load is slowed down so that the two always overlap."""
    import shutil
    import threading
    import time

    from omni_hf.voices.speakers import SpeakerBank

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_voice_model_dir, model_dir)
    audio, rate = speech_clip
    clip = tmp_path / "me.wav"
    soundfile.write(clip, audio, rate)
    load = SpeakerBank.load

    def slow_load(directory):
        bank = load(directory)
        time.sleep(0.5)  # widens the read-modify-write window (no timing is asserted)
        return bank

    monkeypatch.setattr(SpeakerBank, "load", staticmethod(slow_load))
    codes = {}

    def add(name):
        codes[name] = cli.main(["speaker", "add", str(model_dir), "--audio", str(clip), "--name", name])

    threads = [threading.Thread(target=add, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert codes == {"A": 0, "B": 0}
    names = OmniForConditionalGeneration.from_pretrained(model_dir).speakers.names()
    assert sorted(names) == ["A", "B", "Chelsie", "Ethan"]

"""`OmniForConditionalGeneration.stream`: same greedy text and codes as `generate`, Thinker and Talker interleaved,
audio equal to the windowed token2wav decode of the codes, and a clean lifecycle (early stop, errors, bad input)."""

import re
import threading

import pytest
import soundfile
import torch

from omni_hf import cli
from omni_hf.omni import AudioChunk, StepDecoder, StreamingWindow, StreamStats, TextDelta

PROMPT = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10]])
GREEDY = dict(
    speaker="Chelsie",
    thinker_max_new_tokens=12,
    thinker_do_sample=False,
    talker_do_sample=False,
    talker_max_new_tokens=120,
    talker_repetition_penalty=1.0,
)


def _split(events):
    text = [e for e in events if isinstance(e, TextDelta)]
    audio = [e for e in events if isinstance(e, AudioChunk)]
    assert isinstance(events[-1], StreamStats) and sum(isinstance(e, StreamStats) for e in events) == 1
    return text, audio, events[-1]


def test_greedy_stream_matches_generate(tiny_omni, monkeypatch):
    model, processor = tiny_omni
    offline_codes = []
    original = model.codes_to_waveform
    monkeypatch.setattr(
        model, "codes_to_waveform", lambda codes, *a, **k: offline_codes.append(codes) or original(codes, *a, **k)
    )
    sequences, _ = model.generate(PROMPT, **GREEDY)
    events = list(model.stream(PROMPT, tokenizer=processor, generator=torch.Generator().manual_seed(0), **GREEDY))
    text, audio, stats = _split(events)
    reply = sequences[0, PROMPT.shape[1] :].tolist()
    assert [t for e in text for t in e.token_ids] == stats.token_ids == reply
    assert "".join(e.text for e in text) == processor.decode(reply, skip_special_tokens=True)
    assert stats.speech_code_ids == offline_codes[0].tolist() and stats.speech_codes == 120
    # Audio: contiguous chunks that equal the windowed token2wav decode of those codes with the same noise.
    starts = [round(e.start * 24000) for e in audio]
    assert starts == [0, *torch.tensor([e.audio.shape[0] for e in audio]).cumsum(0)[:-1].tolist()]
    streamed = torch.cat([torch.from_numpy(e.audio) for e in audio])
    g = torch.Generator().manual_seed(0)
    noise = torch.cat([torch.randn(1, 24, 80, generator=g) for _ in range(10)], dim=1)[:, :240]
    voice = model.speakers["Chelsie"]
    expected = model.token2wav(
        offline_codes[0][None], voice.reference_mel, voice.speaker_embedding, latents=noise, window=StreamingWindow()
    ).audios[0]
    assert streamed.shape == expected.shape == (120 * 480,) and len(audio) >= 2
    assert (streamed - expected).abs().max() <= 1e-4
    assert stats.audio_seconds == pytest.approx(2.4)
    assert 0 < stats.time_to_first_text <= stats.time_to_first_audio <= stats.wall_seconds
    assert set(stats.rtf) == {"thinker", "talker", "dit", "vocoder", "total"}


def test_talker_steps_while_the_thinker_is_still_generating(tiny_omni):
    model, _ = tiny_omni
    order = []
    hooks = [
        model.thinker.model.register_forward_hook(lambda *a: order.append("thinker")),
        model.talker.model.register_forward_hook(lambda *a: order.append("talker")),
    ]
    try:
        list(model.stream(PROMPT, **GREEDY))
    finally:
        for hook in hooks:
            hook.remove()
    first_talker, last_thinker = order.index("talker"), len(order) - 1 - order[::-1].index("thinker")
    # The Talker starts after the Thinker's second forward (the first reply entry) and then keeps pace with it.
    assert order[:3] == ["thinker", "thinker", "talker"]
    assert first_talker < last_thinker
    assert order[: 2 * 11].count("talker") >= 10


def test_text_only_stream_matches_thinker_generate(tiny_omni):
    model, _ = tiny_omni
    expected = model.generate(PROMPT, return_audio=False, max_new_tokens=8, do_sample=False)
    events = list(model.stream(PROMPT, return_audio=False, thinker_max_new_tokens=8, thinker_do_sample=False))
    text, audio, stats = _split(events)
    assert not audio and stats.audio_seconds == 0 and stats.time_to_first_audio is None
    assert stats.token_ids == expected[0, PROMPT.shape[1] :].tolist()


def test_early_stop_frees_everything(tiny_omni, monkeypatch):
    model, _ = tiny_omni
    closed = []
    original = StepDecoder.close
    monkeypatch.setattr(StepDecoder, "close", lambda self: closed.append(self.model) or original(self))
    stream = model.stream(PROMPT, **GREEDY)
    first_audio = next(e for e in stream if isinstance(e, AudioChunk))
    assert first_audio.audio.size
    stream.close()  # what a `break` out of the for loop does (or garbage collection)
    assert closed == [model.thinker, model.talker]  # both decoders dropped their caches
    assert not model.thinker.model._forward_hooks  # the Thinker-track hook is gone
    assert not [
        t for t in threading.enumerate() if t.name == "omni-hf-token2wav"
    ]  # the worker was joined  # nothing was left running
    with pytest.raises(StopIteration):
        next(stream)


def test_an_error_inside_generation_surfaces(tiny_omni):
    model, _ = tiny_omni

    def broken(*args):
        raise RuntimeError("talker exploded")

    hook = model.talker.model.register_forward_pre_hook(broken)
    try:
        with pytest.raises(RuntimeError, match="talker exploded"):
            list(model.stream(PROMPT, **GREEDY))
    finally:
        hook.remove()
    assert not model.thinker.model._forward_hooks


def test_bad_input(tiny_omni):
    model, _ = tiny_omni
    with pytest.raises(ValueError, match="one prompt"):
        next(model.stream(PROMPT.repeat(2, 1), **GREEDY))
    with pytest.raises(ValueError, match="empty prompt"):
        next(model.stream(PROMPT[:, :0], **GREEDY))
    with pytest.raises(ValueError, match="Unknown speaker"):
        model.stream(PROMPT, speaker="Nobody")
    with pytest.raises(ValueError, match="not num_beams"):
        next(model.stream(PROMPT, return_audio=False, thinker_num_beams=2))


def test_cli_streams_text_and_a_growing_wav(tiny_omni, tmp_path, capsys):
    model, _ = tiny_omni
    wav = tmp_path / "reply.wav"
    args = ["chat", "--model", str(model.source_dir), "--text", "Hello", "--max-new-tokens", "5"]
    assert cli.main([*args, "--output", str(wav), "--max-speech-codes", "60", "--stream"]) == 0
    out = capsys.readouterr().out
    codes = int(re.search(r"(\d+) codes", out).group(1))  # the talker samples: it may end before 60 codes
    assert "Stream stats: first text" in out and 0 < codes <= 60
    audio, rate = soundfile.read(wav)
    assert rate == 24000 and audio.shape == (codes * 480,)
    assert cli.main([*args, "--stream"]) == 0  # text only: no talker work
    assert "0 codes" in capsys.readouterr().out


@pytest.mark.parametrize("failing", ["talker", "dit"])
def test_background_token2wav_gives_the_same_stream_and_surfaces_errors(tiny_omni, failing):
    model, _ = tiny_omni
    if failing == "talker":  # no failure: the worker thread changes timing only
        inline = list(model.stream(PROMPT, generator=torch.Generator().manual_seed(1), **GREEDY))
        threaded = list(
            model.stream(PROMPT, generator=torch.Generator().manual_seed(1), background_token2wav=True, **GREEDY)
        )
        audio = [
            torch.cat([torch.from_numpy(e.audio) for e in run if isinstance(e, AudioChunk)])
            for run in (inline, threaded)
        ]
        assert torch.equal(audio[0], audio[1]) and inline[-1].speech_code_ids == threaded[-1].speech_code_ids
    else:

        def broken(*args):
            raise RuntimeError("dit exploded")

        hook = model.token2wav.dit.register_forward_pre_hook(broken)
        try:
            with pytest.raises(RuntimeError, match="dit exploded"):
                list(model.stream(PROMPT, background_token2wav=True, **GREEDY))
        finally:
            hook.remove()
    assert not [t for t in threading.enumerate() if t.name == "omni-hf-token2wav"]  # the worker was joined


def test_early_stop_joins_the_token2wav_worker(tiny_omni):
    model, _ = tiny_omni
    stream = model.stream(PROMPT, background_token2wav=True, **GREEDY)
    next(e for e in stream if isinstance(e, AudioChunk))
    assert [t for t in threading.enumerate() if t.name == "omni-hf-token2wav"]  # the worker is running
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "omni-hf-token2wav"]  # the worker was joined


def test_compiled_decode_steps_stream_the_same_reply(tiny_omni):
    """`thinker_/talker_cache_implementation="static"` with a `compile_config`: both decoders run the compiled lean
    step (its forward hook still records the Thinker track the Talker reads): same text, codes and audio; the first
    audio's stage breakdown is reported."""
    from transformers import CompileConfig

    model, processor = tiny_omni
    compiled = {}
    for stage in ("thinker", "talker"):
        compiled |= {
            f"{stage}_cache_implementation": "static",
            f"{stage}_compile_config": CompileConfig(backend="aot_eager"),
        }
    runs = []
    for extra in ({}, compiled):
        events = list(
            model.stream(PROMPT, tokenizer=processor, generator=torch.Generator().manual_seed(0), **GREEDY, **extra)
        )
        runs.append(_split(events))
    (text, audio, stats), (text_c, audio_c, stats_c) = runs
    assert stats_c.token_ids == stats.token_ids and stats_c.speech_code_ids == stats.speech_code_ids
    eager = torch.cat([torch.from_numpy(e.audio) for e in audio])
    assert torch.equal(torch.cat([torch.from_numpy(e.audio) for e in audio_c]), eager)
    assert set(stats_c.stage_seconds_to_first_audio) == {"thinker", "talker", "dit", "vocoder"}
    assert sum(stats_c.stage_seconds_to_first_audio.values()) <= stats_c.time_to_first_audio

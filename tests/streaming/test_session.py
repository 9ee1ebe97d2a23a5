"""Chunked prefill (`OmniSession`): audio prefilled chunk by chunk gives the one-shot prompt, cache and logits."""

import numpy as np
import pytest
import torch

from omni_hf.omni import AudioChunk, StreamStats, TextDelta
from omni_hf.omni.session import OmniSession, StreamingLogMel


def _speechlike(seconds: float, loud_start: bool, seed: int = 0) -> np.ndarray:
    """A 16 kHz test signal with pitch and loudness changes; `loud_start` puts its loudest moment first."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t) * (1.2 + np.sin(2 * np.pi * 0.4 * t))
    wave = wave + 0.003 * rng.standard_normal(t.size)
    wave[np.abs(np.sin(2 * np.pi * 0.9 * t)) < 0.2] *= 1e-4  # near-silent gaps: bins far below the peak
    if loud_start:
        wave[:800] *= 4
    return wave.astype(np.float32)


def _one_shot(processor, wave, text):
    conversation = [
        {
            "role": "user",
            "content": [{"type": "audio", "audio": wave, "sampling_rate": 16000}, {"type": "text", "text": text}],
        }
    ]
    return processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


def _feed(session, wave, sizes=(3333, 160, 20000, 7)):
    i = k = 0
    while i < wave.size:
        session.append_audio(wave[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1


def test_chunked_prefill_equals_one_shot_prefill(tiny_omni):
    model, processor = tiny_omni
    wave = _speechlike(5.3, loud_start=True)  # 3 encoder chunks: 2 s, 2 s, 1.3 s
    session = OmniSession(model, processor)
    _feed(session, wave)
    assert session.cache.get_seq_length() > 100  # two full chunks were prefilled before the turn ended
    prompt = session.finish_input("What did I say?")
    one = _one_shot(processor, wave, "What did I say?")
    assert torch.equal(prompt["input_ids"], one["input_ids"])
    assert (session.input_features - one["input_features"]).abs().max() <= 1e-5
    with torch.no_grad():
        expected = model.thinker(**one).logits[0, -1]
        past = session.cache.get_seq_length()
        got = model.thinker(
            input_ids=prompt["input_ids"][:, past:],
            position_ids=prompt["position_ids"][..., past:],
            input_features=prompt["input_features"],  # the last chunk is encoded with the suffix's forward
            feature_attention_mask=prompt["feature_attention_mask"],
            cache=session.cache,
        ).logits[0, -1]
    assert expected.abs().max() > 1e-2
    assert (got - expected).abs().max() <= 1e-4


def test_session_reply_streams_like_a_one_shot_prompt(tiny_omni):
    model, processor = tiny_omni
    wave = _speechlike(4.5, loud_start=True, seed=1)
    greedy = dict(thinker_max_new_tokens=6, thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=40)
    session = OmniSession(model, processor)
    _feed(session, wave)
    events = list(session.stream("Hi", **greedy))
    one = _one_shot(processor, wave, "Hi")
    expected = list(model.stream(**one, **greedy))
    assert events[-1].token_ids == expected[-1].token_ids and len(events[-1].token_ids) == 6
    assert events[-1].speech_code_ids == expected[-1].speech_code_ids and events[-1].speech_codes == 40
    assert any(isinstance(e, AudioChunk) for e in events) and any(isinstance(e, TextDelta) for e in events)
    assert isinstance(events[-1], StreamStats)


def test_running_maximum_only_changes_bins_80_db_below_the_peak(tiny_omni):
    _, processor = tiny_omni
    wave = _speechlike(5.0, loud_start=False)
    wave[-8000:] *= 8  # the loudest part comes last: the stream cannot know the final floor in advance
    stream = StreamingLogMel(processor.feature_extractor)
    streamed = np.concatenate(
        [stream.push(wave[i : i + 4000]) for i in range(0, wave.size, 4000)] + [stream.finish()], axis=1
    )
    one_shot = _one_shot(processor, wave, "")["input_features"][0].numpy()
    assert streamed.shape == one_shot.shape
    differs = np.abs(streamed - one_shot) > 1e-5
    assert differs.any()  # the difference is real ...
    floor = one_shot.min()  # ... and confined to bins the one-shot features floored at (global max - 8) / 4 scale
    assert np.allclose(one_shot[differs], floor, atol=1e-5)


def test_session_lifecycle_and_bad_input(tiny_omni):
    model, processor = tiny_omni
    session = OmniSession(model, processor)
    with pytest.raises(ValueError, match="16000 Hz is expected"):
        session.append_audio(np.zeros(100, dtype=np.float32), sampling_rate=44100)
    with pytest.raises(ValueError, match=r"expected \(samples,\)"):
        session.append_audio(np.zeros((2, 3, 100), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        session.append_audio(np.full(100, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="32768"):  # int16 values in a float array: never scaled
        session.append_audio(np.full(100, 12000.0, dtype=np.float32))
    with pytest.raises(ValueError, match="no audio"):
        session.finish_input()
    session.append_audio(_speechlike(0.5, loud_start=True))
    session.finish_input()
    with pytest.raises(RuntimeError, match="turn is over"):
        session.append_audio(np.zeros(10, dtype=np.float32))
    other = OmniSession(model, processor)
    other.close()
    assert other.cache is None
    with pytest.raises(RuntimeError, match="turn is over"):
        other.append_audio(np.zeros(10, dtype=np.float32))


def test_live_video_with_its_sound_equals_one_shot_prefill(tiny_omni):
    from omni_hf.processing.media import VideoClip

    model, processor = tiny_omni
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (9, 56, 84, 3), dtype=np.uint8)  # 4.5 s at 2 fps; odd: the last frame is repeated
    wave = _speechlike(4.3, loud_start=True, seed=2)
    session = OmniSession(model, processor, video_fps=2.0)
    for i in range(9):  # frames and sound arrive together, in real time order
        session.append_video_frames(frames[i : i + 1])
        session.append_audio(wave[i * 8000 : (i + 1) * 8000])
    prefilled = session.cache.get_seq_length()
    prompt = session.finish_input("Describe it.")
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": VideoClip(frames=frames, fps=2.0, audio=wave)},
                {"type": "text", "text": "Describe it."},
            ],
        }
    ]
    one = processor.apply_chat_template(
        conversation,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        use_audio_in_video=True,
    )
    assert torch.equal(prompt["input_ids"], one["input_ids"])
    assert torch.equal(prompt["video_grid_thw"], one["video_grid_thw"])
    positions, _ = model.thinker.get_rope_index(
        one["input_ids"],
        None,
        None,
        one["video_grid_thw"],
        one["feature_attention_mask"],
        None,
        one["video_second_per_grid"],
        True,
    )
    assert torch.equal(prompt["position_ids"], positions)
    # The first 2 s chunk (video then audio) was prefilled before the turn ended.
    first_chunk = int((one["input_ids"][0, :prefilled] == model.thinker.config.audio_token_id).sum())
    assert first_chunk == 50
    with torch.no_grad():
        expected = model.thinker(**one, use_audio_in_video=True).logits[0, -1]
        past = session.cache.get_seq_length()
        got = model.thinker(
            input_ids=prompt["input_ids"][:, past:],
            position_ids=prompt["position_ids"][..., past:],
            cache=session.cache,
        ).logits[0, -1]
    assert expected.abs().max() > 1e-2 and (got - expected).abs().max() <= 1e-4
    # And the streamed reply (Talker TMRoPE from the interleaved layout) is the one-shot prompt's.
    greedy = dict(thinker_max_new_tokens=4, thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=30)
    again = OmniSession(model, processor, video_fps=2.0)
    again.append_video_frames(frames)
    again.append_audio(wave)
    streamed = list(again.stream("Describe it.", **greedy))[-1]
    expected_stats = list(model.stream(**one, use_audio_in_video=True, **greedy))[-1]
    assert streamed.token_ids == expected_stats.token_ids
    assert streamed.speech_code_ids == expected_stats.speech_code_ids and len(streamed.speech_code_ids) == 30
    with pytest.raises(ValueError, match="audio only"):
        OmniSession(model, processor).append_video_frames(frames[:2])

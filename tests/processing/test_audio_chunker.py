"""The 2 s chunker of live audio: complete encoder chunks as samples arrive, exactly the streaming log-mel
features of the same packets, cut where `OmniSession` cuts them."""

import numpy as np

from omni_hf.processing.streaming_log_mel import AudioChunker, StreamingLogMel, encoder_chunk_frames
from omni_hf.testing.media import make_waveform


def test_chunk_frames_follow_the_encoder_window():
    assert encoder_chunk_frames(100) == 200 and encoder_chunk_frames(25) == 100 and encoder_chunk_frames(4) == 8


def _packets(audio, seed=0):
    rng, start = np.random.default_rng(seed), 0
    while start < audio.size:
        size = int(rng.integers(1, 4000))
        yield audio[start : start + size]
        start += size


def test_chunks_are_the_streamed_features_cut_every_two_seconds(processor):
    extractor = processor.feature_extractor
    audio = make_waveform(5.3, 16000)
    chunker, mel = AudioChunker(extractor, n_window=100), StreamingLogMel(extractor)
    chunks, frames, completed_at = [], [], []
    for packet in _packets(audio):
        new = chunker.push(packet)
        chunks += new
        frames.append(mel.push(packet))
        completed_at += [sum(f.shape[1] for f in frames)] * len(new)
    tail = chunker.finish()
    frames.append(mel.finish())
    assert [c.shape[1] for c in chunks] == [200, 200] and tail.shape[1] == 130  # 5.3 s: 530 frames of 10 ms
    assert chunker.frames == 530 and chunker.samples == audio.size
    # each chunk is returned by the packet that completes it (a packet is at most 25 frames)
    assert all(200 * (i + 1) <= at < 200 * (i + 1) + 26 for i, at in enumerate(completed_at))
    np.testing.assert_array_equal(np.concatenate([*chunks, tail], axis=1), np.concatenate(frames, axis=1))
    assert AudioChunker(extractor, n_window=100).finish().shape[1] == 0  # nothing pushed: an empty tail

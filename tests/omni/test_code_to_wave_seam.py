"""The code-to-wave seam: a second, trivial stage (each code → a fixed 20 ms kernel, scaled by a per-speaker gain)
assigned with one line (`model.token2wav = stage`) runs through `generate`, `stream`, a session and the server's
engine unchanged, and each returns exactly what the stage makes of the reply's codes."""

import copy
import queue

import pytest
import torch
from torch import nn

from omni_hf.omni.events import AudioChunk, StreamStats
from omni_hf.token2wav import CodeToWave, CodeToWaveStream

HOP = 480  # samples per code at 24 kHz (50 codes per second)
GREEDY = dict(thinker_max_new_tokens=6, thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=30)
PROMPT = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10]])


class FixedKernelStream(CodeToWaveStream):
    """Every code added becomes its kernel at the next `decode_ready`; nothing to wait for."""

    def __init__(self, stage: "FixedKernelCodeToWave", gain: torch.Tensor):
        self.stage, self.gain = stage, gain
        self.pending: list[int] = []
        self.ended = self.flushed = False

    def add(self, codes):
        self.pending += torch.as_tensor(codes).reshape(-1).tolist()

    def end(self):
        self.ended = True

    def decode_ready(self):
        if self.cancelled or not self.pending:
            self.flushed = self.ended
            return []
        codes, self.pending = self.pending, []
        self.flushed = self.ended
        return [self.stage.waveform(torch.tensor(codes), self.gain)]

    @property
    def done(self):
        return self.flushed or self.cancelled


class FixedKernelCodeToWave(nn.Module, CodeToWave):
    """A code-to-wave stage with conditioning of its own kind (a gain, not a reference mel)."""

    def __init__(self, num_codes: int = 8193):
        super().__init__()
        t = torch.arange(HOP) / 24000
        frequencies = 100 + 3 * torch.arange(num_codes, dtype=torch.float32)
        self.register_buffer("kernels", torch.sin(2 * torch.pi * frequencies[:, None] * t) * 0.1)
        self.streams_decoded = 0

    @property
    def device(self):
        return self.kernels.device

    def speaker_conditioning(self, speaker):
        return 1.0 + speaker.bos_token_id % 7 / 10  # any object the stage likes

    def waveform(self, codes: torch.Tensor, gain) -> torch.Tensor:
        return (self.kernels[codes.long()] * gain).reshape(-1)

    def open_stream(self, conditioning, window=None, generator=None, stage_context=None, batch_key=None, **options):
        return FixedKernelStream(self, conditioning)

    def decode_streams(self, streams, **batching):
        self.streams_decoded += len(streams)
        return super().decode_streams(streams)


@pytest.fixture(scope="module")
def seam_model(tiny_omni):
    model, processor = tiny_omni
    model = copy.copy(model)  # the shared model keeps its DiT pipeline
    model._modules = dict(model._modules)
    model.token2wav = FixedKernelCodeToWave()  # the one registration line
    return model, processor


def _expected(model, codes, speaker="Chelsie"):
    stage = model.token2wav
    return stage.waveform(torch.tensor(codes), stage.speaker_conditioning(model.speakers[speaker]))


def test_generate_uses_the_stage(seam_model):
    model, _ = seam_model
    sequences, waveform = model.generate(PROMPT, **GREEDY)
    stats = list(model.stream(PROMPT, **GREEDY))[-1]
    assert stats.speech_code_ids and waveform.numel() == HOP * len(stats.speech_code_ids)
    assert torch.equal(waveform, _expected(model, stats.speech_code_ids))


def test_stream_and_session_use_the_stage(seam_model):
    from omni_hf import OmniSession

    model, processor = seam_model
    events = list(model.stream(PROMPT, speaker="Ethan", **GREEDY))
    stats = events[-1]
    audio = torch.cat([torch.from_numpy(e.audio) for e in events if isinstance(e, AudioChunk)])
    assert torch.equal(audio, _expected(model, stats.speech_code_ids, "Ethan"))

    session = OmniSession(model, processor)
    t = torch.arange(24000) / 16000
    session.append_audio((0.3 * torch.sin(2 * torch.pi * 200 * t)).numpy())  # 1.5 s of a 200 Hz tone at 16 kHz
    events = list(session.stream("Hi", **GREEDY))
    assert isinstance(events[-1], StreamStats) and events[-1].speech_codes > 0
    audio = torch.cat([torch.from_numpy(e.audio) for e in events if isinstance(e, AudioChunk)])
    assert torch.equal(audio, _expected(model, events[-1].speech_code_ids))


def test_server_engine_uses_the_stage(seam_model):
    from omni_hf.serving.scheduler import BatchScheduler, ReplyRequest

    model, processor = seam_model
    engine = BatchScheduler(model, processor, max_active=4)
    try:
        outboxes = []
        for speaker in ("Chelsie", "Ethan"):
            box: queue.SimpleQueue = queue.SimpleQueue()
            request = ReplyRequest({"input_ids": PROMPT}, speaker=speaker, max_new_tokens=6, talker_max_new_tokens=30)
            engine.submit(request, box.put)
            outboxes.append((speaker, box))
        for speaker, box in outboxes:
            events = []
            while not isinstance(event := box.get(timeout=300), (StreamStats, Exception)):
                events.append(event)
            assert isinstance(event, StreamStats), event
            audio = torch.cat([torch.from_numpy(e.audio) for e in events if isinstance(e, AudioChunk)])
            assert torch.equal(audio, _expected(model, event.speech_code_ids, speaker))
        assert model.token2wav.streams_decoded > 0
    finally:
        engine.shutdown()


def test_a_stage_without_the_interface_is_refused(seam_model):
    model, _ = seam_model
    with pytest.raises(TypeError, match="code-to-wave stage"):
        model.token2wav = nn.Linear(2, 2)

"""The batching engine without HTTP: batched decode steps equal single-request decoding; replies submitted together
are batched in every stage and each equals `model.stream`; per-request voice adapters in one mixed batch; slots,
cancellation and a failing request."""

import threading

import numpy as np
import pytest
import torch

from omni_hf.omni import AudioChunk, StreamStats, TextDelta
from omni_hf.serving import BatchScheduler, ReplyRequest, ServerBusy
from omni_hf.serving.batching import BatchableDecoder, batched_step
from omni_hf.serving.scheduler import SERVING_WINDOW
from omni_hf.thinker.modeling_thinker import OmniThinkerOutput

PROMPTS = [
    torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10]]),
    torch.tensor([[1001, 15, 16, 1002, 1001, 19]]),
    torch.tensor([[1001, *range(20, 40), 1002, 1001, 41]]),
]


class Collector:
    def __init__(self):
        self.events, self.done = [], threading.Event()

    def __call__(self, event):
        self.events.append(event)
        if not isinstance(event, TextDelta | AudioChunk):
            self.done.set()

    def result(self):
        assert self.done.wait(300)
        last = self.events[-1]
        assert isinstance(last, StreamStats), last
        audio = [e.audio for e in self.events if isinstance(e, AudioChunk)]
        return last, (np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32))


def _reference(model, prompt, speaker, tokens=10, voice=None):
    kwargs = dict(thinker_max_new_tokens=tokens, thinker_do_sample=False, talker_do_sample=False)
    if speaker is None:
        events = list(model.stream(prompt, return_audio=False, **kwargs))
        return events[-1].token_ids, [], np.zeros(0)
    events = list(
        model.stream(
            prompt,
            speaker=speaker,
            talker_max_new_tokens=80,
            generator=torch.Generator().manual_seed(0),
            window=SERVING_WINDOW,
            voice=voice,
            **kwargs,
        )
    )
    audio = np.concatenate([e.audio for e in events if isinstance(e, AudioChunk)])
    return events[-1].token_ids, events[-1].speech_code_ids, audio


def _request(prompt, speaker, tokens=10, **kwargs):
    return ReplyRequest(
        {"input_ids": prompt}, speaker=speaker, max_new_tokens=tokens, talker_max_new_tokens=80, seed=0, **kwargs
    )


def test_batched_decode_steps_equal_generate(tiny_served):
    model, _ = tiny_served
    expected = [
        model.thinker.generate(input_ids=p, max_new_tokens=8, do_sample=False)[0, p.shape[1] :].tolist()
        for p in PROMPTS
    ]
    decoders = [BatchableDecoder.start(model.thinker, input_ids=p, max_new_tokens=8, do_sample=False) for p in PROMPTS]
    got = [[int(d.step())] for d in decoders]
    while not all(d.finished for d in decoders):
        active = [d for d in decoders if not d.finished]
        for d, token in zip(active, batched_step(model.thinker, active, OmniThinkerOutput)):
            got[decoders.index(d)].append(int(token))
    assert got == expected
    with pytest.raises(ValueError, match="prefill"):
        fresh = BatchableDecoder.start(model.thinker, input_ids=PROMPTS[0], max_new_tokens=2)
        batched_step(model.thinker, [fresh], OmniThinkerOutput)


def test_replies_submitted_together_are_batched_and_equal_model_stream(tiny_served):
    model, processor = tiny_served
    engine = BatchScheduler(model, processor, max_active=4)
    try:
        cases = [(PROMPTS[0], "Chelsie"), (PROMPTS[1], "Ethan"), (PROMPTS[2], None)]
        collectors = [Collector() for _ in cases]
        for (prompt, speaker), collector in zip(cases, collectors):
            engine.submit(_request(prompt, speaker), collector)
        for (prompt, speaker), collector in zip(cases, collectors):
            stats, audio = collector.result()
            tokens, codes, expected = _reference(model, prompt, speaker)
            assert stats.token_ids == tokens and stats.speech_code_ids == codes
            assert audio.shape == expected.shape and (audio.size == 0 or np.abs(audio - expected).max() <= 1e-5)
            assert "".join(e.text for e in collector.events if isinstance(e, TextDelta)) == processor.decode(
                tokens, skip_special_tokens=True
            )
        assert max(engine.batch_sizes["thinker"]) == 3
        assert max(engine.batch_sizes["talker"]) == 2 and max(engine.batch_sizes["dit"]) == 2
        assert engine.active == 0
    finally:
        engine.shutdown()


def test_voice_adapters_per_request_in_one_batch(tiny_served):
    pytest.importorskip("peft")
    model, processor = tiny_served
    model.voice_adapters.add("bright")
    model.voice_adapters.peft.eval()  # a fresh adapter is left in training mode; per-row adapters need eval mode
    try:
        torch.manual_seed(1)
        for name, param in model.voice_adapters.peft.named_parameters():
            if "lora_B" in name:
                param.data.normal_(0, 0.2)
        engine = BatchScheduler(model, processor)
        try:
            collectors = [Collector(), Collector()]
            engine.submit(_request(PROMPTS[0], "Chelsie", voice_adapter="bright"), collectors[0])
            engine.submit(_request(PROMPTS[0], "Chelsie"), collectors[1])
            (bright, _), (base, _) = (c.result() for c in collectors)
        finally:
            engine.shutdown()
        assert max(engine.batch_sizes["talker"]) == 2  # both voices in one Talker batch
        assert bright.speech_code_ids == _reference(model, PROMPTS[0], "Chelsie", voice="bright")[1]
        assert base.speech_code_ids == _reference(model, PROMPTS[0], "Chelsie")[1]
        assert bright.speech_code_ids != base.speech_code_ids
    finally:
        model.voice_adapters.unload()


def test_slots_cancel_and_a_failing_request(tiny_served):
    model, processor = tiny_served
    engine = BatchScheduler(model, processor, max_active=2)
    try:
        long = [Collector(), Collector()]
        jobs = [engine.submit(_request(PROMPTS[0], "Chelsie", tokens=20), c) for c in long]
        with pytest.raises(ServerBusy):
            engine.submit(_request(PROMPTS[1], None), Collector())
        jobs[0].cancel()
        bad = Collector()
        while True:  # the cancelled slot frees within a tick or two
            try:
                engine.submit(ReplyRequest({"input_ids": torch.zeros(2, 3, dtype=torch.long)}), bad)
                break
            except ServerBusy:
                threading.Event().wait(0.01)
        assert bad.done.wait(60) and isinstance(bad.events[-1], ValueError)
        stats, audio = long[1].result()  # the other reply is unaffected
        assert stats.token_ids == _reference(model, PROMPTS[0], "Chelsie", tokens=20)[0]
        assert not long[0].done.is_set()  # a cancelled job sends nothing more
        assert engine.active == 0
    finally:
        engine.shutdown()

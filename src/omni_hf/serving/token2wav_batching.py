"""Streaming token2wav for many replies at once: equal-length DiT windows and vocoder windows run batched.

Each reply keeps its own `Token2WavStream` state (codes, noise drawn block by block from its own generator, window
schedule, vocoder context), so its windows are exactly those of its single-request stream. Only the compute is
shared: the DiT ODE of every reply's next window is solved in one batch per window length (and DiT voice adapter),
and the vocoder windows of equal length are vocoded in one batch. Batched float sums can differ from a batch of one
in the last bits; the test bounds the difference.
"""

from dataclasses import dataclass, replace

import torch

from ..token2wav.streaming import Token2WavStream, VocoderStream


class PlannedVocoderStream(VocoderStream):
    """`VocoderStream` split in two: `plan` appends mel and says which window to vocode, `commit` takes its audio."""

    def plan(self, mel: torch.Tensor | None, final: bool = False):
        """→ `(window (1, mel_dim, frames), (start, end))` to vocode, or None when no sample is final yet."""
        if mel is not None and mel.shape[-1]:
            self._mel = mel if self._mel is None else torch.cat([self._mel, mel], dim=-1)
        known = self.frames
        end = known if final else known - self.context
        if self._mel is None or end <= self._emitted:
            return None
        start = max(self._offset, self._emitted - self.context)
        stop = min(known, end + self.context)
        return self._mel[..., start - self._offset : stop - self._offset], (start, end)

    def commit(self, span: tuple[int, int], audio: torch.Tensor) -> torch.Tensor:
        """`audio` `(samples,)`: the vocoder output of the planned window → the new final samples."""
        start, end = span
        samples = audio[(self._emitted - start) * self.hop : (end - start) * self.hop].float()
        self._emitted = end
        keep_from = max(self._offset, end - self.context)
        self._mel = self._mel[..., keep_from - self._offset :]
        self._offset = keep_from
        return samples


@dataclass
class DiTWindow:
    """One reply's next DiT window: solve `noise` `(1, frames, mel_dim)` under `conditioning`, keep `own`."""

    stream: "BatchedToken2WavStream"
    size: int
    start: int
    own: tuple[int, int]
    conditioning: object
    noise: torch.Tensor


class BatchedToken2WavStream(Token2WavStream):
    """A reply's token2wav state whose windows are decoded by `decode_together` (with other replies' windows).

    `add(codes)` appends speech codes, `end()` says no more will come; `dit_adapter` is the reply's DiT voice.
    """

    def __init__(self, *args, dit_adapter: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.vocoder = PlannedVocoderStream(self.pipeline.vocoder, self.vocoder.context)
        self.dit_adapter = dit_adapter
        self.ended = False
        self.flushed = False
        self.waited = 0  # ticks the ready window has been held back for a partner

    def add(self, codes: torch.Tensor) -> None:
        codes = torch.as_tensor(codes).reshape(-1).to(self.device)
        if codes.numel():
            self.pipeline.dit.check_codes(codes.unsqueeze(0))
            self._codes = torch.cat([self._codes, codes.long()])

    def end(self) -> None:
        self.ended = True

    def upcoming(self) -> tuple[int, int] | None:
        """`(window frames, codes still missing)` of the next chunk's window; None when none is left."""
        block, w = self.block_size, self.window
        if self.cancelled or self._next_block * block >= self.frames and self.ended:
            return None
        size = w.chunk_size(self._chunk)
        needed = (self._next_block + size + w.future_blocks) * block
        start = max(0, (self._next_block - w.past_blocks) * block)
        if self.ended:
            return min(needed, self.frames) - start, 0
        return needed - start, max(0, -(-(needed - self.frames) // self.repeats))

    @torch.no_grad()
    def next_window(self) -> DiTWindow | None:
        """The next chunk's DiT window if its look-ahead codes exist (or the stream has ended)."""
        block, w = self.block_size, self.window
        if self.cancelled or self._next_block * block >= self.frames:
            return None
        size = w.chunk_size(self._chunk)
        if self.frames < (self._next_block + size + w.future_blocks) * block and not self.ended:
            return None
        conditioning, noise, start, own = self.window_inputs(self._next_block, size)
        return DiTWindow(self, size, start, own, conditioning, noise)

    def take_mel(self, window: DiTWindow, sample: torch.Tensor):
        """Accept the solved window `(1, frames, mel_dim)`; returns the vocoder plan of the new mel (or None)."""
        self._next_block += window.size
        self._chunk += 1
        mel = sample[:, window.own[0] - window.start : window.own[1] - window.start].transpose(1, 2)
        return self.vocoder.plan(mel)

    def final_plan(self):
        """After the last window: the vocoder plan of the tail (once)."""
        if not self.ended or self.flushed or self.cancelled or self._next_block * self.block_size < self.frames:
            return None
        self.flushed = True
        return self.vocoder.plan(None, final=True)

    @property
    def done(self) -> bool:
        return self.flushed or self.cancelled


def _merge(conditionings: list) -> object:
    """One `DiTConditioning` for several windows of equal length (conditional rows first, then unconditional)."""
    first = conditionings[0]
    if len(conditionings) == 1:
        return first
    halves = 2 if first.guidance else 1

    def rows(name):
        parts = [getattr(c, name).chunk(halves) for c in conditionings]
        return torch.cat([part[h] for h in range(halves) for part in parts])

    merged = {name: rows(name) for name in ("code_embeds", "speaker_features", "xvector", "condition_hidden")}
    return replace(first, **merged, batch_size=len(conditionings))


@torch.no_grad()
def _held_back(streams: list[BatchedToken2WavStream], max_wait: int) -> set[int]:
    """Streams whose ready window waits (at most `max_wait` ticks in all) for another stream's window of the same
    length that is a few codes away: once aligned, replies of the same pace keep sharing DiT batches."""
    shapes = [s.upcoming() for s in streams]
    held = set()
    for i, shape in enumerate(shapes):
        if shape is None or shape[1] > 0 or streams[i].ended:
            continue
        partner = any(
            other is not None and j != i and other[0] == shape[0] and 0 < other[1] <= max_wait - streams[i].waited
            for j, other in enumerate(shapes)
        )
        if partner:
            held.add(i)
            streams[i].waited += 1
        else:
            streams[i].waited = 0
    return held


def decode_together(
    streams: list[BatchedToken2WavStream], use_dit, dit_batches: list | None = None, max_wait: int = 0
) -> dict:
    """Decode every window that is ready in `streams` (batched DiT, then batched vocoder); returns the new audio
    chunks `(samples,)` per stream index. `use_dit(name)` is a context manager selecting a DiT voice adapter; the
    size of each DiT batch is appended to `dit_batches`. A ready window may wait up to `max_wait` calls for a
    same-length window of another stream (see `_held_back`)."""
    audio: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(streams))}
    held = _held_back(streams, max_wait) if max_wait > 0 and len(streams) > 1 else set()
    while True:
        windows = {i: w for i, s in enumerate(streams) if i not in held and (w := s.next_window()) is not None}
        plans = {}
        groups: dict[tuple, list[int]] = {}
        for i, window in windows.items():
            groups.setdefault((window.noise.shape[1], window.stream.dit_adapter), []).append(i)
        for (_, adapter), members in groups.items():
            first = streams[members[0]]
            if dit_batches is not None:
                dit_batches.append(len(members))
            with use_dit(adapter):
                sample = first.pipeline.solve(
                    torch.cat([windows[i].noise for i in members]),
                    _merge([windows[i].conditioning for i in members]),
                    first.scheduler,
                    first.steps,
                    first.guidance_scale,
                )
            for row, i in enumerate(members):
                plans[i] = streams[i].take_mel(windows[i], sample[row : row + 1])
        for i, stream in enumerate(streams):
            if i not in windows and (plan := stream.final_plan()) is not None:
                plans[i] = plan
        _vocode(streams, {i: p for i, p in plans.items() if p is not None}, audio)
        if not windows:
            return audio


def _vocode(streams, plans: dict, audio: dict) -> None:
    groups: dict[int, list[int]] = {}
    for i, (window, _) in plans.items():
        groups.setdefault(window.shape[-1], []).append(i)
    for members in groups.values():
        vocoder = streams[members[0]].vocoder.vocoder
        batch = torch.cat([plans[i][0] for i in members]).to(vocoder.dtype)
        output = vocoder(batch)
        for row, i in enumerate(members):
            samples = streams[i].vocoder.commit(plans[i][1], output[row])
            if samples.numel():
                audio[i].append(samples)


__all__ = ["BatchedToken2WavStream", "DiTWindow", "PlannedVocoderStream", "decode_together"]

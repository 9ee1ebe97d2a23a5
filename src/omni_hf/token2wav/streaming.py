"""Streaming token2wav: speech codes arrive a few at a time, waveform chunks leave as soon as they are final.

Why the DiT is decoded in windows: every DiT evaluation lets a block see one block ahead and two behind, so over the
36 evaluations of the ODE a block of the *global* solution depends on codes 36 blocks (8.6 s) ahead; no streaming
decoder can reproduce it before the talker has finished. Like Qwen's own streaming token2wav, a chunk of blocks is
solved with a window of `past_blocks` behind and `future_blocks` ahead (the DiT's per-evaluation reach) and only the
chunk's own frames are kept. The windows depend only on block indices, never on how the codes arrived, so the
concatenated stream equals the offline windowed decode (`OmniToken2WavPipeline(..., window=...)`) on the same codes
and noise, and equals the global decode whenever the window spans the whole utterance.

The vocoder is exact: BigVGAN is convolutional with a finite receptive field (`BigVGANVocoder.receptive_field`), so
each chunk is vocoded with that much real mel context on both sides and only its middle is kept; the stream is the
full-utterance vocoding cut into pieces, with no seam to click.
"""

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch

from .bigvgan import BigVGANVocoder
from .code_to_wave import CodeToWaveStream


@dataclass(frozen=True)
class StreamingWindow:
    """Chunking of the streaming DiT decode (frames are grouped in DiT blocks of `block_size`, 24 = 0.24 s).

    Args:
        chunk_blocks: blocks per chunk, in order; the last value repeats. Small first chunks give early audio,
            larger later ones cost less (each chunk also recomputes its `past_blocks + future_blocks` context).
            A first chunk of 2 blocks is the smallest that sounds at once: the vocoder emits a frame only when its
            receptive field (39 frames of the official BigVGAN) follows it, and 1 block is 24 frames.
        past_blocks: context blocks before the chunk (official: 2, the DiT's look-back reach per evaluation).
        future_blocks: look-ahead blocks after the chunk (official: 1); a chunk is decoded once their codes exist.
    """

    chunk_blocks: tuple[int, ...] = (2, 4, 8, 16, 32)
    past_blocks: int = 2
    future_blocks: int = 1

    def __post_init__(self):
        if not self.chunk_blocks or any(int(n) < 1 for n in self.chunk_blocks):
            raise ValueError(f"chunk_blocks must be positive block counts, got {self.chunk_blocks}")
        if self.past_blocks < 0 or self.future_blocks < 0:
            raise ValueError(
                f"past_blocks and future_blocks must be >= 0, got {self.past_blocks}, {self.future_blocks}"
            )

    def chunk_size(self, index: int) -> int:
        return int(self.chunk_blocks[min(index, len(self.chunk_blocks) - 1)])

    def window_blocks(self, total_blocks: int) -> int:
        """DiT blocks solved (own + context) to decode `total_blocks` blocks with this chunking."""
        solved, start, index = 0, 0, 0
        while start < total_blocks:
            size = min(self.chunk_size(index), total_blocks - start)
            solved += min(start + size + self.future_blocks, total_blocks) - max(0, start - self.past_blocks)
            start, index = start + size, index + 1
        return solved

    @classmethod
    def plan(
        cls,
        seconds_per_block: float,
        dit_seconds_per_block: float,
        block_seconds: float = 0.24,
        past_blocks: int = 2,
        future_blocks: int = 1,
        safety: float = 0.7,
        max_blocks: int = 32,
        horizon_blocks: int = 125,
    ) -> "StreamingWindow":
        """The chunking that starts audio earliest without the player starving, from measured stage speeds.

        The stages run one after the other, so between two chunks the stream spends `n * seconds_per_block`
        (Thinker + Talker + vocoder for the chunk's codes) plus `(n + past + future) * dit_seconds_per_block`
        (the DiT over the chunk's window) for a chunk of `n` blocks. After the first chunk each chunk is as large as
        the audio already queued allows (using only a `safety` fraction of it, for timing noise), capped at
        `max_blocks`; the first chunk is the smallest for which that never drops below one block over
        `horizon_blocks` (125 = 30 s; the whole reply when production is slower than real time).
        """
        if seconds_per_block < 0 or dit_seconds_per_block < 0 or not 0 < safety <= 1:
            raise ValueError(
                f"plan() needs non-negative stage costs and 0 < safety <= 1, got {seconds_per_block}, "
                f"{dit_seconds_per_block}, {safety}"
            )
        per_block = seconds_per_block + dit_seconds_per_block
        overhead = (past_blocks + future_blocks) * dit_seconds_per_block
        for first in range(1, max_blocks + 1):
            chunks, queued, done = [first], first * block_seconds, first
            while done < horizon_blocks:
                size = min(max_blocks, int((safety * queued - overhead) / max(per_block, 1e-9)))
                if size < 1:
                    break
                chunks.append(size)
                queued += size * block_seconds - (size * per_block + overhead)
                done += size
                if size == max_blocks and max_blocks * (block_seconds - per_block) >= overhead:
                    done = horizon_blocks  # the queue no longer shrinks: the last size repeats safely
            if done >= horizon_blocks:
                return cls(tuple(_compact(chunks)), past_blocks, future_blocks)
        return cls((max_blocks,), past_blocks, future_blocks)  # slower than real time even in big chunks

    @classmethod
    def from_stage_seconds(
        cls, stage_seconds: dict, audio_seconds: float, used: "StreamingWindow | None" = None, **plan_kwargs
    ) -> "StreamingWindow":
        """`plan()` from a finished stream's `StreamStats.stage_seconds` (thinker, talker, dit, vocoder) and
        `audio_seconds`, decoded with the window `used` (default chunking if None)."""
        used = used or cls()
        block_seconds = plan_kwargs.get("block_seconds", 0.24)
        blocks = max(1, round(audio_seconds / block_seconds))
        if audio_seconds <= 0:
            raise ValueError("from_stage_seconds() needs a stream that produced audio")
        other = sum(v for k, v in stage_seconds.items() if k != "dit")
        dit = stage_seconds.get("dit", 0.0) / max(1, used.window_blocks(blocks))
        kwargs = {"past_blocks": used.past_blocks, "future_blocks": used.future_blocks, **plan_kwargs}
        return cls.plan(other / blocks, dit, **kwargs)


def _compact(chunks: list[int]) -> list[int]:
    """Drop the repeated tail (the last value repeats anyway)."""
    while len(chunks) > 1 and chunks[-1] == chunks[-2]:
        chunks.pop()
    return chunks


class VocoderStream:
    """Vocode a mel spectrogram that grows at the end, emitting each sample once its receptive field is complete.

    `push(mel)` returns the samples of every frame that has `context` frames after it; `push(..., final=True)`
    returns the rest. The concatenation equals `vocoder(full_mel)` (up to float summation order). `push` is `plan`
    (which window to vocode) then `commit` (its new samples), so several streams can share one vocoder batch.
    """

    def __init__(self, vocoder: BigVGANVocoder, context: int | None = None):
        self.vocoder = vocoder
        self.context = vocoder.receptive_field() if context is None else int(context)
        self.hop = vocoder.hop_length
        self._mel: torch.Tensor | None = None  # (1, mel_dim, kept frames)
        self._offset = 0  # absolute index of the first kept frame
        self._emitted = 0  # frames whose samples were returned

    @property
    def frames(self) -> int:
        return self._offset + (0 if self._mel is None else self._mel.shape[-1])

    @torch.no_grad()
    def push(self, mel: torch.Tensor | None, final: bool = False) -> torch.Tensor:
        """`mel` `(1, mel_dim, new_frames)` → float32 samples `(n,)` (possibly empty)."""
        plan = self.plan(mel, final)
        if plan is None:
            return torch.zeros(0)
        window, span = plan
        return self.commit(span, self.vocoder(window.to(self.vocoder.dtype))[0])

    def plan(self, mel: torch.Tensor | None, final: bool = False):
        """Append `mel`; → `(window (1, mel_dim, frames), span)` to vocode, or None when no sample is final yet."""
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
        keep_from = max(self._offset, end - self.context)  # older frames are never read again
        self._mel = self._mel[..., keep_from - self._offset :]
        self._offset = keep_from
        return samples


@dataclass
class DiTWindow:
    """One stream's next DiT problem: solve `noise` `(1, frames, mel_dim)` under `conditioning`; the chunk keeps
    frames `own` (absolute) of the window starting at frame `start`."""

    size: int
    start: int
    own: tuple[int, int]
    conditioning: object
    noise: torch.Tensor


class Token2WavStream(CodeToWaveStream):
    """Incremental code → waveform decoding with a token2wav pipeline (batch of one utterance).

    Feed codes with `push(codes)` (or `add` then `decode_ready`) as the talker produces them and call `finish()`
    at the end; both return the waveform chunks (float32 `(samples,)` tensors at 24 kHz) that became final. See the
    module docstring for why the DiT is solved in windows and why the vocoder stitching is exact. Decoding goes
    through `decode_windows` (one stream, or several batched by the server): one chunk driver for both.

    Args:
        pipeline: an [`OmniToken2WavPipeline`].
        reference_mel / speaker_embedding: the speaker (`Speaker.reference_mel` `(1, frames, 80)`, `Speaker.speaker_embedding`).
        window: [`StreamingWindow`] (default: chunks of 2, 4, 8, 16, then 32 blocks; 2 blocks back, 1 ahead).
        num_inference_steps / guidance_scale / solver / sway_coefficient: as for the pipeline call (default: the
            pipeline scheduler's).
        latents: `(1, ≥ frames, mel_dim)` initial noise (sliced per window); otherwise noise is drawn block by block
            (24 frames at a time, in order) from `generator`.
        vocoder_context: mel frames of vocoder context per side (default: the receptive field: exact stitching).
        stage_context: `stage_context(stage)` is entered around every DiT chunk (`"dit"`) and vocoder call
            (`"vocoder"`): to time the stages, or to switch a voice adapter's DiT part on for the DiT only.
        batch_key: streams share a DiT batch only with streams of the same key (e.g. their DiT voice adapter).
        keep_mel: keep each decoded chunk's mel in `mel_chunks` (for inspection and the pipeline's windowed decode;
            a reply's stream does not need them).
    """

    def __init__(
        self,
        pipeline,
        reference_mel: torch.Tensor,
        speaker_embedding: torch.Tensor,
        window: StreamingWindow | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        solver: str | None = None,
        sway_coefficient: float | None | str = "default",
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        vocoder_context: int | None = None,
        stage_context: Callable[[str], AbstractContextManager] | None = None,
        batch_key=None,
        keep_mel: bool = True,
    ):
        num_inference_steps, guidance_scale = pipeline.solve_settings(num_inference_steps, guidance_scale)
        pipeline.check_inputs(
            torch.zeros(1, 1, dtype=torch.long), reference_mel, speaker_embedding, num_inference_steps
        )
        dit = pipeline.dit
        self.pipeline = pipeline
        self.window = window or StreamingWindow()
        self.block_size = dit.config.block_size
        self.repeats = dit.config.repeats
        if self.block_size % self.repeats:
            raise ValueError(f"block_size ({self.block_size}) must be a multiple of repeats ({self.repeats})")
        self.device, self.dtype = pipeline._execution_device, dit.dtype
        self.steps, self.guidance_scale = num_inference_steps, guidance_scale
        self.scheduler = pipeline.scheduler_for(solver, sway_coefficient)
        self.reference_mel = reference_mel.to(self.device, self.dtype)[:1]
        self.speaker_embedding = speaker_embedding.to(self.device, self.dtype).reshape(1, -1)
        self.speaker_features = None  # computed with the first window, then reused
        self.generator = generator
        if latents is not None and (
            latents.dim() != 3 or latents.shape[0] != 1 or latents.shape[2] != dit.config.mel_dim
        ):
            raise ValueError(f"latents must be (1, frames, {dit.config.mel_dim}), got {tuple(latents.shape)}")
        self.latents = latents
        self._noise: list[torch.Tensor] = []  # per block, when drawn from the generator
        self.vocoder = VocoderStream(pipeline.vocoder, vocoder_context)
        self.stage_context = stage_context or (lambda stage: nullcontext())
        self.batch_key = batch_key
        self._codes = torch.zeros(0, dtype=torch.long, device=self.device)
        self._chunk = 0  # index of the next chunk to decode
        self._next_block = 0  # first block of that chunk
        self.ended = False
        self.flushed = False
        self.cancelled = False  # set from another thread to stop between chunks
        self.waited = 0  # decode calls the ready window was held back for a batch partner (`decode_windows`)
        self.keep_mel = keep_mel
        self.mel_chunks: list[torch.Tensor] = []  # (1, mel_dim, frames) per decoded chunk, when `keep_mel`

    @property
    def frames(self) -> int:
        return self._codes.numel() * self.repeats

    @property
    def done(self) -> bool:
        return self.flushed or self.cancelled

    def add(self, codes: torch.Tensor) -> None:
        """Append speech codes `(n,)` or `(1, n)` in `[0, num_embeds)` (decoded by the next `decode_ready`)."""
        if self.ended:
            raise RuntimeError("This token2wav stream is finished; start a new one")
        codes = torch.as_tensor(codes).reshape(-1).to(self.device)
        if codes.numel():
            self.pipeline.dit.check_codes(codes.unsqueeze(0))
            self._codes = torch.cat([self._codes, codes.long()])

    def end(self) -> None:
        self.ended = True

    def decode_ready(self) -> list[torch.Tensor]:
        """The chunks whose look-ahead codes exist (after `end()`: all of them, then the vocoder's tail)."""
        return decode_windows([self])[0]

    def finish(self) -> list[torch.Tensor]:
        """No more codes: decode what is left and flush the vocoder."""
        if self.ended:
            return []
        self.end()
        return self.decode_ready()

    # ---------------------------------------------------------------- the windows, for `decode_windows`
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
        """The next chunk's DiT problem if its look-ahead codes exist (or the stream has ended)."""
        block, w = self.block_size, self.window
        if self.cancelled or self._next_block * block >= self.frames:
            return None
        size = w.chunk_size(self._chunk)
        if self.frames < (self._next_block + size + w.future_blocks) * block and not self.ended:
            return None
        conditioning, noise, start, own = self.window_inputs(self._next_block, size)
        return DiTWindow(size, start, own, conditioning, noise)

    def take_window(self, window: DiTWindow, sample: torch.Tensor):
        """Accept the solved window `(1, frames, mel_dim)`; → the vocoder plan of the new mel (or None)."""
        self._next_block += window.size
        self._chunk += 1
        mel = sample[:, window.own[0] - window.start : window.own[1] - window.start].transpose(1, 2)
        if self.keep_mel:
            self.mel_chunks.append(mel)
        return self.vocoder.plan(mel)

    def final_plan(self):
        """After the last window: the vocoder plan of the tail (once; None if nothing is left)."""
        if not self.ended or self.flushed or self.cancelled or self._next_block * self.block_size < self.frames:
            return None
        self.flushed = True
        return self.vocoder.plan(None, final=True)

    def _noise_for(self, start: int, stop: int) -> torch.Tensor:
        if self.latents is not None:
            if self.latents.shape[1] < stop:
                raise ValueError(f"latents cover {self.latents.shape[1]} frames, the codes need {stop}")
            return self.latents[:, start:stop].to(self.device, self.dtype)
        mel_dim = self.pipeline.dit.config.mel_dim
        while len(self._noise) * self.block_size < stop:
            self._noise.append(
                torch.randn(
                    (1, self.block_size, mel_dim), generator=self.generator, device=self.device, dtype=self.dtype
                )
            )
        return torch.cat(self._noise, dim=1)[:, start:stop]

    @torch.no_grad()
    def window_inputs(self, first_block: int, size: int):
        """The DiT problem of a chunk: `(conditioning, noise (1, frames, mel_dim), start, (own_start, own_stop))`,
        frames `[start, start + frames)` of the window, of which the chunk keeps `[own_start, own_stop)`."""
        block, w = self.block_size, self.window
        own = (first_block * block, min((first_block + size) * block, self.frames))
        start = max(0, (first_block - w.past_blocks) * block)
        stop = min((first_block + size + w.future_blocks) * block, self.frames)
        conditioning = self.pipeline.dit.prepare_conditioning(
            self._codes[start // self.repeats : stop // self.repeats].unsqueeze(0),
            self.reference_mel,
            self.speaker_embedding,
            self.guidance_scale > 0,
            speaker_features=self.speaker_features,
        )
        self.speaker_features = conditioning.speaker_features
        return conditioning, self._noise_for(start, stop), start, own


# ---------------------------------------------------------------------------------------------------- the chunk driver
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


def _held_back(streams: list[Token2WavStream], max_wait: int) -> set[int]:
    """Streams whose ready window waits (at most `max_wait` calls in all) for another stream's window of the same
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


@torch.no_grad()
def decode_windows(
    streams: list[Token2WavStream], dit_batches: list | None = None, max_wait: int = 0
) -> list[list[torch.Tensor]]:
    """Decode every window that is ready in `streams`: the DiT solves equal-length windows of equal `batch_key` in
    one batch, the vocoder vocodes equal-length windows in one batch; → the new chunks `(samples,)` per stream.

    Each stream keeps its own state (codes, noise drawn block by block from its own generator, window schedule,
    vocoder context), so its chunks are those of the stream decoded alone (batched float sums may differ in the
    last bits). A batch runs inside its first stream's `stage_context`. The size of each DiT batch is appended to
    `dit_batches`; a ready window may wait up to `max_wait` calls for a same-length window of another stream."""
    audio: list[list[torch.Tensor]] = [[] for _ in streams]
    held = _held_back(streams, max_wait) if max_wait > 0 and len(streams) > 1 else set()
    while True:
        windows = {i: w for i, s in enumerate(streams) if i not in held and (w := s.next_window()) is not None}
        groups: dict[tuple, list[int]] = {}
        for i, window in windows.items():
            groups.setdefault((window.noise.shape[1], streams[i].batch_key), []).append(i)
        plans = {}
        for members in groups.values():
            first = streams[members[0]]
            if dit_batches is not None:
                dit_batches.append(len(members))
            with first.stage_context("dit"):
                sample = first.pipeline.solve(
                    torch.cat([windows[i].noise for i in members]),
                    _merge([windows[i].conditioning for i in members]),
                    first.scheduler,
                    first.steps,
                    first.guidance_scale,
                )
            for row, i in enumerate(members):
                plans[i] = streams[i].take_window(windows[i], sample[row : row + 1])
        for i, stream in enumerate(streams):
            if i not in windows and (plan := stream.final_plan()) is not None:
                plans[i] = plan
        _vocode(streams, {i: p for i, p in plans.items() if p is not None}, audio)
        if not windows:
            return audio


def _vocode(streams: list[Token2WavStream], plans: dict, audio: list) -> None:
    groups: dict[int, list[int]] = {}
    for i, (window, _) in plans.items():
        groups.setdefault(window.shape[-1], []).append(i)
    for members in groups.values():
        first = streams[members[0]]
        vocoder = first.vocoder.vocoder
        with first.stage_context("vocoder"):
            output = vocoder(torch.cat([plans[i][0] for i in members]).to(vocoder.dtype))
        for row, i in enumerate(members):
            samples = streams[i].vocoder.commit(plans[i][1], output[row])
            if samples.numel():
                audio[i].append(samples)


def stream_token2wav(stream: Token2WavStream, code_chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Drive a [`Token2WavStream`] from an iterable of code chunks, yielding waveform chunks as they are final."""
    for codes in code_chunks:
        yield from stream.push(codes)
    yield from stream.finish()


__all__ = ["DiTWindow", "StreamingWindow", "Token2WavStream", "VocoderStream", "decode_windows", "stream_token2wav"]

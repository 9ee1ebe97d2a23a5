"""A code-to-wave stream decoded on a background thread (`BackgroundStream` wraps any `CodeToWaveStream`).

On a background thread the DiT and the vocoder work while the Thinker and the Talker decode: a decode step is short
and spends much of its time in Python (the GIL is released inside torch kernels), so the two overlap even on few
cores, and on a GPU the CPU-side decode loop keeps feeding kernels while token2wav runs. The results are identical
either way; only the timing changes.
"""

import queue
import threading
from collections.abc import Iterator

import torch

from .code_to_wave import CodeToWaveStream

_FINISH, _STOP, _DONE = object(), object(), object()


class BackgroundStream(CodeToWaveStream):
    """`add` only queues the codes; a worker thread decodes them. Before `end()`, `decode_ready` never waits (it
    returns what the worker has finished); after it, `decode_ready` yields the rest as the worker produces it.

    An exception in the worker is raised by the next call; `close` stops the worker and joins it.
    """

    def __init__(self, stream: CodeToWaveStream):
        self.stream = stream
        self.batch_key = stream.batch_key
        self.ended = False
        self.drained = False
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="omni-hf-token2wav", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    item = self._inbox.get()
                    codes = []
                    while item is not _FINISH and item is not _STOP:
                        codes.append(item)  # take every code already queued: one DiT decision per batch
                        try:
                            item = self._inbox.get_nowait()
                        except queue.Empty:
                            item = None
                            break
                    if codes:
                        for chunk in self.stream.push(torch.cat(codes)):
                            self._outbox.put(chunk)
                    if item is _STOP:
                        return
                    if item is _FINISH:
                        for chunk in self.stream.finish():
                            self._outbox.put(chunk)
                        return
        except BaseException as error:  # surfaced in the consumer's thread
            self._error = error
        finally:
            self._outbox.put(_DONE)

    def add(self, codes: torch.Tensor) -> None:
        self._raise()
        self._inbox.put(codes.reshape(-1))

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self._inbox.put(_FINISH)

    def decode_ready(self) -> Iterator[torch.Tensor] | list[torch.Tensor]:
        return self._rest() if self.ended else self._poll()

    @property
    def done(self) -> bool:
        return self.drained or self.cancelled

    def _poll(self) -> list[torch.Tensor]:
        ready = []
        while True:
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                break
            if item is _DONE:
                self._outbox.put(_DONE)  # keep the marker for `finish`
                break
            ready.append(item)
        self._raise()
        return ready

    def _rest(self) -> Iterator[torch.Tensor]:
        """The remaining chunks, each as soon as the worker has it."""
        if self.drained:
            return
        while (item := self._outbox.get()) is not _DONE:
            yield item
        self.drained = True
        self._thread.join()
        self._raise()

    def close(self) -> None:
        """Stop after the chunk in progress and join the worker."""
        self.cancelled = True
        if self._thread.is_alive():
            self.stream.cancelled = True
            self._inbox.put(_STOP)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


__all__ = ["BackgroundStream"]

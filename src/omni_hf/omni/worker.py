"""Run a `Token2WavStream` inline or on a background thread behind one interface.

On a background thread the DiT and the vocoder work while the Thinker and the Talker decode: a decode step is short
and spends much of its time in Python (the GIL is released inside torch kernels), so the two overlap even on few
cores, and on a GPU the CPU-side decode loop keeps feeding kernels while token2wav runs. The results are identical
either way; only the timing changes.
"""

import queue
import threading
from collections.abc import Iterator

import torch

from ..token2wav.streaming import Token2WavStream

_FINISH, _STOP, _DONE = object(), object(), object()


class InlineToken2Wav:
    """`push` decodes right away; `poll` returns what became final."""

    def __init__(self, stream: Token2WavStream):
        self.stream = stream
        self._ready: list[torch.Tensor] = []

    def push(self, codes: torch.Tensor) -> None:
        self._ready += self.stream.push(codes)

    def poll(self) -> list[torch.Tensor]:
        ready, self._ready = self._ready, []
        return ready

    def finish(self) -> list[torch.Tensor]:
        return self.poll() + self.stream.finish()

    def close(self) -> None:
        self._ready = []


class BackgroundToken2Wav:
    """`push` only queues the codes; a worker thread decodes them. `poll` never waits; `finish` waits for the rest.

    An exception in the worker is raised by the next `poll`/`finish`; `close` stops the worker and joins it.
    """

    def __init__(self, stream: Token2WavStream):
        self.stream = stream
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

    def push(self, codes: torch.Tensor) -> None:
        self._raise()
        self._inbox.put(codes.reshape(-1))

    def poll(self) -> list[torch.Tensor]:
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

    def finish(self) -> Iterator[torch.Tensor]:
        """The remaining chunks, each as soon as the worker has it."""
        self._inbox.put(_FINISH)
        while (item := self._outbox.get()) is not _DONE:
            yield item
        self._thread.join()
        self._raise()

    def close(self) -> None:
        """Stop after the chunk in progress and join the worker."""
        if self._thread.is_alive():
            self.stream.cancelled = True
            self._inbox.put(_STOP)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


__all__ = ["BackgroundToken2Wav", "InlineToken2Wav"]

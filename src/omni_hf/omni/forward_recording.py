"""Record the Thinker's forwards of one reply, and only those.

The Talker reads, per reply position, the Thinker's input embedding and last hidden state. A reply records them
with a forward hook on the Thinker's decoder. Where several replies run on one thread, interleaved step by step (the
serving engine), a plain hook would also record the other replies' forwards. So each recording belongs to an owner:
the value of a context variable when it started. The engine runs each reply it steps in a context of its own
(`owned_context`), and its own batched work in another, so a recording sees its reply's forwards alone. Code that
runs a single reply (`generate`, `stream` in a plain thread) is unchanged: there the owner is None throughout.
"""

import contextlib
import contextvars
from collections.abc import Iterator

import torch

_OWNER: contextvars.ContextVar = contextvars.ContextVar("omni_hf_forward_owner", default=None)


def owned_context() -> contextvars.Context:
    """A copy of the current context with an owner of its own: run a reply's steps in it (`context.run(...)`)."""
    context = contextvars.copy_context()
    context.run(_OWNER.set, object())
    return context


@contextlib.contextmanager
def record_thinker_forwards(thinker) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Yield a list that collects `(inputs_embeds, last_hidden_state)` of every forward of `thinker.model` (the
    Thinker's decoder) made under the current owner, until the block ends."""
    track: list[tuple[torch.Tensor, torch.Tensor]] = []
    owner = _OWNER.get()

    def record(module, args, kwargs, output):
        if _OWNER.get() is owner:
            track.append((kwargs["inputs_embeds"], output.last_hidden_state))

    handle = thinker.model.register_forward_hook(record, with_kwargs=True)
    try:
        yield track
    finally:
        handle.remove()


__all__ = ["owned_context", "record_thinker_forwards"]

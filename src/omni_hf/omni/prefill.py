"""The part of a prompt already in the Thinker's KV cache (chunked prefill)."""

import torch
from transformers.cache_utils import DynamicCache


class PrefilledPrompt:
    """Prompt positions prefilled into the Thinker's cache, with what a reply needs of them.

    Attributes:
        cache: the Thinker's `DynamicCache` (None once closed).
        input_ids: `(1, n)` the ids of the prefilled positions (media placeholders for media positions).
        positions: `(3, 1, n)` their TMRoPE ids.
    """

    def __init__(self, thinker):
        self.thinker = thinker
        device = thinker.device
        self.cache = DynamicCache(config=thinker.config.text_config)
        self.input_ids = torch.zeros(1, 0, dtype=torch.long, device=device)
        self.positions = torch.zeros(3, 1, 0, dtype=torch.long, device=device)
        self._track: list[tuple[torch.Tensor, torch.Tensor]] = []  # (inputs_embeds, last hidden) per prefill

    @torch.no_grad()
    def append(self, ids: torch.Tensor, embeds: torch.Tensor, positions: torch.Tensor) -> None:
        """Prefill `ids` `(1, m)` with their embeddings `(1, m, hidden)` at TMRoPE `positions` `(3, 1, m)`."""
        embeds = embeds.to(self.thinker.dtype)
        out = self.thinker.model(inputs_embeds=embeds, position_ids=positions, cache=self.cache, use_cache=True)
        self.cache = out.cache
        self._track.append((embeds, out.last_hidden_state))
        self.input_ids = torch.cat([self.input_ids, ids], dim=1)
        self.positions = torch.cat([self.positions, positions], dim=-1)

    def track(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The Thinker track `(inputs_embeds, last_hidden_state)` `(1, n, hidden)` of the prefilled positions."""
        return torch.cat([e for e, _ in self._track], dim=1), torch.cat([h for _, h in self._track], dim=1)

    def close(self) -> None:
        """Free the cache and the track."""
        self.cache = None
        self._track.clear()


__all__ = ["PrefilledPrompt"]

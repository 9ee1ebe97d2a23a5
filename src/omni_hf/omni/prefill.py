"""The part of a prompt already in the Thinker's KV cache (chunked prefill)."""

import numpy as np
import torch
from transformers.cache_utils import DynamicCache


@torch.no_grad()
def encode_audio_chunk(thinker, features: np.ndarray) -> torch.Tensor:
    """Audio tokens `(n, hidden)` of one audio-encoder chunk of log-mel features `(mels, frames)`."""
    tensor = torch.from_numpy(features).to(thinker.device)
    return thinker.audio_tower(tensor, feature_lens=torch.tensor([features.shape[1]])).last_hidden_state


@torch.no_grad()
def forward_into_cache(thinker, cache, embeds: torch.Tensor, positions: torch.Tensor):
    """Run the Thinker's decoder over `embeds` `(1, m, hidden)` at TMRoPE `positions` `(3, 1, m)`, appending them to
    `cache`; returns `(cache, embeds, last_hidden_state)` (the Thinker track of these positions)."""
    embeds = embeds.to(thinker.dtype)
    out = thinker.model(inputs_embeds=embeds, position_ids=positions, cache=cache, use_cache=True)
    return out.cache, embeds, out.last_hidden_state


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
        self.cache, embeds, hidden = forward_into_cache(self.thinker, self.cache, embeds, positions)
        self._track.append((embeds, hidden))
        self.input_ids = torch.cat([self.input_ids, ids], dim=1)
        self.positions = torch.cat([self.positions, positions], dim=-1)

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]

    def next_position(self) -> int:
        """The TMRoPE id after every prefilled position (0 when empty)."""
        return int(self.positions.max()) + 1 if self.positions.numel() else 0

    def append_forwarded(self, ids: torch.Tensor, positions: torch.Tensor, track: list) -> None:
        """Record positions a reply's own forwards put in the cache: `ids` `(1, m)`, `positions` `(3, 1, m)` and
        their track, one `(inputs_embeds, last_hidden_state)` pair per forward."""
        self._track += track
        self.input_ids = torch.cat([self.input_ids, ids.to(self.input_ids.device)], dim=1)
        self.positions = torch.cat([self.positions, positions.to(self.positions.device)], dim=-1)
        if self.cache.get_seq_length() != self.length:
            raise RuntimeError(
                f"Internal error: cache holds {self.cache.get_seq_length()} positions, prompt {self.length}"
            )

    def truncate(self, length: int) -> None:
        """Drop every position from `length` on (cache, ids, TMRoPE ids and track)."""
        if self.cache.get_seq_length() > length:
            self.cache.crop(length - self.cache.get_seq_length())  # negative: the number of positions to drop
        self.input_ids, self.positions = self.input_ids[:, :length], self.positions[..., :length]
        kept, total = [], 0
        for embeds, hidden in self._track:
            if total >= length:
                break
            n = min(embeds.shape[1], length - total)
            kept.append((embeds[:, :n], hidden[:, :n]))
            total += n
        self._track = kept

    def track(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The Thinker track `(inputs_embeds, last_hidden_state)` `(1, n, hidden)` of the prefilled positions (None
        when nothing is prefilled)."""
        if not self._track:
            return None
        return torch.cat([e for e, _ in self._track], dim=1), torch.cat([h for _, h in self._track], dim=1)

    def close(self) -> None:
        """Free the cache and the track."""
        self.cache = None
        self._track.clear()


__all__ = ["PrefilledPrompt", "encode_audio_chunk", "forward_into_cache"]

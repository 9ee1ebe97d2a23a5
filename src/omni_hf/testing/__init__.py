"""Tiny random-weight models, tokenizers and media for tests, the demo and benchmarks (no downloads)."""

from .tiny import TINY_SPECIAL_TOKENS, TINY_TOKEN_IDS, TINY_VOCAB_SIZE, reinit_, tiny_thinker_config_dict

__all__ = ["TINY_SPECIAL_TOKENS", "TINY_TOKEN_IDS", "TINY_VOCAB_SIZE", "reinit_", "tiny_thinker_config_dict"]

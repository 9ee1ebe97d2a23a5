"""Log verbosity of the recipes: `--log_level` wins, else `TRANSFORMERS_VERBOSITY` (read by transformers itself),
else transformers' default (warning). Recipes no longer force info level."""

import os

from transformers.utils import logging

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def apply_log_level(level: str | None = None) -> str:
    """Set transformers' (and so omni_hf's) verbosity from `level` if given; returns the level in effect."""
    if level is not None:
        if level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {LOG_LEVELS}, got {level!r}")
        logging.set_verbosity(getattr(logging, level.upper()))
        return level
    env = os.environ.get("TRANSFORMERS_VERBOSITY")
    if env in LOG_LEVELS:
        logging.set_verbosity(getattr(logging, env.upper()))
        return env
    return {v: k for k, v in logging.log_levels.items()}.get(logging.get_verbosity(), "warning")


def trainer_log_level(level: str | None) -> str:
    """`TrainingArguments.log_level` for a recipe's `--log_level` ("passive" keeps what `apply_log_level` set)."""
    return level or "passive"


__all__ = ["LOG_LEVELS", "apply_log_level", "trainer_log_level"]

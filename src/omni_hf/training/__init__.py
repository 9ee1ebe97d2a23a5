"""Training support: teacher-forced Talker examples (voices, DPO, the in-context stage)."""

from .talker_data import pad_talker_examples, talker_training_example

__all__ = ["pad_talker_examples", "talker_training_example"]

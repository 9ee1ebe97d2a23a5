"""Training support: the Thinker's staged recipes (collator, freezing schedules, runner) and teacher-forced Talker
examples (voices, the in-context stage, DPO). Importing this package needs no optional dependency; TRL, PEFT and
`datasets` are imported by the functions that use them (extra "train")."""

from .collator import OmniThinkerCollator, assistant_label_mask, encode_conversation, encode_text, pack_examples
from .run import OmniStageTrainer, run_stage
from .stages import STAGES, Stage, apply_freezing, get_stage
from .talker_data import pad_talker_examples, talker_training_example
from .thinker_data import encode_rows, load_rows

__all__ = [
    "STAGES",
    "OmniStageTrainer",
    "OmniThinkerCollator",
    "Stage",
    "apply_freezing",
    "assistant_label_mask",
    "encode_conversation",
    "encode_rows",
    "encode_text",
    "get_stage",
    "load_rows",
    "pack_examples",
    "pad_talker_examples",
    "run_stage",
    "talker_training_example",
]

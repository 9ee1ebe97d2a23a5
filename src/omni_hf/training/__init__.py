"""Training support: the Thinker's staged recipes (collator, freezing schedules, runner) and teacher-forced Talker
examples (voices, the in-context stage, DPO). Importing this package needs no optional dependency; TRL, PEFT and
`datasets` are imported by the functions that use them (extra "train")."""

from .collator import OmniThinkerCollator, assistant_label_mask, encode_conversation, encode_text, pack_examples
from .run import OmniStageTrainer, run_stage
from .stages import STAGES, Stage, apply_freezing, get_stage
from .talker_data import pad_talker_examples, talker_training_example
from .thinker_data import encode_rows, load_rows

# The Talker's preference stage needs the "train" extra (trl, datasets, jiwer): imported on first use.
_LAZY = {
    "asr": ["DEFAULT_ASR_MODEL", "Transcriber", "build_transcriber"],
    "dpo": ["DataCollatorForTalkerPreference", "TalkerDPOConfig", "TalkerDPOTrainer", "evaluate_talker_speech"],
    "preference_pairs": ["build_preference_pairs", "check_pair_dataset", "load_preference_pairs", "sample_candidates"],
    "pair_sources": ["judged_pairs", "load_pairs"],
    "prosody": ["prosody_stats", "prosody_summary"],
    "realign": ["code_agreement", "realign_talker"],
    "rewards": [
        "CandidateScore",
        "PauseConfig",
        "RankingRule",
        "SpeakerSimilarity",
        "SpeechScorer",
        "detect_pauses",
        "pause_error",
        "rank_candidates",
        "word_error_rate",
    ],
}
_LAZY_NAMES = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name in _LAZY_NAMES:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    *_LAZY_NAMES,
]

"""Publishing to the Hugging Face Hub: generated cards (`model_cards/` templates) and one-commit pushes."""

from .cards import TEMPLATES, load_results, render_card, results_markdown, templates_dir
from .push import (
    PushError,
    check_repo_id,
    push_model,
    push_preference_dataset,
    push_speakers,
    push_thinker,
    push_token2wav,
    push_voice_adapter,
    resolve_token,
    upload_folder_as_commit,
)

__all__ = [
    "TEMPLATES",
    "PushError",
    "check_repo_id",
    "load_results",
    "push_model",
    "push_preference_dataset",
    "push_speakers",
    "push_thinker",
    "push_token2wav",
    "push_voice_adapter",
    "render_card",
    "resolve_token",
    "results_markdown",
    "templates_dir",
    "upload_folder_as_commit",
]

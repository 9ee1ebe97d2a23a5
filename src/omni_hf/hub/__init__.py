"""Publishing to the Hugging Face Hub through the libraries' own `push_to_hub`, with cards from `model_cards/`."""

from .cards import TEMPLATES, load_results, render_card, results_markdown, templates_dir
from .push import (
    PushError,
    check_repo_id,
    publish,
    publish_folder,
    push_card,
    push_model,
    push_preference_dataset,
    push_speakers,
    push_thinker,
    push_token2wav,
    push_voice_adapter,
    resolve_token,
)

__all__ = [
    "TEMPLATES",
    "PushError",
    "check_repo_id",
    "load_results",
    "publish",
    "publish_folder",
    "push_card",
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
]

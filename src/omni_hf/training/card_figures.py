"""The measured figures each fine-tuning artifact's card shows (only its own), and writing a card into an output
folder in place of the empty template cards PEFT and TRL leave there ("fine-tuned version of [None]")."""

from __future__ import annotations

import os
from pathlib import Path

CARD = "README.md"
# Text only the libraries' empty templates have (PEFT's "Model Card for Model ID", TRL's "[None]" base model).
TEMPLATE_MARKS = ("# Model Card for Model ID", "fine-tuned version of [None]", "[More Information Needed]")


def dpo_results(metrics: dict, prosody: dict | None = None) -> dict:
    """Talker DPO: training figures, WER / pause error / speaker similarity before and after, prosody spreads."""
    results = {"source": "recipes/talker_dpo.py"}
    training = {k: metrics[k] for k in ("pairs", "steps", "first_loss", "last_loss", "last_margin") if metrics.get(k)}
    results["Talker DPO training"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in training.items()}
    speech = {}
    for name in ("wer", "pause_error", "speaker_similarity"):
        for when in ("before", "after"):
            value = metrics.get(f"{name}_{when}")
            if isinstance(value, (int, float)):
                speech[f"{name} {when}"] = round(float(value), 4)
    if speech:
        if metrics.get("asr"):  # the figures name the recogniser that produced them
            speech["WER scored by"] = str(metrics["asr"])
        results["Speech of the held-out texts"] = speech
    for group, summary in (prosody or {}).items():
        results[f"Prosody: {group}"] = {k: round(float(v), 3) for k, v in summary.items()}
    return results


def realign_results(metrics: dict) -> dict:
    """Talker re-alignment: code agreement with the teacher (original, after the Thinker SFT, re-aligned)."""
    keys = ("agreement_original", "agreement_after_sft", "agreement_realigned")
    free = ("free_running_after_sft", "free_running_realigned")
    return {
        "source": "recipes/talker_realign.py",
        "Share of Talker codes matching the original model (teacher-forced)": {
            k.replace("agreement_", ""): round(float(metrics[k]), 4) for k in keys if k in metrics
        },
        "Share of codes matching in greedy generation": {
            k.replace("free_running_", ""): round(float(metrics[k]), 4) for k in free if k in metrics
        },
        "Training": {k: metrics[k] for k in ("prompts", "codes", "steps", "trainable_parameters") if k in metrics},
    }


def write_card(card, folder: str | os.PathLike) -> Path:
    """Write `card` (a ModelCard / DatasetCard or text) as `folder/README.md`, staged and moved into place, replacing
    whatever card PEFT or TRL wrote there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CARD + ".tmp")
    tmp.write_text(str(card))
    os.replace(tmp, folder / CARD)
    return folder / CARD


def remove_template_cards(folder: str | os.PathLike) -> list[Path]:
    """Delete the library template cards (PEFT's / TRL's `README.md` naming no base model) under `folder`."""
    removed = []
    for card in Path(folder).rglob(CARD):
        text = card.read_text(errors="replace")
        if any(mark in text for mark in TEMPLATE_MARKS):
            card.unlink()
            removed.append(card)
    return removed


__all__ = ["dpo_results", "realign_results", "remove_template_cards", "write_card"]

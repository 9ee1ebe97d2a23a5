"""Write an evaluation report: `results.json` (every item, the summary, the scorers' models), `results.md` (a
table) and `results.png` (per-item WER and the speaker-similarity histogram) when matplotlib is installed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers.utils import logging

logger = logging.get_logger(__name__)

LABELS = {
    "wer": "WER",
    "cer": "CER",
    "speaker_similarity": "speaker sim.",
    "pause_error": "pause error",
    "naturalness": "naturalness (MOS)",
}


def _number(value, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_number(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def speech_markdown(summary: dict, results: list[dict], models: dict[str, str]) -> str:
    """The summary table per system, the models used, and the errors (one line each)."""
    metrics = [m for m in LABELS if any(m in s for s in summary.values())]
    rows = [
        [system, s["items"], s["errors"], *(s.get(m, float("nan")) for m in metrics)] for system, s in summary.items()
    ]
    text = [markdown_table(["system", "items", "errors", *(LABELS[m] for m in metrics)], rows), ""]
    text += ["Scored with: " + "; ".join(f"{k}: {v}" for k, v in models.items())]
    errors = [r for r in results if "error" in r]
    if errors:
        text += ["", "Errors:"] + [f"- {r['system']} / {r['id']}: {r['error']}" for r in errors]
    return "\n".join(text) + "\n"


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def speech_figure(results: list[dict], path: Path) -> Path | None:
    """Per-item WER bars (one colour per system) and the similarity histogram; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        logger.warning("matplotlib is not installed: no figure written (pip install matplotlib)")
        return None
    scored = [r for r in results if "error" not in r]
    systems = list(dict.fromkeys(r["system"] for r in scored))
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    width = 0.8 / max(len(systems), 1)
    for k, system in enumerate(systems):
        rows = [r for r in scored if r["system"] == system]
        left.bar([i + k * width for i in range(len(rows))], [r["wer"] for r in rows], width, label=system)
        similarity = [r["speaker_similarity"] for r in rows if "speaker_similarity" in r]
        if similarity:
            right.hist(similarity, bins=10, range=(-0.2, 1.0), alpha=0.6, label=system)
    left.set(title="WER per item", xlabel="item", ylabel="WER")
    right.set(title="speaker similarity", xlabel="cosine to the reference voice", ylabel="items")
    if len(systems) > 1:
        left.legend(fontsize=7)
        right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_json(data: dict, path: Path) -> None:
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(data), indent=2, ensure_ascii=False) + "\n")


SPEECH_SECTION = "Speech quality (omni-hf eval)"


def speech_card_results(summary: dict, models: dict[str, str]) -> dict:
    """The figures a Hub card shows (`omni-hf card ... --results card.json`): each system's means, and the models
    that scored them."""
    section = {}
    for system, values in summary.items():
        for metric, label in LABELS.items():
            if isinstance(values.get(metric), float) and math.isfinite(values[metric]):
                section[f"{system}: {label}"] = round(values[metric], 4)
        section[f"{system}: items scored"] = values["items"] - values["errors"]
    section |= {f"{name} scored by": str(model) for name, model in models.items()}
    return {SPEECH_SECTION: section, "source": "omni-hf eval"}


def write_speech_report(folder, results: list[dict], summary: dict, models: dict[str, str]) -> dict[str, Path]:
    """`results.json`, `results.md`, `card.json` (for `omni-hf card --results`) and (with matplotlib) `results.png`
    in `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "results.json", "markdown": folder / "results.md", "card": folder / "card.json"}
    write_json({"models": models, "summary": summary, "items": results}, paths["json"])
    write_json(speech_card_results(summary, models), paths["card"])
    paths["markdown"].write_text(speech_markdown(summary, results, models))
    figure = speech_figure(results, folder / "results.png")
    if figure is not None:
        paths["figure"] = figure
    return paths


__all__ = [
    "SPEECH_SECTION",
    "speech_card_results",
    "markdown_table",
    "speech_figure",
    "speech_markdown",
    "write_json",
    "write_speech_report",
]

"""Model and dataset cards for everything omni_hf publishes, rendered from the Jinja templates in `model_cards/`.

Cards go through `huggingface_hub.ModelCard` / `DatasetCard.from_template`, so the YAML header is written by
`ModelCardData` / `DatasetCardData`. Measured figures come from JSON files (or dicts) of this shape, every section
optional, values numbers or short strings:

    {"source": "benchmarks/latency.py, 1x H100, bf16",
     "parity": {"thinker logits max |diff| vs transformers": 2.1e-06},
     "latency": {"time to first audio (s)": 0.41},
     "rtf": {"total": 0.35},
     "wer": {"seed-tts-eval test-en (%)": 2.3}}

Other top-level sections of the same `{name: value}` form are shown under their own name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData
from transformers.utils import logging

logger = logging.get_logger(__name__)

TEMPLATES = {
    "model": "omni_model.md.jinja",
    "thinker": "thinker.md.jinja",
    "token2wav": "token2wav.md.jinja",
    "voice": "voice_adapter.md.jinja",
    "speakers": "speakers.md.jinja",
    "dataset": "preference_dataset.md.jinja",
}
SECTION_TITLES = {
    "parity": "Parity with the transformers reference (same weights, same inputs)",
    "latency": "Latency",
    "rtf": "Real-time factor (compute time / audio duration; below 1 is faster than real time)",
    "wer": "Word error rate",
}
META_KEYS = ("source", "hardware", "date", "notes")
# Sections that concern only some artifacts (dropped from the others' cards); other sections show where given.
SECTION_KINDS = {
    "latency": {"model"},
    "rtf": {"model", "token2wav"},
    "parity": {"model", "thinker", "token2wav"},
    "wer": {"model", "voice", "speakers", "dataset"},
}
BASE_TAGS = ["omni_hf", "qwen2.5-omni"]
DEFAULT_LICENSE = "apache-2.0"
NO_RESULTS = "No measurements were given when this card was generated."
# omni_hf is not published on PyPI: the cards give the install it really has (README "Set-up"), from a checkout of its
# source at the library versions it was tested with. `train` adds PEFT/TRL/datasets (adapters, preference pairs).
INSTALL_EXTRAS = {"voice": "train", "dataset": "train"}


def install_command(kind: str) -> str:
    """The shell lines a card shows to install omni_hf for an artifact of `kind`."""
    extra = INSTALL_EXTRAS.get(kind)
    target = f'-e ".[{extra}]"' if extra else "-e ."
    return (
        "# omni_hf is not on PyPI: install it from a checkout of its source, at the tested versions\n"
        f"pip install -c requirements/lock.txt {target}"
    )


def templates_dir() -> Path:
    """The folder of card templates, `omni_hf/model_cards` (package data; in the checkout a link to the top-level
    `model_cards/`)."""
    folder = Path(__file__).resolve().parents[1] / "model_cards"
    if not (folder / TEMPLATES["model"]).is_file():
        raise FileNotFoundError(f"omni_hf's card templates are missing from {folder} (a broken install?)")
    return folder


def template_path(kind: str) -> Path:
    if kind not in TEMPLATES:
        raise ValueError(f"Unknown card kind {kind!r}: expected one of {', '.join(TEMPLATES)}")
    return templates_dir() / TEMPLATES[kind]


def load_results(sources) -> dict:
    """Merge measured figures from JSON files / dicts (a single one or a list) into `{section: {name: value}}`.

    Later sources win on the same name; `source`, `hardware`, `date` and `notes` are kept as notes.
    """
    if sources is None:
        return {}
    if isinstance(sources, (str, os.PathLike, Mapping)):
        sources = [sources]
    merged: dict = {}
    for source in sources:
        data = _read_source(source)
        for section, values in data.items():
            if section in META_KEYS:
                merged.setdefault("_meta", {})[section] = str(values)
                continue
            if not isinstance(values, Mapping) or not all(
                isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in values.values()
            ):
                raise ValueError(
                    f"Results {_describe(source)}: section {section!r} must map names to numbers or strings, "
                    f"got {values!r}"
                )
            merged.setdefault(section, {}).update(values)
    return merged


def _read_source(source) -> Mapping:
    if isinstance(source, Mapping):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"Results file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"Results file {str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"Results file {str(path)!r} must hold a JSON object of sections, got {type(data).__name__}")
    return data


def _describe(source) -> str:
    return "(dict)" if isinstance(source, Mapping) else repr(str(source))


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def results_markdown(results: Mapping) -> str:
    """The measured figures as Markdown tables (one per section), or a sentence saying there are none."""
    sections = [s for s in results if s != "_meta"]
    if not sections:
        return NO_RESULTS
    parts = []
    meta = results.get("_meta", {})
    if meta:
        parts.append("; ".join(f"{k}: {v}" for k, v in meta.items()) + ".")
    for section in sections:
        rows = "\n".join(f"| {name} | {_format_value(value)} |" for name, value in results[section].items())
        parts.append(f"### {SECTION_TITLES.get(section, section)}\n\n| Measure | Value |\n|---|---|\n{rows}")
    return "\n\n".join(parts)


def results_for(kind: str, results: Mapping) -> dict:
    """The sections of `results` that concern an artifact of `kind` (`SECTION_KINDS`)."""
    return {name: values for name, values in results.items() if kind in SECTION_KINDS.get(name, {kind})}


def _hub_id(value) -> str | None:
    """A Hub repo id usable as `base_model` (local paths are not)."""
    if not value or Path(str(value)).exists():
        return None
    return str(value)


def render_card(
    kind: str,
    repo_id: str,
    *,
    results=None,
    base_model: str | None = None,
    license: str = DEFAULT_LICENSE,
    datasets: Iterable[str] | None = None,
    tags: Iterable[str] | None = None,
    title: str | None = None,
    **details,
) -> ModelCard | DatasetCard:
    """Render the card of one artifact.

    Args:
        kind: one of `TEMPLATES` (`model`, `thinker`, `token2wav`, `voice`, `speakers`, `dataset`).
        repo_id: where the artifact lives on the Hub (used in the usage snippet).
        results: measured figures, see `load_results`.
        base_model / license / datasets / tags: card metadata (`base_model` only when it is a Hub id).
        details: template values specific to `kind` (parameter counts, speakers, snippet lengths, ...).
    """
    path = template_path(kind)
    tag_list = list(dict.fromkeys([*BASE_TAGS, *KIND_TAGS[kind], *(tags or [])]))
    base = _hub_id(base_model)
    values = {
        "repo_id": repo_id,
        "title": title or repo_id.split("/")[-1],
        "results_markdown": results_markdown(results_for(kind, load_results(results))),
        "license_note": LICENSE_NOTES.get(license, f"License: {license}."),
        "install_command": install_command(kind),
        "thinker_max_new_tokens": 128,
        "talker_max_new_tokens": 2048,
        **details,
    }
    if kind == "dataset":
        data = DatasetCardData(
            license=license,
            tags=tag_list,
            task_categories=["text-to-speech"],
            pretty_name=values["title"],
            configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
            **({"dataset_info": details.pop("dataset_info")} if details.get("dataset_info") else {}),
            **({"source_datasets": list(datasets)} if datasets else {}),
        )
        return DatasetCard.from_template(data, template_path=str(path), **values)
    data = ModelCardData(
        base_model=base,
        library_name=LIBRARY_NAMES.get(kind, "omni_hf"),
        pipeline_tag=PIPELINE_TAGS[kind],
        license=license,
        tags=tag_list,
        datasets=list(datasets) if datasets else None,
    )
    return ModelCard.from_template(data, template_path=str(path), **values)


PLACEHOLDER_REPO = re.compile(r"YOUR_USER/[\w.-]+")


def is_own_card(text: str) -> bool:
    """Whether a saved card is worth keeping on push: it has a body and states figures (not `NO_RESULTS`, the
    plain card `voice_adapters.save` writes); a user's own card counts too."""
    body = ModelCard(text).text.strip() if text.strip() else ""
    return bool(body) and NO_RESULTS not in body


def keep_card(
    text: str, kind: str, repo_id: str, *, results=None, base_model: str | None = None, license: str = DEFAULT_LICENSE
) -> ModelCard:
    """An artifact's own saved card (e.g. the DPO recipe's, with its figures and training table) made ready for
    `repo_id`: `YOUR_USER/...` placeholders become `repo_id`, `BASE_MODEL` the base model's Hub id; the metadata
    it lacks (`base_model`, `library_name`, `pipeline_tag`, `license`, the base and kind tags) is added, its own
    values win. Figures in `results` are appended under "Further measurements"."""
    card = ModelCard(text)
    base = _hub_id(base_model)
    body = PLACEHOLDER_REPO.sub(repo_id, card.text)
    if base:
        body = body.replace("BASE_MODEL", base)
    extra = results_for(kind, load_results(results))
    if any(section != "_meta" for section in extra):
        body = body.rstrip() + "\n\n## Further measurements\n\n" + results_markdown(extra) + "\n"
    data = card.data.to_dict()
    tags = list(dict.fromkeys([*(data.get("tags") or []), *BASE_TAGS, *KIND_TAGS[kind]]))
    defaults = {
        "base_model": base,
        "library_name": LIBRARY_NAMES.get(kind, "omni_hf"),
        "pipeline_tag": PIPELINE_TAGS.get(kind),
        "license": license,
    }
    data = {**{k: v for k, v in defaults.items() if v is not None}, **data, "tags": tags}
    return ModelCard(f"---\n{ModelCardData(**data).to_yaml()}\n---\n{body}")


KIND_TAGS = {
    "model": ["any-to-any", "multimodal", "speech", "streaming"],
    "thinker": ["multimodal", "audio", "vision"],
    "token2wav": ["speech", "vocoder", "flow-matching"],
    "voice": ["lora", "voice", "speech"],
    "speakers": ["speech", "voice"],
    "dataset": ["dpo", "preference", "speech"],
}
LIBRARY_NAMES = {"voice": "peft", "token2wav": "diffusers"}  # the rest: omni_hf
PIPELINE_TAGS = {
    "model": "any-to-any",
    "thinker": "any-to-any",
    "token2wav": "text-to-speech",
    "voice": "text-to-speech",
    "speakers": "text-to-speech",
}
LICENSE_NOTES = {
    "apache-2.0": "Apache-2.0, as the Qwen2.5-Omni weights (check the base model's license for its own terms).",
    "other": "See the base model's license.",
}


def count_parameters(module) -> str:
    """`1.23B` / `45.6M` / `7.8K` style count of a torch module's parameters."""
    total = sum(p.numel() for p in module.parameters())
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if total >= scale:
            return f"{total / scale:.2f}{suffix}"
    return str(total)


__all__ = [
    "SECTION_KINDS",
    "TEMPLATES",
    "count_parameters",
    "install_command",
    "is_own_card",
    "keep_card",
    "load_results",
    "render_card",
    "results_for",
    "results_markdown",
    "templates_dir",
]

"""What the Talker DPO recipe leaves next to its result: the prosody report (pitch and energy spread of chosen vs
rejected speech, and of held-out samples before vs after training) and the result's own card (title, base model,
the run's figures), with no library template cards left in the output folder."""

from __future__ import annotations

from pathlib import Path

from transformers.utils import logging

from .card_figures import dpo_results, remove_template_cards, write_card
from .pair_sources import pair_waveforms
from .prosody import prosody_summary

logger = logging.get_logger(__name__)


def pair_prosody(pairs, limit: int = 64) -> dict[str, dict]:
    """`{"chosen": summary, "rejected": summary}` of the pairs' audio (empty when they carry none)."""
    report = {}
    for side in ("chosen", "rejected"):
        waves, rate = pair_waveforms(pairs, side, limit)
        if waves:
            report[side] = prosody_summary(waves, rate)
    return report


DPO_TAGS = ["trl", "dpo"]  # the Hub's tags for models trained with TRL's DPOTrainer


def finish_dpo_outputs(trainer, pairs, saved: Path, output: Path, metrics: dict, before, after, base_model) -> dict:
    """Prosody report + the card of `saved` (adapter or full model); template cards under `output` removed.

    `before` / `after`: `evaluate_talker_speech` results (or None). Returns the prosody report."""
    from ..hub.cards import count_parameters, render_card

    prosody = pair_prosody(pairs)
    for name, result in (("before training", before), ("after training", after)):
        if result and result.get("prosody"):
            prosody[name] = result["prosody"]
    results = dpo_results(metrics, prosody)
    model = trainer.omni_model
    if model.voice_adapters.peft is not None:
        from .dpo import ADAPTER

        card = model.voice_adapters.card(
            ADAPTER, f"YOUR_USER/{trainer.adapter_name}", results=results, base_model=base_model,
            heading=f"Talker DPO adapter `{trainer.adapter_name}`", voice_name=trainer.adapter_name,
            trained_with="Talker DPO recipe (TRL's DPOTrainer, Eq. 1 of the paper, on ranked pairs)",
            tags=DPO_TAGS,
        )  # fmt: skip
    else:
        speakers = model.speakers.names()
        card = render_card(
            "model", "YOUR_USER/omni-talker-dpo", results=results, base_model=base_model,
            title="Qwen2.5-Omni with a DPO-trained Talker", speakers=speakers, speaker=speakers[0],
            thinker_parameters=count_parameters(model.thinker), talker_parameters=count_parameters(model.talker),
            token2wav_parameters="unchanged", tags=DPO_TAGS,
        )  # fmt: skip
    write_card(card, saved)
    removed = remove_template_cards(output / "checkpoints") if (output / "checkpoints").is_dir() else []
    if removed:
        logger.info(f"Removed {len(removed)} library template cards from {output / 'checkpoints'}")
    return prosody


__all__ = ["finish_dpo_outputs", "pair_prosody"]

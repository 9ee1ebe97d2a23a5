"""Talker re-alignment: after a Thinker fine-tune the Talker's codes stop matching the original model's; the recipe
(LoRA) brings them back (teacher-forced agreement, measured on the teacher's own codes), the full fine-tuning route
learns too, the adapter loads and its card is its own; bad input is refused before any training."""

import copy
import json

import pytest
import torch
import yaml

from helpers.recipes import load_recipe
from omni_hf.training.realign import (
    check_same_shape,
    code_agreement,
    load_thinker,
    realign_examples,
    realign_talker,
    teacher_targets,
)

TEXTS = ["hello world, how are you?", "the cat sat on the mat", "one two, three four", "good day to you"]


def shifted_thinker(model, scale=0.05, seed=0):
    """A stand-in for a Thinker SFT: the decoder weights moved (the hidden states the Talker reads change)."""
    torch.manual_seed(seed)
    thinker = copy.deepcopy(model.thinker)
    with torch.no_grad():
        for param in thinker.model.layers.parameters():
            param.add_(torch.randn_like(param) * scale)
    return thinker


@pytest.fixture(scope="module")
def tuned_dir(tiny_model_dir, tmp_path_factory):
    from omni_hf import OmniForConditionalGeneration

    path = tmp_path_factory.mktemp("tuned_thinker")
    shifted_thinker(OmniForConditionalGeneration.from_pretrained(tiny_model_dir).eval()).save_pretrained(path)
    return path


def test_recipe_recovers_the_teachers_codes(tiny_model_dir, tuned_dir, new_model, tmp_path):
    out = tmp_path / "realign"
    argv = ["--model", str(tiny_model_dir), "--thinker", str(tuned_dir), "--prompts", "synthetic:4"]
    argv += ["--talker_max_new_tokens", "12", "--use_peft", "--lora_r", "8", "--lora_alpha", "16", "--max_steps", "40"]
    argv += ["--learning_rate", "0.003", "--batch_size", "4", "--base_model", "Qwen/Qwen2.5-Omni-7B"]
    metrics = load_recipe("talker_realign").main([*argv, "--output_dir", str(out), "--log_level", "error"])
    assert metrics["agreement_original"] == 1.0  # the teacher's own greedy codes, teacher-forced
    assert metrics["agreement_after_sft"] < 0.2 and metrics["agreement_realigned"] > 0.6  # 0.08 -> 0.71
    assert metrics["steps"] == 40 and metrics["prompts"] == 4
    model = new_model()
    saved = out / "final" / "realigned"
    assert metrics["saved"] == str(saved) and model.voice_adapters.load(saved) == "realigned"
    card = (saved / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "Qwen/Qwen2.5-Omni-7B" and "# Re-aligned Talker adapter `realigned`" in card
    assert "Share of Talker codes matching the original model" in card and "voice recipe" not in card
    assert (
        json.loads((out / "realign_metrics.json").read_text())["agreement_realigned"] == metrics["agreement_realigned"]
    )


def test_full_fine_tuning_route(model_and_processor, new_model, tmp_path):
    model = new_model()
    _, processor = model_and_processor
    tuned = shifted_thinker(model)
    thinker_before = {k: v.clone() for k, v in tuned.state_dict().items()}
    metrics = realign_talker(
        model, processor, TEXTS[:2], tuned, tmp_path, max_new_tokens=8, max_steps=6, learning_rate=1e-3,
        batch_size=2, save_strategy="no",
    )  # fmt: skip
    assert metrics["agreement_original"] == 1.0 and metrics["agreement_realigned"] > metrics["agreement_after_sft"]
    assert model.thinker is tuned and all(torch.equal(v, thinker_before[k]) for k, v in tuned.state_dict().items())


def test_teacher_codes_and_agreement_by_hand(model_and_processor, new_model):
    model = new_model()
    _, processor = model_and_processor
    tuned = shifted_thinker(model)
    targets = teacher_targets(model, processor, TEXTS[:2], tuned, max_new_tokens=6)
    assert all(len(t["codes"]) == 6 and not t["ended"] for t in targets)  # cut at the limit: no end label
    examples = realign_examples(model, targets)
    assert all(int((e["labels"] != -100).sum()) == 6 for e in examples)
    assert code_agreement(model.talker, examples) == 1.0


def test_bad_input(model_and_processor, new_model, tmp_path, tiny_model_dir):
    model, processor = new_model(), model_and_processor[1]
    with pytest.raises(ValueError, match="not a saved model folder"):
        load_thinker(tmp_path)
    other = copy.deepcopy(model.thinker)
    other.config.text_config.hidden_size = 4096
    with pytest.raises(ValueError, match="hidden_size is 4096"):
        check_same_shape(model.thinker, other)
    with pytest.raises(ValueError, match="speaker 'Nobody'"):
        teacher_targets(model, processor, TEXTS, model.thinker, speaker="Nobody")
    with pytest.raises(SystemExit):  # argparse: --thinker is required
        load_recipe("talker_realign").main(["--model", str(tiny_model_dir), "--prompts", "synthetic:2"])

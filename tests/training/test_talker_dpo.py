"""Talker DPO on TRL: the recipe end to end through main(argv) (pairs → LoRA DPO → evaluation), resume from the last
checkpoint, TRL's log-probs equal the Talker's own, parameters that must change change and frozen ones don't, the DPO
margin grows on a toy preference; bad input."""

import json
import random
import shutil

import pytest
import torch
from datasets import Dataset

from omni_hf.training.dpo import (
    DataCollatorForTalkerPreference,
    TalkerDPOConfig,
    TalkerDPOTrainer,
    _projected_backbone,
)
from omni_hf.voices.adapters import talker_fingerprint, voice_lora_config


@pytest.fixture(scope="module")
def recipe_run(tiny_model_dir, tiny_asr_dir, tmp_path_factory, recipe):
    out = tmp_path_factory.mktemp("dpo_run")
    argv = ["--model", str(tiny_model_dir), "--asr", str(tiny_asr_dir), "--prompts", "synthetic:4"]
    argv += ["--eval_texts", "synthetic:1", "--num_candidates", "4", "--talker_max_new_tokens", "10"]
    argv += ["--token2wav_steps", "2", "--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--max_steps", "3"]
    argv += ["--learning_rate", "0.002", "--batch_size", "2", "--logging_steps", "1", "--save_steps", "2"]
    return out, argv, recipe.main([*argv, "--output_dir", str(out)])


def test_recipe_end_to_end(recipe_run, new_model):
    out, _, metrics = recipe_run
    assert metrics["steps"] == 3 and metrics["pairs"] >= 1
    assert metrics["last_loss"] < metrics["first_loss"] and metrics["last_margin"] > 0
    for key in ("wer_before", "wer_after", "pause_error_before", "pause_error_after"):
        assert isinstance(metrics[key], float)
    saved = out / "final"
    assert {"adapter_model.safetensors", "adapter_config.json", "voice.json", "README.md"} <= {
        p.name for p in saved.iterdir()
    }
    meta = json.loads((saved / "voice.json").read_text())
    assert meta["voice"] == "talker_dpo" and meta["talker"] == talker_fingerprint(new_model().talker)
    card = (saved / "README.md").read_text()  # the adapter's own card, not PEFT's / TRL's templates
    assert "2503.20215" in card and "# Talker DPO adapter `talker_dpo`" in card and "voice recipe" not in card
    assert not list((out / "checkpoints").rglob("README.md"))
    model = new_model()
    assert model.voice_adapters.load(saved) == "talker_dpo"


def test_recipe_resumes_from_last_checkpoint(recipe_run, recipe, tmp_path):
    out, argv, _ = recipe_run
    run = tmp_path / "run"
    shutil.copytree(out / "pairs", run / "pairs")
    shutil.copytree(out / "checkpoints" / "checkpoint-2", run / "checkpoints" / "checkpoint-2")
    metrics = recipe.main([*argv, "--output_dir", str(run), "--resume", "--max_steps", "4"])
    assert metrics["steps"] == 4
    state = json.loads((run / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4]  # steps 1-2 from the checkpoint


def test_recipe_bad_input(recipe_run, recipe, tmp_path):
    out, argv, _ = recipe_run
    with pytest.raises(ValueError, match="cannot be loaded"):
        recipe.main([*argv, "--output_dir", str(tmp_path / "a"), "--asr", str(tmp_path / "no-asr")])
    other = tmp_path / "other-adapter"
    shutil.copytree(out / "final", other)
    meta = json.loads((other / "voice.json").read_text())
    meta["talker"]["hidden_size"] = 4096
    (other / "voice.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="another base model"):
        recipe.main(
            [*argv, "--output_dir", str(tmp_path / "b"), "--pairs", str(out / "pairs"), "--adapter", str(other)]
        )


def _toy_pairs(model, count=6, seed=0):
    """Chosen codes from [0, 64), rejected from [4096, 4160): a preference a code rule can measure."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append(
            {
                "thinker_prompt_ids": [1001, 5, 6, 7, 8, 1002, 1001, 9 + i],
                "thinker_reply_ids": [20 + i, 30, 40],
                "speaker_bos_id": model.speakers["Chelsie"].bos_token_id,
                "chosen_codes": [rng.randrange(64) for _ in range(8)],
                "rejected_codes": [4096 + rng.randrange(64) for _ in range(8)],
            }
        )
    return Dataset.from_list(rows)


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=3, learning_rate=2e-3)
    return TalkerDPOConfig(**(base | dict(logging_steps=1, report_to=[], save_strategy="no") | kw))


def _margin(talker, ref, batch):
    """(log πθ(y_w) − log πref(y_w)) − (log πθ(y_l) − log πref(y_l)) from the Talkers' own forward (not TRL's)."""

    def logps(module):
        with torch.no_grad():
            keys = ("input_ids", "inputs_embeds", "position_ids", "attention_mask")
            logits = module(**{k: batch[k] for k in keys}).logits[:, :-1]
        labels = batch["input_ids"][:, 1:]
        token = logits.log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return (token * batch["completion_mask"][:, 1:]).sum(-1)

    ratio = logps(talker) - logps(ref)
    chosen, rejected = ratio.chunk(2)
    return float((chosen - rejected).mean())


def test_full_fine_tuning_margin_grows_and_only_the_talker_changes(new_model, tmp_path):
    model = new_model()
    pairs = _toy_pairs(model)
    thinker_before = {k: v.clone() for k, v in model.thinker.state_dict().items()}
    talker_before = {k: v.clone() for k, v in model.talker.state_dict().items()}
    trainer = TalkerDPOTrainer(model, args=_args(tmp_path), train_dataset=pairs)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(pairs))])
    # TRL's fused log-probs (through the projected backbone) equal the Talker's own forward
    keys = ("input_ids", "inputs_embeds", "position_ids", "attention_mask")
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad(), _projected_backbone([model.talker]):
        fused = model.talker(**{k: batch[k] for k in keys}, labels=labels, fused_lm_head=True).log_probs.sum(-1)
        logits = model.talker(**{k: batch[k] for k in keys}).logits[:, :-1].log_softmax(-1)
    own = (logits.gather(-1, batch["input_ids"][:, 1:, None])[..., 0] * batch["completion_mask"][:, 1:]).sum(-1)
    torch.testing.assert_close(fused, own, atol=1e-4, rtol=1e-5)
    assert _margin(model.talker, trainer.ref_model, batch) == pytest.approx(0.0, abs=1e-5)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3) and losses[-1] < losses[0]
    assert _margin(model.talker, trainer.ref_model, batch) > 0.5
    assert all(torch.equal(v, thinker_before[k]) for k, v in model.thinker.state_dict().items())
    changed = [k for k, v in model.talker.state_dict().items() if not torch.equal(v, talker_before[k])]
    assert "codec_head.weight" in changed and any("layers.0.self_attn.q_proj" in k for k in changed)
    assert all(torch.equal(v, talker_before[k]) for k, v in trainer.ref_model.state_dict().items())  # frozen ref
    assert model.talker.generation_config.eos_token_id == model.talker.config.codec_eos_token_ids or set(
        model.talker.generation_config.eos_token_id
    ) == set(model.talker.config.codec_eos_token_ids)


def test_lora_trains_only_the_adapter(new_model, tmp_path):
    model = new_model()
    pairs = _toy_pairs(model)
    base = {k: v.clone() for k, v in model.talker.state_dict().items()}
    trainer = TalkerDPOTrainer(model, args=_args(tmp_path), train_dataset=pairs, peft_config=voice_lora_config(r=4))
    adapter = {k: v.clone() for k, v in trainer.model.named_parameters() if ".default." in k}
    trainer.train()
    params = dict(trainer.model.named_parameters())
    assert any(not torch.equal(params[k], v) for k, v in adapter.items() if "lora_B" in k)
    for name, tensor in model.talker.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(tensor, base[name.replace("base_layer.", "")]), name
        elif ".ref." in name:  # TRL's frozen reference copy of the starting adapter
            assert torch.equal(tensor, adapter[f"base_model.model.{name}".replace(".ref.", ".default.")]), name
    margins = [h["rewards/margins"] for h in trainer.state.log_history if "rewards/margins" in h]
    assert margins[-1] > margins[0]


def test_trainer_bad_input(new_model, tmp_path):
    model = new_model()
    pairs = _toy_pairs(model, count=2)
    with pytest.raises(ValueError, match="missing columns \\['rejected_codes'\\]"):
        TalkerDPOTrainer(model, args=_args(tmp_path), train_dataset=pairs.remove_columns("rejected_codes"))
    with pytest.raises(ValueError, match="chosen_codes must be non-empty speech codes"):
        TalkerDPOTrainer(model, args=_args(tmp_path), train_dataset=pairs.map(lambda r: {"chosen_codes": [9000]}))
    with pytest.raises(ValueError, match="reference must be"):
        TalkerDPOConfig(output_dir=str(tmp_path), reference="none")
    with pytest.raises(ValueError, match="omni_model"):
        DataCollatorForTalkerPreference(pad_token_id=0)([{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [3]}])

"""Talker DPO (Qwen2.5-Omni paper Section 4.3, Eq. 1): build ranked pairs of the Talker's own speech, then train.

Pairs: K sampled candidates per prompt, vocoded, transcribed by an ASR model, ranked by WER then punctuation-pause
error; best vs worst. The build is saved in shards under <output_dir>/pairs and resumes; `--pairs` loads a finished
pair dataset instead. Training: TRL's DPOTrainer (sigmoid loss, β) on codec tokens conditioned on the Thinker track,
LoRA (`--use_peft`, reference = adapters disabled) or full fine-tuning (reference = frozen copy). WER and pause error
on `--eval_texts` are printed before and after.

A real checkpoint on GPUs (Whisper ranks the candidates):

    omni-hf convert Qwen/Qwen2.5-Omni-7B ./omni-7b
    accelerate launch --config_file recipes/accelerate_configs/talker_dpo_ddp.yaml recipes/talker_dpo.py \
        --config recipes/configs/talker_dpo.yaml --model ./omni-7b --prompts my_texts.txt --output_dir talker-dpo
    # FSDP / DeepSpeed ZeRO-3 (full fine-tuning): talker_dpo_fsdp.yaml / talker_dpo_deepspeed_zero3.yaml

The tiny CPU run (random model, a tiny random CTC "ASR"; a few minutes):

    python -m omni_hf.testing.demo --out demo_assets                      # demo_assets/tiny-omni
    python -m omni_hf.training.asr demo_assets/tiny-asr                   # demo_assets/tiny-asr
    python recipes/talker_dpo.py --config recipes/configs/talker_dpo_tiny.yaml

Data-parallel without GPUs (two CPU processes over gloo, as tests/training/test_distributed.py runs it):

    torchrun --nproc_per_node 2 recipes/talker_dpo.py --config recipes/configs/talker_dpo_tiny.yaml

Resume an interrupted run with `--resume` (pairs and the last checkpoint); `--push_to_hub --repo_id you/name`
uploads the result (and `--pairs_repo_id` the pair dataset).
"""

import argparse
import json
import sys
from pathlib import Path

from transformers.utils import logging

logger = logging.get_logger("omni_hf.recipes.talker_dpo")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = p.add_argument
    add("--config", help="YAML file whose keys are these options (command-line flags win)")
    add("--model", help="omni_hf model directory (see `omni-hf convert`)")
    add("--prompts", help="texts to speak: a .txt (one per line), a .jsonl (text or conversation+reply), synthetic:N")
    add("--pairs", help="a finished pair dataset (folder) to train on instead of building one")
    add("--asr", default=None, help="transformers ASR model id or path (default: openai/whisper-large-v3)")
    add("--num_candidates", type=int, default=4)
    add("--speaker", default="Chelsie")
    add("--talker_max_new_tokens", type=int, default=600)
    add("--token2wav_steps", type=int, default=10, help="ODE steps when vocoding candidates")
    add("--eval_texts", help="texts (.txt / synthetic:N) to score before and after training")
    add("--use_peft", action="store_true", help="train a LoRA adapter (else the full Talker)")
    add("--adapter", help="start from this adapter (checked against the base model)")
    add("--lora_r", type=int, default=16)
    add("--lora_alpha", type=int, default=32)
    add("--adapter_name", default="talker_dpo")
    add("--beta", type=float, default=0.1)
    add("--loss_type", default="sigmoid", help="Eq. (1) is 'sigmoid'; any TRL loss type")
    add("--max_steps", type=int, default=1000)
    add("--learning_rate", type=float, default=5e-6)
    add("--batch_size", type=int, default=2)
    add("--gradient_accumulation_steps", type=int, default=1)
    add("--logging_steps", type=int, default=10)
    add("--save_steps", type=int, default=200)
    add("--seed", type=int, default=0)
    add("--output_dir", default="talker-dpo")
    add("--overwrite", action="store_true", help="write into a non-empty output_dir")
    add("--resume", action="store_true", help="resume the pair build and training from output_dir")
    add("--push_to_hub", action="store_true")
    add("--repo_id", help="Hub repo for --push_to_hub")
    add("--pairs_repo_id", help="also push the pair dataset to this Hub dataset repo")
    from omni_hf.training.recipe_config import parse_with_config

    args = parse_with_config(p, argv, required=("model",))
    if not (args.prompts or args.pairs):
        p.error("one of --prompts / --pairs is required (directly or in --config)")
    return args


def read_texts(source: str) -> list:
    from omni_hf.training.recipe_inputs import read_jsonl, synthetic_count

    if source.startswith("synthetic:"):
        words = ["hello", "world", "the", "quick", "fox", "sat", "on", "a", "mat", "today"]
        return [
            f"{words[i % 10]} {words[(i * 3 + 1) % 10]}, {words[(i * 7 + 2) % 10]} {i}."
            for i in range(synthetic_count(source, "--prompts"))
        ]
    path = Path(source)
    if path.suffix == ".jsonl":
        return read_jsonl(path)  # a malformed line is named by file and line
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"--prompts {source}: the file has no prompts (it is empty)")
    return lines


def main(argv=None) -> dict:
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor
    from omni_hf.training.asr import build_transcriber
    from omni_hf.training.dpo import ADAPTER, TalkerDPOConfig, TalkerDPOTrainer, evaluate_talker_speech
    from omni_hf.training.preference_pairs import build_preference_pairs, load_preference_pairs
    from omni_hf.training.recipe_config import check_output_dir
    from omni_hf.voices.adapters import voice_lora_config

    args = parse_args(argv)
    output = check_output_dir(args.output_dir, args.overwrite, args.resume)
    set_seed(args.seed)
    # One process per GPU under `accelerate launch` (or per CPU process under torchrun: gloo).
    state = PartialState(cpu=not torch.cuda.is_available())
    device = state.device
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = OmniForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(device).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    processor = OmniProcessor.from_pretrained(args.model)
    vocode = {"num_inference_steps": args.token2wav_steps}
    transcriber = build_transcriber(args.asr, device=device) if (args.prompts or args.eval_texts) else None
    if args.pairs:
        pairs = load_preference_pairs(args.pairs)
    else:  # the main process builds (others then load what it saved)
        with state.main_process_first():
            pairs = build_preference_pairs(
                model, processor, read_texts(args.prompts), output / "pairs", transcriber=transcriber,
                num_candidates=args.num_candidates, speaker=args.speaker, seed=args.seed,
                talker_max_new_tokens=args.talker_max_new_tokens, token2wav_kwargs=vocode,
                resume=args.resume or not state.is_main_process,
            )  # fmt: skip
    if args.pairs_repo_id and state.is_main_process:
        pairs.push_to_hub(args.pairs_repo_id)
    evaluate = dict(transcriber=transcriber, speaker=args.speaker, seed=args.seed, token2wav_kwargs=vocode)
    evaluate["max_new_tokens"] = args.talker_max_new_tokens
    eval_texts = read_texts(args.eval_texts) if args.eval_texts else []
    before = evaluate_talker_speech(model, processor, eval_texts, **evaluate) if eval_texts else None
    if args.adapter:
        model.voices.load(args.adapter, name=ADAPTER)  # ValueError if made for another base model
    peft_config = (
        voice_lora_config(r=args.lora_r, alpha=args.lora_alpha) if args.use_peft and not args.adapter else None
    )
    config = TalkerDPOConfig(
        output_dir=str(output / "checkpoints"), beta=args.beta, loss_type=args.loss_type, max_steps=args.max_steps,
        learning_rate=args.learning_rate, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps, logging_steps=args.logging_steps,
        save_steps=args.save_steps, save_total_limit=2, seed=args.seed, report_to=[],
    )  # fmt: skip
    trainer = TalkerDPOTrainer(
        model,
        args=config,
        train_dataset=pairs,
        peft_config=peft_config,
        adapter_name=args.adapter_name,
        processor=processor,
    )
    last = config.output_dir if args.resume and any(Path(config.output_dir).glob("checkpoint-*")) else None
    result = trainer.train(resume_from_checkpoint=bool(last) or None)
    saved = trainer.save_result(output / "final")
    if trainer.is_world_process_zero():
        trainer.create_model_card(model_name=args.adapter_name)
    history = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "pairs": len(pairs), "steps": trainer.state.global_step, "train_loss": result.training_loss,
        "first_loss": history[0]["loss"] if history else None, "last_loss": history[-1]["loss"] if history else None,
        "last_margin": history[-1].get("rewards/margins") if history else None, "saved": str(saved),
    }  # fmt: skip
    if eval_texts:
        voice = ADAPTER if model.voices.peft is not None else None
        after = evaluate_talker_speech(model, processor, eval_texts, voice=voice, **evaluate)
        metrics |= {"wer_before": before["wer"], "wer_after": after["wer"]}
        metrics |= {"pause_error_before": before["pause_error"], "pause_error_after": after["pause_error"]}
    if args.push_to_hub and trainer.is_world_process_zero():
        from omni_hf.training.recipe_config import push_output

        card = Path(config.output_dir) / "README.md"  # TRL's card: the DPO run, citing the paper
        if card.is_file() and not (saved / "README.md").is_file():
            (saved / "README.md").write_text(card.read_text())
        metrics["pushed_to"] = push_output(saved, args.repo_id, "Talker DPO")
    if state.is_main_process:
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    logging.set_verbosity_info()
    sys.exit(0 if main() else 1)

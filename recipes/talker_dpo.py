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
    python tests/helpers/tiny_asr.py demo_assets/tiny-asr        # demo_assets/tiny-asr (a checkout)
    python recipes/talker_dpo.py --config recipes/configs/talker_dpo_tiny.yaml

Data-parallel without GPUs (two CPU processes over gloo, as tests/training/test_distributed.py runs it):

    torchrun --nproc_per_node 2 recipes/talker_dpo.py --config recipes/configs/talker_dpo_tiny.yaml

Every `DPOConfig` field is a flag (`--beta`, `--loss_type`, `--warmup_steps`, `--report_to`, ...). Resume an
interrupted run with `--resume` (pairs and the last checkpoint); `--push_to_hub --hub_model_id you/name` uploads the
result (and `--pairs_repo_id` the pair dataset).
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers.utils import logging

from omni_hf.training.dpo import TalkerDPOConfig
from omni_hf.training.recipe_config import OutputArguments, parse_recipe_args

logger = logging.get_logger("omni_hf.recipes.talker_dpo")

# This recipe's own defaults for DPOConfig fields (flags and --config still win).
TRAINING_DEFAULTS = {
    "output_dir": "talker-dpo",
    "max_steps": 1000,
    "per_device_train_batch_size": 2,
    "save_steps": 200,
    "save_total_limit": 2,
    "seed": 0,
}


@dataclass
class TalkerDPOArguments(OutputArguments):
    """Model, pair-building and adapter options (the training options are `TalkerDPOConfig`'s own)."""

    model: str | None = field(default=None, metadata={"help": "omni_hf model directory (see `omni-hf convert`)"})
    prompts: str | None = field(
        default=None,
        metadata={"help": "texts to speak: a .txt (one per line), a .jsonl (text or conversation+reply), synthetic:N"},
    )
    pairs: str | None = field(default=None, metadata={"help": "a finished pair dataset (folder) to train on"})
    asr: str | None = field(
        default=None, metadata={"help": "transformers ASR model id or path (default: openai/whisper-large-v3)"}
    )
    num_candidates: int = field(default=4, metadata={"help": "sampled candidates per prompt"})
    speaker: str = field(default="Chelsie", metadata={"help": "speaker the Talker speaks as"})
    talker_max_new_tokens: int = field(default=600, metadata={"help": "speech codes per candidate at most"})
    token2wav_steps: int = field(default=10, metadata={"help": "ODE steps when vocoding candidates"})
    eval_texts: str | None = field(default=None, metadata={"help": "texts (.txt / synthetic:N) scored before/after"})
    use_peft: bool = field(default=False, metadata={"help": "train a LoRA adapter (else the full Talker)"})
    adapter: str | None = field(default=None, metadata={"help": "start from this adapter (checked against the model)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    adapter_name: str = field(default="talker_dpo", metadata={"help": "voice name of the trained adapter"})
    pairs_repo_id: str | None = field(default=None, metadata={"help": "also push the pair dataset to this Hub repo"})


def parse_args(argv=None) -> tuple[TalkerDPOArguments, TalkerDPOConfig]:
    args, config = parse_recipe_args(
        (TalkerDPOArguments, TalkerDPOConfig), argv, defaults=TRAINING_DEFAULTS, required=("model",)
    )
    if not (args.prompts or args.pairs):
        raise SystemExit("one of --prompts / --pairs is required (directly or in --config)")
    return args, config


def read_texts(source: str) -> list:
    if source.startswith("synthetic:"):
        words = ["hello", "world", "the", "quick", "fox", "sat", "on", "a", "mat", "today"]
        return [
            f"{words[i % 10]} {words[(i * 3 + 1) % 10]}, {words[(i * 7 + 2) % 10]} {i}."
            for i in range(int(source[10:]))
        ]
    path = Path(source)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines] if path.suffix == ".jsonl" else lines


def main(argv=None) -> dict:
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor
    from omni_hf.training.asr import build_transcriber
    from omni_hf.training.dpo import ADAPTER, TalkerDPOTrainer, evaluate_talker_speech
    from omni_hf.training.preference_pairs import build_preference_pairs, load_preference_pairs
    from omni_hf.training.recipe_config import check_output_dir, trainer_arguments
    from omni_hf.voices.adapters import voice_lora_config

    args, training = parse_args(argv)
    output = check_output_dir(training.output_dir, args.overwrite, args.resume)
    set_seed(training.seed)
    # One process per GPU under `accelerate launch` (or per CPU process under torchrun: gloo).
    state = PartialState(cpu=not torch.cuda.is_available())
    dtype = torch.bfloat16 if state.device.type == "cuda" else torch.float32
    model = OmniForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(state.device).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    processor = OmniProcessor.from_pretrained(args.model)
    vocode = {"num_inference_steps": args.token2wav_steps}
    transcriber = build_transcriber(args.asr, device=state.device) if (args.prompts or args.eval_texts) else None
    if args.pairs:
        pairs = load_preference_pairs(args.pairs)
    else:  # the main process builds (others then load what it saved)
        with state.main_process_first():
            pairs = build_preference_pairs(
                model, processor, read_texts(args.prompts), output / "pairs", transcriber=transcriber,
                num_candidates=args.num_candidates, speaker=args.speaker, seed=training.seed,
                talker_max_new_tokens=args.talker_max_new_tokens, token2wav_kwargs=vocode,
                resume=args.resume or not state.is_main_process,
            )  # fmt: skip
    if args.pairs_repo_id and state.is_main_process:  # datasets' own push_to_hub
        pairs.push_to_hub(args.pairs_repo_id, token=training.hub_token, private=training.hub_private_repo)
    evaluate = dict(transcriber=transcriber, speaker=args.speaker, seed=training.seed, token2wav_kwargs=vocode)
    evaluate["max_new_tokens"] = args.talker_max_new_tokens
    eval_texts = read_texts(args.eval_texts) if args.eval_texts else []
    before = evaluate_talker_speech(model, processor, eval_texts, **evaluate) if eval_texts else None
    if args.adapter:
        model.voices.load(args.adapter, name=ADAPTER)  # ValueError if made for another base model
    peft_config = (
        voice_lora_config(r=args.lora_r, alpha=args.lora_alpha) if args.use_peft and not args.adapter else None
    )
    config = trainer_arguments(training, output_dir=str(output / "checkpoints"))
    trainer = TalkerDPOTrainer(
        model, args=config, train_dataset=pairs, peft_config=peft_config, adapter_name=args.adapter_name,
        processor=processor,
    )  # fmt: skip
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
    if training.push_to_hub and trainer.is_world_process_zero():
        from omni_hf.hub import publish_folder

        card = Path(config.output_dir) / "README.md"  # TRL's card (the DPO run, citing the paper) unless one exists
        card = None if (saved / "README.md").is_file() or not card.is_file() else card.read_text()
        hub = dict(token=training.hub_token, private=training.hub_private_repo, commit_message="Talker DPO")
        info = publish_folder(saved, training.hub_model_id, card, **hub)  # the adapter or model folder, one commit
        metrics["pushed_to"] = info.commit_url
    if state.is_main_process:
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    logging.set_verbosity_info()
    sys.exit(0 if main() else 1)

"""Talker DPO (Qwen2.5-Omni paper Section 4.3, Eq. 1): build ranked pairs of the Talker's own speech, then train.

Pairs: K sampled candidates per prompt, vocoded, transcribed by an ASR model, ranked by `--rank_by` (default WER
then punctuation-pause error; `--speaker_similarity` adds the cosine of the model's own speaker embeddings); best vs
worst, kept as codes and playable audio. The build is saved in shards under <output_dir>/pairs and resumes.
`--pairs` trains from other pairs instead: a pair dataset folder, a .jsonl manifest of recordings judged by people
(`chosen_audio` / `rejected_audio`, encoded with `--speech_tokenizer`) or a Hub dataset id (format:
omni_hf/training/pair_sources.py). The prosody report (pitch and energy spread of chosen vs rejected speech, and of
the `--eval_texts` samples before vs after training) is printed at the end. Training: TRL's DPOTrainer (sigmoid loss, β) on codec tokens conditioned on the Thinker track,
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
    add("--pairs", help="pairs to train on instead of building them: a dataset folder, a .jsonl manifest, a Hub id")
    add("--pairs_split", default="train", help="split of a Hub dataset given as --pairs")
    add("--speech_tokenizer", help="OmniSpeechTokenizer folder: encodes judged recordings (manifest / Hub) to codes")
    add("--rank_by", default="wer,pause_error", help="ranking rule, e.g. 'wer,-speaker_similarity' or weights")
    add("--speaker_similarity", action="store_true", help="score speaker similarity (model's speaker encoder)")
    add("--base_model", help="Hub id of the base model for the card (default: --model when it is a Hub id)")
    add(
        "--log_level",
        choices=("debug", "info", "warning", "error", "critical"),
        help="default: TRANSFORMERS_VERBOSITY",
    )
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
    from omni_hf.training.pair_sources import read_prompts

    return read_prompts(source)


def main(argv=None) -> dict:
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor
    from omni_hf.training.asr import build_transcriber
    from omni_hf.training.dpo import ADAPTER, TalkerDPOConfig, TalkerDPOTrainer, evaluate_talker_speech
    from omni_hf.training.pair_sources import load_pairs
    from omni_hf.training.preference_pairs import build_preference_pairs
    from omni_hf.training.recipe_config import check_output_dir
    from omni_hf.training.recipe_logging import apply_log_level, trainer_log_level
    from omni_hf.training.rewards import SpeakerSimilarity, SpeechScorer
    from omni_hf.voices.adapters import voice_lora_config

    args = parse_args(argv)
    apply_log_level(args.log_level)
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
    needs_asr = bool(args.eval_texts) or (args.prompts and not args.pairs)
    transcriber = build_transcriber(args.asr, device=device) if needs_asr else None
    similarity = SpeakerSimilarity.from_model(model, args.speaker) if args.speaker_similarity else None
    scorer = SpeechScorer(transcriber, speaker_similarity=similarity) if transcriber else None
    with state.main_process_first():  # the main process builds or encodes (others then load what it saved)
        if args.pairs:
            pairs = load_pairs(
                args.pairs, model, processor, args.speech_tokenizer, args.speaker, args.pairs_split,
                save_to=None if Path(args.pairs).is_dir() else output / "pairs",
            )  # fmt: skip
        else:
            pairs = build_preference_pairs(
                model, processor, read_texts(args.prompts), output / "pairs", scorer=scorer,
                num_candidates=args.num_candidates, speaker=args.speaker, seed=args.seed,
                talker_max_new_tokens=args.talker_max_new_tokens, token2wav_kwargs=vocode,
                resume=args.resume or not state.is_main_process, rule=args.rank_by,
            )  # fmt: skip
    if args.pairs_repo_id and state.is_main_process:
        from omni_hf.hub import push_preference_dataset

        push_preference_dataset(pairs, args.pairs_repo_id, title=args.pairs_repo_id.split("/")[-1])
    evaluate = dict(scorer=scorer, speaker=args.speaker, seed=args.seed, token2wav_kwargs=vocode)
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
        log_level=trainer_log_level(args.log_level),
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
        if similarity is not None:
            metrics |= {"speaker_similarity_before": before["speaker_similarity"]}
            metrics |= {"speaker_similarity_after": after["speaker_similarity"]}
    from omni_hf.training.dpo_report import finish_dpo_outputs

    if trainer.is_world_process_zero():
        prosody = finish_dpo_outputs(
            trainer, pairs, saved, output, metrics, before, after if eval_texts else None, args.base_model or (
                args.model if "/" in args.model and not Path(args.model).exists() else None
            ),
        )  # fmt: skip
        metrics["prosody"] = prosody
        print(format_prosody(prosody))
    if args.push_to_hub and trainer.is_world_process_zero():
        from omni_hf.training.recipe_config import push_output

        metrics["pushed_to"] = push_output(saved, args.repo_id, "Talker DPO")
    if state.is_main_process:
        print(json.dumps(metrics, indent=2))
    return metrics


def format_prosody(report: dict) -> str:
    from omni_hf.training.prosody import format_prosody_report

    return format_prosody_report(report)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

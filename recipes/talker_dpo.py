"""Talker DPO (Qwen2.5-Omni paper Section 4.3, Eq. 1): build ranked pairs of the Talker's own speech, then train.

Pairs: K sampled candidates per prompt, vocoded, transcribed by an ASR model, ranked by `--rank_by` (default WER
then punctuation-pause error; `--speaker_similarity` adds the cosine of the model's own speaker embeddings); best vs
worst, kept as codes and playable audio. The build is saved in shards under <output_dir>/pairs and resumes.
`--pairs` trains from other pairs instead: a pair dataset folder, a .jsonl manifest of recordings judged by people
(`chosen_audio` / `rejected_audio`, encoded with `--speech_tokenizer`) or a Hub dataset id (format:
omni_hf/training/pair_sources.py). Training: TRL's DPOTrainer (sigmoid loss, β) on codec tokens conditioned on the
Thinker track, LoRA (`--use_peft`, reference = adapters disabled) or full fine-tuning (reference = frozen copy). WER,
pause error and the prosody report (pitch and energy spread of chosen vs rejected speech, and of the `--eval_texts`
samples before vs after training) are printed at the end. Logging follows `--log_level` or `TRANSFORMERS_VERBOSITY`.

A real checkpoint on GPUs (Whisper ranks the candidates):

    omni-hf convert Qwen/Qwen2.5-Omni-7B ./omni-7b
    accelerate launch --config_file recipes/accelerate_configs/talker_dpo_ddp.yaml recipes/talker_dpo.py \
        --config recipes/configs/talker_dpo.yaml --model ./omni-7b --prompts my_texts.txt --output_dir talker-dpo
    # FSDP / DeepSpeed ZeRO-3 (full fine-tuning): talker_dpo_fsdp.yaml / talker_dpo_deepspeed_zero3.yaml

The tiny CPU run (random model, a tiny random CTC "ASR"; a few minutes):

    python -m omni_hf.testing.demo --out demo_assets                      # demo_assets/tiny-omni
    python tests/helpers/tiny_asr.py demo_assets/tiny-asr        # demo_assets/tiny-asr (a checkout)
    python recipes/talker_dpo.py --config recipes/configs/talker_dpo_tiny.yaml

Without `--asr` the candidates are ranked by pocketsphinx (offline, `omni_hf.evaluation.asr`). Pairs whose chosen
and rejected codes are identical, or with NaN / infinite scores, are refused before training; inverted pairs
(chosen_score > rejected_score) are counted in the output (`inverted_pairs`) with a warning.

Data-parallel without GPUs (two CPU processes over gloo, as tests/training/test_distributed.py runs it):

    torchrun --nproc_per_node 2 recipes/talker_dpo.py --config recipes/configs/talker_dpo_tiny.yaml

Every `DPOConfig` field is a flag (`--beta`, `--loss_type`, `--warmup_steps`, `--report_to`, ...). Resume an
interrupted run with `--resume` (pairs and the last checkpoint); `--push_to_hub --hub_model_id you/name` uploads the
result (and `--pairs_repo_id` the pair dataset).
"""

import json
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
    pairs: str | None = field(
        default=None,
        metadata={"help": "pairs to train on instead of building them: a dataset folder, a .jsonl manifest, a Hub id"},
    )
    pairs_split: str = field(default="train", metadata={"help": "split of a Hub dataset given as --pairs"})
    speech_tokenizer: str | None = field(
        default=None, metadata={"help": "OmniSpeechTokenizer folder: encodes judged recordings (manifest / Hub)"}
    )
    rank_by: str = field(
        default="wer,pause_error", metadata={"help": "ranking rule, e.g. 'wer,-speaker_similarity' or weights"}
    )
    speaker_similarity: bool = field(
        default=False, metadata={"help": "score speaker similarity (the model's own speaker encoder)"}
    )
    base_model: str | None = field(
        default=None, metadata={"help": "Hub id of the base model for the card (default: --model if a Hub id)"}
    )
    asr: str | None = field(
        default=None,
        metadata={"help": "'pocketsphinx' (default, offline) or a transformers ASR model id or path (e.g. Whisper)"},
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
    from omni_hf.training.pair_sources import read_prompts

    return read_prompts(source)


def asr_name(transcriber) -> str | None:
    """The recogniser's name for cards: a local checkpoint by its folder name (never a path)."""
    if transcriber is None:
        return None
    return Path(transcriber.name).name if Path(transcriber.name).exists() else transcriber.name


def main(argv=None) -> dict:
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor
    from omni_hf.training.asr import build_transcriber
    from omni_hf.training.dpo import ADAPTER, TalkerDPOTrainer, check_pair_scores, evaluate_talker_speech
    from omni_hf.training.dpo_report import finish_dpo_outputs
    from omni_hf.training.pair_sources import load_pairs
    from omni_hf.training.preference_pairs import build_preference_pairs
    from omni_hf.training.prosody import format_prosody_report
    from omni_hf.training.recipe_config import check_output_dir, trainer_arguments
    from omni_hf.training.rewards import SpeakerSimilarity, SpeechScorer
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
    needs_asr = bool(args.eval_texts) or (args.prompts and not args.pairs)
    transcriber = build_transcriber(args.asr, device=state.device) if needs_asr else None
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
                num_candidates=args.num_candidates, speaker=args.speaker, seed=training.seed,
                talker_max_new_tokens=args.talker_max_new_tokens, token2wav_kwargs=vocode,
                resume=args.resume or not state.is_main_process, rule=args.rank_by,
            )  # fmt: skip
    inverted = check_pair_scores(pairs, args.pairs or "built pairs")  # identical / NaN pairs: refused here
    if args.pairs_repo_id and state.is_main_process:  # rows and card in one commit
        from omni_hf.hub import push_preference_dataset

        push_preference_dataset(
            pairs, args.pairs_repo_id, title=args.pairs_repo_id.split("/")[-1], token=training.hub_token,
            private=training.hub_private_repo,
        )  # fmt: skip
    evaluate = dict(scorer=scorer, speaker=args.speaker, seed=training.seed, token2wav_kwargs=vocode)
    evaluate["max_new_tokens"] = args.talker_max_new_tokens
    eval_texts = read_texts(args.eval_texts) if args.eval_texts else []
    before = evaluate_talker_speech(model, processor, eval_texts, **evaluate) if eval_texts else None
    if args.adapter:
        model.voice_adapters.load(args.adapter, name=ADAPTER)  # ValueError if made for another base model
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
    history = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "pairs": len(pairs), "steps": trainer.state.global_step, "train_loss": result.training_loss,
        "first_loss": history[0]["loss"] if history else None, "last_loss": history[-1]["loss"] if history else None,
        "last_margin": history[-1].get("rewards/margins") if history else None, "saved": str(saved),
        "inverted_pairs": inverted, "asr": asr_name(transcriber),
    }  # fmt: skip
    if eval_texts:
        adapter = ADAPTER if model.voice_adapters.peft is not None else None
        after = evaluate_talker_speech(model, processor, eval_texts, voice_adapter=adapter, **evaluate)
        metrics |= {"wer_before": before["wer"], "wer_after": after["wer"]}
        metrics |= {"pause_error_before": before["pause_error"], "pause_error_after": after["pause_error"]}
        if similarity is not None:
            metrics |= {"speaker_similarity_before": before["speaker_similarity"]}
            metrics |= {"speaker_similarity_after": after["speaker_similarity"]}
    if trainer.is_world_process_zero():  # the adapter's own card (metadata, figures); library template cards removed
        base = args.base_model or (args.model if "/" in args.model and not Path(args.model).exists() else None)
        after_eval = after if eval_texts else None
        metrics["prosody"] = finish_dpo_outputs(trainer, pairs, saved, output, metrics, before, after_eval, base)
        print(format_prosody_report(metrics["prosody"]))
    if training.push_to_hub and trainer.is_world_process_zero():
        from omni_hf.hub import publish_folder

        hub = dict(token=training.hub_token, private=training.hub_private_repo, commit_message="Talker DPO")
        info = publish_folder(saved, training.hub_model_id, None, **hub)  # the adapter or model folder, one commit
        metrics["pushed_to"] = info.commit_url
    if state.is_main_process:
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    from omni_hf.training.recipe_config import run_recipe

    run_recipe(main)

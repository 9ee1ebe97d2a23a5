"""DPO for the Talker on its own ranked speech (paper Section 4.3, Eq. 1), on TRL's `DPOTrainer`.

    L_DPO = -E[(x, y_w, y_l)] log σ(β log Pθ(y_w|x)/Pref(y_w|x) − β log Pθ(y_l|x)/Pref(y_l|x))

`x` is the Thinker track (prompt entries, speaker bos, reply entries), `y` the speech codes. TRL does the loss
(`loss_type="sigmoid"` is Eq. 1; every other TRL loss type stays selectable), the reference policy (adapters
disabled for PEFT, or a frozen copy), logging, checkpoints and the Hub card. What is Talker-specific:

* the dataset: pairs from `build_preference_pairs` become TRL's `prompt_ids` (the Talker's codec prompt: mask ids
  over the Thinker prompt, then pad and start) and `chosen_ids` / `rejected_ids` (codes + end token);
* `DataCollatorForTalkerPreference` adds the conditioning: `inputs_embeds` (the frozen Thinker's track, built per
  row by `talker_training_example`, so each side gets the tts-pad entries its own length needs) and TMRoPE
  `position_ids` `(3, 2B, T)`;
* TRL's fused LM head calls `model.base_model` and projects with `codec_head`; the Talker's backbone input is
  `thinker_to_talker_proj(track + codec embedding)`, so during the loss `base_model` is pointed at that projection
  followed by the decoder (`_projected_backbone`).
"""

from __future__ import annotations

import copy
import json
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from transformers.utils import logging
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from ..processing.audio import TOKEN2WAV_SAMPLING_RATE
from .preference_pairs import check_pair_dataset, encode_media_prompt, has_media, prepare_prompt, sample_candidates
from .prosody import prosody_summary
from .rewards import SpeechScorer
from .talker_data import talker_training_example, thinker_track

logger = logging.get_logger(__name__)

CONDITIONING_COLUMNS = ["thinker_prompt_ids", "thinker_reply_ids", "speaker_bos_id", "prompt", "use_audio_in_video"]
ADAPTER = "default"  # TRL's name for the trained adapter (it copies it as "ref", the reference policy)


def codec_tokenizer(talker_config):
    """A `PreTrainedTokenizerFast` over the Talker's codec vocabulary (TRL needs a processing class; pad and eos are
    the Talker's codec pad and end ids)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {f"<codec_{i}>": i for i in range(talker_config.vocab_size)}
    pad, eos = talker_config.tts_codec_pad_token_id, talker_config.codec_eos_token_ids[-1]
    backend = Tokenizer(WordLevel(vocab, unk_token=f"<codec_{pad}>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=f"<codec_{pad}>", eos_token=f"<codec_{eos}>", unk_token=f"<codec_{pad}>"
    )


class _TalkerBackbone:
    """What TRL's fused head must call as the Talker's backbone: codec embedding + Thinker track, projected, then
    the decoder. Looks the modules up on every call (FSDP / PEFT may replace them). Not a registered submodule."""

    def __init__(self, talker):
        self.talker = talker

    def __call__(self, input_ids=None, inputs_embeds=None, **kwargs):
        talker = self.talker
        hidden = inputs_embeds + talker.embed_codes(input_ids)
        return talker.model(inputs_embeds=talker.thinker_to_talker_proj(hidden), **kwargs)


@contextmanager
def _projected_backbone(talkers):
    """Point `talker.base_model` (TRL's backbone) at `_TalkerBackbone` for the duration of the loss."""
    talkers = [t for t in talkers if t is not None]
    for talker in talkers:
        talker.__dict__["_dpo_backbone"] = _TalkerBackbone(talker)
        talker.__dict__["base_model_prefix"] = "_dpo_backbone"
    try:
        yield
    finally:
        for talker in talkers:
            talker.__dict__.pop("_dpo_backbone", None)
            talker.__dict__.pop("base_model_prefix", None)


@dataclass
class DataCollatorForTalkerPreference(DataCollatorForPreference):
    """TRL's preference collator (codec `input_ids`, `attention_mask`, `completion_mask`, chosen rows then rejected
    rows) plus the Talker's conditioning: `inputs_embeds` `(2B, T, width)` and `position_ids` `(3, 2B, T)`.

    `omni_model`: the `OmniForConditionalGeneration` whose frozen Thinker makes the track (tensors come back on its
    device, so keep `dataloader_num_workers=0` and `dataloader_pin_memory=False`). `processor`: an `OmniProcessor`,
    needed for pairs whose conversation has media (re-read from the paths stored in the `prompt` column)."""

    omni_model: Any = None
    processor: Any = None

    def _media(self, example: dict, index: int) -> dict | None:
        conversation = json.loads(example["prompt"]) if isinstance(example.get("prompt"), str) else None
        if not conversation or not has_media(conversation):
            return None
        if self.processor is None:
            raise ValueError(f"row {index} has media in its conversation: give the trainer the processor")
        prompt_ids, media = encode_media_prompt(
            self.processor, conversation, bool(example.get("use_audio_in_video", False))
        )
        if prompt_ids != list(example["thinker_prompt_ids"]):
            raise ValueError(f"row {index}: its media no longer give the stored thinker_prompt_ids (files changed?)")
        return media

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.omni_model is None:
            raise ValueError("DataCollatorForTalkerPreference needs omni_model (the model whose Thinker conditions)")
        batch = super().torch_call(examples)
        length = batch["input_ids"].shape[1]
        rows = []
        prompts = [torch.tensor([e["thinker_prompt_ids"]]) for e in examples]
        replies = [torch.tensor([e["thinker_reply_ids"]]) for e in examples]
        # The frozen Thinker runs once per pair: chosen and rejected share its track.
        tracks = [
            thinker_track(self.omni_model, prompt, reply, self._media(e, i))
            for i, (e, prompt, reply) in enumerate(zip(examples, prompts, replies))
        ]
        for side in ("chosen_ids", "rejected_ids"):
            for e, prompt, reply, track in zip(examples, prompts, replies, tracks):
                codes = torch.tensor(e[side][:-1])  # without the end token
                bos = int(e["speaker_bos_id"])
                rows.append(talker_training_example(self.omni_model, prompt, reply, codes, bos, track=track))
        for i, row in enumerate(rows):
            expected = batch["input_ids"][i, : row["input_ids"].shape[1]]
            if not torch.equal(row["input_ids"][0, : expected.shape[0]].cpu(), expected):
                raise ValueError(
                    f"row {i % len(examples)}: prompt_ids/chosen_ids/rejected_ids do not match thinker_prompt_ids "
                    "and the codes (was the dataset prepared for another Talker?)"
                )

        def fit(tensor: torch.Tensor, dim: int, value) -> torch.Tensor:
            tensor = tensor.narrow(dim, 0, min(tensor.shape[dim], length))
            widths = [0, 0] * (tensor.dim() - 1 - dim % tensor.dim()) + [0, length - tensor.shape[dim]]
            return torch.nn.functional.pad(tensor, widths, value=value)

        batch["inputs_embeds"] = torch.cat([fit(r["inputs_embeds"], 1, 0.0) for r in rows])
        batch["position_ids"] = torch.cat([fit(r["position_ids"], -1, 1) for r in rows], dim=1)
        return batch


@dataclass
class TalkerDPOConfig(DPOConfig):
    """`DPOConfig` with Talker defaults: `loss_type="sigmoid"` (Eq. 1) and `beta`; no sequence truncation, no
    gradient checkpointing, no pinned memory (the collator returns device tensors); bf16 only on CUDA.

    Args:
        reference: full fine-tuning only: `"copy"` keeps a frozen copy of the Talker as reference policy,
            `"precompute"` computes reference log-probs once before training (no copy kept). With PEFT the
            reference is the base Talker with adapters disabled (or an adapter named "ref").
    """

    learning_rate: float = field(default=5e-6)
    max_length: int | None = field(default=None)
    activation_checkpointing: bool = field(
        default=False
    )  # TRL's default is on; its old name warns in transformers 5.24
    gradient_checkpointing: bool | None = field(default=None)  # deprecated alias (set from the above)
    dataloader_pin_memory: bool = field(default=False)
    reference: str = field(default="copy", metadata={"help": "'copy' or 'precompute' (full fine-tuning)"})

    def __post_init__(self):
        if self.reference not in ("copy", "precompute"):
            raise ValueError(f"reference must be 'copy' or 'precompute', got {self.reference!r}")
        if self.reference == "precompute":
            self.precompute_ref_log_probs = True
        if self.bf16 is None:
            self.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if not torch.cuda.is_available():
            self.use_cpu = True
        super().__post_init__()


class TalkerDPOTrainer(DPOTrainer):
    """DPO on the Talker of an `OmniForConditionalGeneration` from a pair dataset (`build_preference_pairs`).

    Args:
        model: the `OmniForConditionalGeneration`; only its Talker (or a LoRA adapter on it) is trained.
        peft_config: a `peft.LoraConfig` (e.g. `voice_lora_config()`): train a new LoRA adapter on the Talker (in
            `model.voice_adapters`, named "default" as TRL expects). Without it, an adapter already loaded as "default"
            (`model.voice_adapters.load(path, name="default")`, checked against this base model) is trained further;
            with no adapters loaded, the whole Talker is fine-tuned. With adapters, TRL keeps a frozen copy "ref"
            of the starting adapter as reference policy (for a new adapter that is exactly the base Talker).
        ref_model: full fine-tuning: a reference Talker (default per `args.reference`).
        adapter_name: the voice name the trained adapter is saved under (`save_result`).
        processor: the `OmniProcessor`, for pairs whose conversations have media.
    """

    _tag_names = ["trl", "dpo", "omni_hf", "qwen2.5-omni", "talker", "text-to-speech"]
    _name = "Talker DPO"
    _paper = {
        "title": "Qwen2.5-Omni Technical Report",
        "id": "2503.20215",
        "citation": textwrap.dedent("""\
            @article{xu2025qwen25omni,
                title        = {{Qwen2.5-Omni Technical Report}},
                author       = {Jin Xu and Zhifang Guo and Jinzheng He and Hangrui Hu and Ting He and Shuai Bai and Keqin Chen and Jialin Wang and Yang Fan and Kai Dang and Bin Zhang and Xiong Wang and Yunfei Chu and Junyang Lin},
                year         = 2025,
                eprint       = {arXiv:2503.20215},
            }"""),
    }

    def __init__(
        self,
        model,
        args: TalkerDPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        ref_model=None,
        peft_config=None,
        adapter_name: str = "talker_dpo",
        processor=None,
        callbacks=None,
        optimizers=(None, None),
    ):
        if getattr(model, "talker", None) is None:
            raise ValueError("model must be an OmniForConditionalGeneration with its Talker loaded")
        args = args or TalkerDPOConfig(output_dir="talker-dpo")
        check_pair_dataset(train_dataset, "train_dataset")
        if eval_dataset is not None:
            check_pair_dataset(eval_dataset, "eval_dataset")
        self.omni_model, self.adapter_name = model, adapter_name
        model.thinker.requires_grad_(False)
        if peft_config is not None:
            if ADAPTER in model.voice_adapters:
                raise ValueError(f"an adapter named {ADAPTER!r} is loaded already: pass peft_config=None to train it")
            model.voice_adapters.add(ADAPTER, peft_config)
        if model.voice_adapters.peft is not None:
            if ADAPTER not in model.voice_adapters:
                raise ValueError(
                    f"adapters {model.voice_adapters.names} are loaded but none is named {ADAPTER!r}: load the adapter to "
                    f"train with model.voice_adapters.load(path, name={ADAPTER!r}) (TRL trains 'default', copies it as 'ref')"
                )
            policy = model.voice_adapters.peft
            policy.set_adapter(ADAPTER)
            policy.peft_config[ADAPTER].inference_mode = False
            for name, param in policy.named_parameters():  # only this adapter learns
                param.requires_grad_(f".{ADAPTER}." in name)
            if ref_model is not None:
                raise ValueError("with adapters the reference is TRL's frozen copy of the adapter ('ref')")
        else:
            policy = model.talker
            policy.requires_grad_(True)
            if ref_model is None and not args.precompute_ref_log_probs:
                ref_model = copy.deepcopy(model.talker).requires_grad_(False).eval()
        talker = model.talker
        self._special_tokens = (
            copy.deepcopy(talker.generation_config),
            {k: getattr(talker.config, k, None) for k in ("eos_token_id", "pad_token_id", "bos_token_id")},
        )
        tokenizer = codec_tokenizer(model.talker.config)
        collator = DataCollatorForTalkerPreference(
            pad_token_id=tokenizer.pad_token_id,
            max_length=args.max_length,
            truncation_mode=args.truncation_mode,
            pad_to_multiple_of=args.pad_to_multiple_of,
            omni_model=model,
            processor=processor,
        )
        super().__init__(
            model=policy,
            ref_model=ref_model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        self._restore_special_tokens()

    def _restore_special_tokens(self) -> None:
        """Trainer aligns the model's special ids with the codec tokenizer (one eos); the Talker keeps its own."""
        generation, ids = self._special_tokens
        self.omni_model.talker.generation_config = copy.deepcopy(generation)
        for key, value in ids.items():
            setattr(self.omni_model.talker.config, key, value)

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:
            self._restore_special_tokens()

    # ------------------------------------------------------------------ TRL hooks
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """Pairs → TRL's `prompt_ids` (codec prompt) / `chosen_ids` / `rejected_ids` (codes + end)."""
        check_pair_dataset(dataset, dataset_name)
        config = self.omni_model.talker.config
        end, limit = config.codec_eos_token_ids[-1], config.num_speech_codes

        def to_ids(row, index):
            for side in ("chosen_codes", "rejected_codes"):
                codes = row[side]
                if not codes or min(codes) < 0 or max(codes) >= limit:
                    raise ValueError(
                        f"{dataset_name} row {index}: {side} must be non-empty speech codes in [0, {limit})"
                    )
            if len(row["thinker_reply_ids"]) < 1 or len(row["thinker_prompt_ids"]) < 1:
                raise ValueError(f"{dataset_name} row {index}: empty thinker_prompt_ids or thinker_reply_ids")
            prompt = [config.tts_codec_mask_token_id] * len(row["thinker_prompt_ids"])
            return {
                "prompt_ids": prompt + [config.tts_codec_pad_token_id, config.tts_codec_start_token_id],
                "chosen_ids": list(row["chosen_codes"]) + [end],
                "rejected_ids": list(row["rejected_codes"]) + [end],
            }

        dataset = dataset.map(to_ids, with_indices=True, desc=f"Talker codec ids for {dataset_name}")
        if args.max_length is not None:
            dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length)
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(dict.fromkeys([*self._signature_columns, *CONDITIONING_COLUMNS]))

    def _talkers(self):
        ref = None if self.ref_model is None else self.accelerator.unwrap_model(self.ref_model)
        return [self.omni_model.talker, ref]

    def _compute_loss(self, model, inputs, return_outputs):
        with _projected_backbone(self._talkers()):
            return super()._compute_loss(model, inputs, return_outputs)

    def compute_ref_log_probs(self, model, inputs):
        with _projected_backbone(self._talkers()):
            return super().compute_ref_log_probs(model, inputs)

    def create_model_card(self, *args, **kwargs):
        """No TRL template card in the checkpoints: the recipe writes the result's own card (`dpo_report`)."""
        return None

    # ------------------------------------------------------------------ results
    def save_result(self, directory: str | Path) -> Path:
        """Save what was trained: the adapter (`model.voice_adapters.save`, loadable with `model.voice_adapters.load`) or, for full
        fine-tuning, the whole model in omni_hf's layout. Under several processes only the main one writes; the
        others wait for it, and every process returns the same path."""
        saved = [Path(directory)]
        if self.is_world_process_zero():
            if self.omni_model.voice_adapters.peft is not None:
                saved[0] = self.omni_model.voice_adapters.save(ADAPTER, directory, voice_label=self.adapter_name)
            else:
                self.omni_model.save_pretrained(directory)
        if self.accelerator.num_processes > 1:
            broadcast_object_list(saved)  # waits for the main process's save
        return saved[0]


SCORE_COLUMNS = ("chosen_score", "rejected_score", "chosen_wer", "rejected_wer", "chosen_pause_error")
SCORE_COLUMNS += ("rejected_pause_error", "chosen_speaker_similarity", "rejected_speaker_similarity")


def _rows(indices: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" ... ({len(indices)} rows)" if len(indices) > limit else "")


def check_pair_scores(pairs, name: str = "pairs") -> int:
    """Refuse pairs DPO cannot learn from, before training: a row whose chosen and rejected speech codes are
    identical (its loss is log 2 whatever the model does), or a non-finite score (NaN / inf in `chosen_score`,
    `rejected_score`, the per-metric columns or the `*_scores` JSON). Warn on inverted rows (`chosen_score` above
    `rejected_score`: lower is better in the pair format) and return how many there are.

    Raises:
        ValueError: naming the rows (first five) and what is wrong with them.
    """
    columns = set(pairs.column_names)
    identical = [
        i for i, (a, b) in enumerate(zip(pairs["chosen_codes"], pairs["rejected_codes"])) if list(a) == list(b)
    ]
    if identical:
        raise ValueError(
            f"{name}: chosen and rejected speech codes are identical in row(s) {_rows(identical)}: such a pair "
            "teaches nothing (its DPO loss stays log 2); drop those rows or give two different recordings"
        )
    bad = {}
    for column in (c for c in SCORE_COLUMNS if c in columns):
        for i, value in enumerate(pairs[column]):
            if value is not None and not np.isfinite(float(value)):
                bad.setdefault(column, []).append(i)
    for column in (c for c in ("chosen_scores", "rejected_scores") if c in columns):
        for i, text in enumerate(pairs[column]):
            values = json.loads(text) if text else {}
            if any(isinstance(v, (int, float)) and not np.isfinite(v) for v in values.values()):
                bad.setdefault(column, []).append(i)
    if bad:
        where = "; ".join(f"{column} in row(s) {_rows(rows)}" for column, rows in bad.items())
        raise ValueError(f"{name}: scores must be finite numbers, got NaN or infinity: {where}")
    inverted = []
    if {"chosen_score", "rejected_score"} <= columns:
        for i, (chosen, rejected) in enumerate(zip(pairs["chosen_score"], pairs["rejected_score"])):
            if chosen is not None and rejected is not None and chosen > rejected:
                inverted.append(i)
    if inverted:
        logger.warning(
            f"{name}: {len(inverted)} of {len(pairs)} pairs are inverted (chosen_score > rejected_score, while lower is "
            f"better): row(s) {_rows(inverted)}. Check the judges' scale; training prefers 'chosen' as given."
        )
    return len(inverted)


@torch.no_grad()
def evaluate_talker_speech(
    model,
    processor,
    texts: list[str],
    transcriber=None,
    scorer=None,
    speaker: str = "Chelsie",
    voice_adapter: str | None = None,
    seed: int = 0,
    max_new_tokens: int = 600,
    token2wav_kwargs: dict | None = None,
    **sampling,
) -> dict:
    """Mean WER and punctuation-pause error of the Talker speaking `texts` (greedy unless `sampling` says
    otherwise; token2wav noise seeded), e.g. before and after DPO. Returns `wer`, `pause_error`, `per_text`,
    `prosody` (`prosody_summary` of the spoken samples: pitch and energy spread) and `speaker_similarity` (mean,
    None unless the scorer measures it)."""
    if not texts:
        raise ValueError("texts is empty: give at least one text to speak")
    scorer = scorer or SpeechScorer(transcriber)
    sampling = {"do_sample": False, **sampling}
    model_was_training = model.training
    model.eval()
    rows, waves = [], []
    for i, text in enumerate(texts):
        row = prepare_prompt(model, processor, text, i)
        torch.manual_seed(seed + i)
        (codes,) = sample_candidates(
            model,
            row["thinker_prompt_ids"],
            row["thinker_reply_ids"],
            1,
            speaker,
            voice_adapter,
            max_new_tokens,
            media=row["media"],
            **sampling,
        )
        waveform = None
        if getattr(scorer, "needs_audio", True):
            noise = torch.Generator().manual_seed(seed + i)
            with model.voice_adapters.use(voice_adapter):
                wave = model.codes_to_waveform(
                    codes, model.speakers[speaker], generator=noise, **(token2wav_kwargs or {})
                )
            waveform = wave.float().cpu().numpy()
            waves.append(waveform)
        score = scorer(row["text"], codes.tolist(), waveform, TOKEN2WAV_SAMPLING_RATE)
        rows.append({"text": row["text"], "wer": score.wer, "pause_error": score.pause_error, "codes": len(codes)})
        rows[-1]["speaker_similarity"] = score.speaker_similarity
    model.train(model_was_training)
    similarities = [r["speaker_similarity"] for r in rows if r["speaker_similarity"] is not None]
    return {
        "wer": float(np.mean([r["wer"] for r in rows])),
        "pause_error": float(np.mean([r["pause_error"] for r in rows])),
        "speaker_similarity": float(np.mean(similarities)) if similarities else None,
        "prosody": prosody_summary(waves, TOKEN2WAV_SAMPLING_RATE) if waves else None,
        "per_text": rows,
    }


__all__ = [
    "DataCollatorForTalkerPreference",
    "check_pair_scores",
    "TalkerDPOConfig",
    "TalkerDPOTrainer",
    "codec_tokenizer",
    "evaluate_talker_speech",
]

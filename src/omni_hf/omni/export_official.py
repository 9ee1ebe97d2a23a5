"""Export back: write a full model in the official `qwen2_5_omni` layout that transformers'
`Qwen2_5OmniForConditionalGeneration.from_pretrained` loads (the inverse of our official-checkpoint import).

Layout written: `config.json` (`model_type: qwen2_5_omni`, official sub-config model types, `token2wav_config` from the
pipeline's component configs), `model.safetensors` (`thinker.*`, `talker.*` as they are, the token2wav pipeline under
`token2wav.code2wav_dit_model.*` / `token2wav.code2wav_bigvgan_model.*`), `spk_dict.pt` (the official speaker format,
`{name: {"bos_token", "cond", "ref_mel"}}`: a `torch.save` file only because that is what transformers reads) and
`generation_config.json`; with a processor, the tokenizer, the chat template and the processor configs as the official
repos have them (`preprocessor_config.json`: the Whisper feature extractor and the Qwen2-VL image processor with
`processor_class: Qwen2_5OmniProcessor`; `video_preprocessor_config.json`), so `AutoProcessor.from_pretrained` gives
transformers' `Qwen2_5OmniProcessor`. Everything is written into a staging folder first and moved into place at the end.
"""

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers.utils import logging

from ..common.staged_save import staged_save
from ..token2wav.pipeline_token2wav import DIT_PREFIX, VOCODER_PREFIX
from ..voices.speakers import OFFICIAL_SPEAKERS

logger = logging.get_logger(__name__)

# Our model types → the official ones (the inverse of the translation done when loading an official config).
OFFICIAL_MODEL_TYPES = {
    "omni_hf": "qwen2_5_omni",
    "omni_hf_thinker": "qwen2_5_omni_thinker",
    "omni_hf_audio_encoder": "qwen2_5_omni_audio_encoder",
    "omni_hf_vision_encoder": "qwen2_5_omni_vision_encoder",
    "omni_hf_text": "qwen2_5_omni_text",
    "omni_hf_talker": "qwen2_5_omni_talker",
}
_DROP = ("auto_map", "architectures", "_name_or_path", "transformers_version")


def _officialize(config: dict) -> dict:
    """A config dict with official model types, recursively, without our `auto_map`."""
    out = {}
    for key, value in config.items():
        if key in _DROP:
            continue
        if isinstance(value, dict):
            value = _officialize(value)
        elif key == "model_type":
            value = OFFICIAL_MODEL_TYPES.get(value, value)
        out[key] = value
    return out


def _component_config(component, model_type: str) -> dict:
    """A Diffusers component's registered config as an official sub-config dict."""
    return {"model_type": model_type, **{k: v for k, v in component.config.items() if not k.startswith("_")}}


def official_config_dict(model) -> dict:
    """The official `qwen2_5_omni` config dict of an [`OmniForConditionalGeneration`]."""
    config = _officialize(model.config.to_dict())
    config["architectures"] = ["Qwen2_5OmniForConditionalGeneration"]
    if model.token2wav is not None:
        config["token2wav_config"] = {
            "model_type": "qwen2_5_omni_token2wav",
            "dit_config": _component_config(model.token2wav.dit, "qwen2_5_omni_dit"),
            "bigvgan_config": _component_config(model.token2wav.vocoder, "qwen2_5_omni_bigvgan"),
        }
    return config


def official_state_dict(model) -> dict[str, torch.Tensor]:
    """`thinker.*` / `talker.*` tensors as they are, token2wav's under the official `token2wav.code2wav_*` names."""
    # token2wav is a registered part (`token2wav.dit.*` / `token2wav.vocoder.*`): renamed below, not kept twice.
    tensors = {name: tensor for name, tensor in model.state_dict().items() if not name.startswith("token2wav.")}
    if model.token2wav is not None:
        for prefix, component in ((DIT_PREFIX, model.token2wav.dit), (VOCODER_PREFIX, model.token2wav.vocoder)):
            tensors.update({prefix + name: tensor for name, tensor in component.state_dict().items()})
    return {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}


def official_speakers(model) -> dict:
    """The speakers in the official `spk_dict.pt` structure."""
    return {
        name: {
            "bos_token": speaker.bos_token_id,
            "cond": speaker.speaker_embedding.clone(),
            "ref_mel": speaker.reference_mel.clone(),
        }
        for name, speaker in ((name, model.speakers[name]) for name in model.speakers.names())
    }


OFFICIAL_PROCESSOR = "Qwen2_5OmniProcessor"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
VIDEO_PREPROCESSOR_CONFIG = "video_preprocessor_config.json"


def official_processor_configs(processor) -> dict[str, dict]:
    """`{file name: dict}` of the official processor configs for an `OmniProcessor`: the feature extractor and the
    image processor in one `preprocessor_config.json` (as `Qwen/Qwen2.5-Omni-7B` has it), the video settings in
    `video_preprocessor_config.json` (transformers' `Qwen2VLVideoProcessor`)."""
    features = processor.feature_extractor.to_dict()
    image = processor.image_processor.to_dict()
    size = image.get("size") or {}
    preprocessor = {**features, **image, "processor_class": OFFICIAL_PROCESSOR}
    if "shortest_edge" in size:  # the official file also states the pixel range under its older names
        preprocessor |= {"min_pixels": size["shortest_edge"], "max_pixels": size["longest_edge"]}
    video = {
        "video_processor_type": "Qwen2VLVideoProcessor",
        "processor_class": OFFICIAL_PROCESSOR,
        "size": {"shortest_edge": processor.video_min_pixels, "longest_edge": processor.video_max_pixels},
        "min_pixels": processor.video_min_pixels,
        "max_pixels": processor.video_max_pixels,
        "fps": processor.fps,
        "min_frames": processor.video_min_frames,
        "max_frames": processor.video_max_frames,
        **{key: image[key] for key in ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")},
    }
    for config in (preprocessor, video):
        config.pop("auto_map", None)
    return {PREPROCESSOR_CONFIG: preprocessor, VIDEO_PREPROCESSOR_CONFIG: video}


def export_official(model, destination: str | os.PathLike, processor=None, overwrite: bool = False) -> Path:
    """Write `model` (an [`OmniForConditionalGeneration`]) in the official layout at `destination`.

    Args:
        processor: an `OmniProcessor` whose tokenizer files and chat template are copied and whose settings are
            written as the official processor configs (`official_processor_configs`), optional.
        overwrite: save into a non-empty `destination` (otherwise a `ValueError`, before any work): the files of an
            earlier export are replaced, every other file there (yours) is kept; nothing is deleted wholesale.
    """
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()) and not overwrite:
        raise ValueError(f"{destination} exists and is not empty: choose a new directory or pass overwrite=True")
    if model.voice_adapters.names:
        raise ValueError(
            f"Voice adapters {model.voice_adapters.names} are loaded: merge (model.voice_adapters.merge) or unload them before exporting"
        )
    # Staged (`omni_hf.common.staged_save`): written whole beside `destination`, then moved in. Over an existing
    # folder only files of ours are replaced or removed (those the previous export wrote); the user's stay.
    with staged_save(destination, part="official_export") as staging:
        (staging / "config.json").write_text(json.dumps(official_config_dict(model), indent=2, sort_keys=True) + "\n")
        save_file(official_state_dict(model), staging / "model.safetensors", metadata={"format": "pt"})
        if len(model.speakers):
            torch.save(official_speakers(model), staging / OFFICIAL_SPEAKERS)
        model.thinker.generation_config.save_pretrained(staging)
        if processor is not None:
            processor.tokenizer.save_pretrained(staging)
            if processor.chat_template:
                (staging / "chat_template.jinja").write_text(processor.chat_template)
            for name, config in official_processor_configs(processor).items():
                (staging / name).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    logger.info("Exported %s in the official qwen2_5_omni layout", destination)
    return destination


__all__ = [
    "export_official",
    "official_config_dict",
    "official_processor_configs",
    "official_speakers",
    "official_state_dict",
]

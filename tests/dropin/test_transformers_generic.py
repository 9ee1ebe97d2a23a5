"""transformers' generic model tests (`ModelTesterMixin`, vendored from the 5.24.0 sdist in `_transformers_tests/`)
run against `OmniThinkerForConditionalGeneration` through a small tester: a batch of two prompts, each with text, an
image (4x4 patches) and an audio clip (40 mel frames). Tests that do not apply are skipped with the reason below
(listed in tests/dropin/README.md)."""

import importlib.metadata
import unittest
from pathlib import Path

import pytest
import torch

from omni_hf import OmniThinkerConfig, OmniThinkerForConditionalGeneration
from omni_hf.common.tmrope import audio_token_lengths
from omni_hf.testing.tiny import TINY_TOKEN_IDS, tiny_thinker_config_dict
from omni_hf.thinker.configuration_thinker import translate_official_thinker_config

VENDORED_VERSION = (Path(__file__).parent / "_transformers_tests" / "VERSION").read_text().strip()
INSTALLED_VERSION = importlib.metadata.version("transformers")
try:
    from ._transformers_tests.test_modeling_common import ModelTesterMixin, floats_tensor
except ImportError as error:  # the vendored tests need helpers of their own transformers release
    if INSTALLED_VERSION == VENDORED_VERSION:
        raise
    pytest.skip(
        f"the vendored transformers tests are from transformers {VENDORED_VERSION} but {INSTALLED_VERSION} is "
        f"installed, which lacks what they import ({error}); run scripts/refresh_transformers_tests.py",
        allow_module_level=True,
    )

# test name prefix → why it is skipped (each is also listed in tests/dropin/README.md)
SKIPPED = {
    "test_eager_matches_sdpa_inference": "builds prompts with media placeholders but drops their pixel values / "
    "features; the Thinker refuses placeholders without media (eager vs sdpa parity is in tests/models)",
    "test_resize_tokens_embeddings": "shrinking the vocabulary below the media placeholder ids removes the "
    "placeholders while the media stay; the Thinker refuses the mismatch",
    "test_resize_embeddings_untied": "same as test_resize_tokens_embeddings (placeholder ids past the new vocabulary)",
    "test_get_audio_features_output": "expects the encoder output in transformers' Qwen2.5-Omni layout "
    "(pooler_output per clip); omni_hf returns concatenated tokens - not aligned yet",
    "test_get_image_features_output": "expects transformers' layout (pooler_output split per image, "
    "last_hidden_state in the text width); omni_hf returns concatenated merged tokens - not aligned yet",
    "test_get_video_features_output": "as test_get_image_features_output",
    "test_get_audio_features_attentions": "encoder attentions are not returned by get_*_features (not implemented)",
    "test_get_image_features_attentions": "encoder attentions are not returned by get_*_features (not implemented)",
    "test_get_video_features_attentions": "encoder attentions are not returned by get_*_features (not implemented)",
    "test_get_image_features_hidden_states": "counts one hidden state per vision block; omni_hf also returns the "
    "patch embeddings (blocks + 1) - not aligned yet",
    "test_get_video_features_hidden_states": "as test_get_image_features_hidden_states",
    "test_correct_missing_keys": "instantiates the base model from a text sub-config (omni_hf_text); the Thinker's "
    "config translation refuses that model type",
    "test_init_weights_can_init_buffers": "omni_hf recomputes its constant buffers (rotary frequencies, sinusoid "
    "table) in _init_weights via constant_buffers(); this check's meta-device path does not see them - not resolved",
    "test_bc_cache_name_forward": "expects a deprecation warning for `past_key_values`; omni_hf's forward only "
    "takes `cache` (transformers 5.24's name)",
}


class OmniThinkerModelTester:
    """Builds the tiny config and a multimodal batch for the generic tests."""

    def __init__(self, parent, batch_size: int = 2, frames: int = 40, grid: tuple = (1, 4, 4)):
        self.parent, self.batch_size, self.frames, self.grid = parent, batch_size, frames, grid
        config = self.get_config()
        text = config.text_config
        self.text_config, self.vision_config = text, config.vision_config
        self.vocab_size, self.hidden_size = text.vocab_size, text.hidden_size
        self.num_hidden_layers, self.num_attention_heads = text.num_hidden_layers, text.num_attention_heads
        self.is_training = True
        self.audio_tokens = int(audio_token_lengths(torch.tensor(frames)))
        self.image_tokens = grid[0] * grid[1] * grid[2] // 4
        self.seq_length = 3 + (self.image_tokens + 2) + (self.audio_tokens + 2) + 3

    def get_config(self) -> OmniThinkerConfig:
        return OmniThinkerConfig(**translate_official_thinker_config(tiny_thinker_config_dict()))

    def prepare_config_and_inputs_for_common(self):
        t = TINY_TOKEN_IDS
        row = [5, 6, 7, t["vision_bos"], *[t["image"]] * self.image_tokens, t["vision_eos"]]
        row += [t["audio_bos"], *[t["audio"]] * self.audio_tokens, t["audio_eos"], 8, 9, 10]
        input_ids = torch.tensor([row] * self.batch_size)
        input_ids[:, :3] = torch.randint(20, 900, (self.batch_size, 3))
        patches = self.grid[0] * self.grid[1] * self.grid[2]
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "pixel_values": floats_tensor([self.batch_size * patches, 1176]),
            "image_grid_thw": torch.tensor([list(self.grid)] * self.batch_size),
            "input_features": floats_tensor([self.batch_size, 128, self.frames]),
            "feature_attention_mask": torch.ones(self.batch_size, self.frames, dtype=torch.long),
        }
        return self.get_config(), inputs


class OmniThinkerGenericTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (OmniThinkerForConditionalGeneration,)
    _is_composite = True
    test_torch_exportable = False  # ExportTesterMixin is not in the 5.24.0 sdist (empty stand-in)
    # `audio_tower.audio_bos_eos_token` is stored but unused by the forward, as in the official model.
    test_all_params_have_gradient = False

    @property
    def all_generative_model_classes(self):
        return ()  # GenerationTesterMixin is not in the 5.24.0 sdist; generation is tested in tests/dropin/

    def setUp(self):
        self.model_tester = OmniThinkerModelTester(self)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:
            inputs["labels"] = inputs["input_ids"].clone()
        return inputs


for _name in dir(OmniThinkerGenericTest):
    _reason = next((why for prefix, why in SKIPPED.items() if _name.startswith(prefix)), None)
    if _reason is not None:
        setattr(OmniThinkerGenericTest, _name, unittest.skip(_reason)(getattr(OmniThinkerGenericTest, _name)))

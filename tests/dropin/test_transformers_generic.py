"""transformers' generic model tests (`ModelTesterMixin`, vendored from the 5.24.0 sdist in `_transformers_tests/`)
run against `OmniThinkerForConditionalGeneration` through a small tester: a batch of two prompts, each with text, an
image (4x4 patches) and an audio clip (40 mel frames). Tests that do not apply are skipped with the reason below
(listed in tests/dropin/README.md)."""

import unittest

import torch

from omni_hf import OmniThinkerConfig, OmniThinkerForConditionalGeneration
from omni_hf.common.tmrope import audio_token_lengths
from omni_hf.testing.tiny import TINY_TOKEN_IDS, tiny_thinker_config_dict
from omni_hf.thinker.configuration_thinker import translate_official_thinker_config

from ._transformers_tests.test_modeling_common import ModelTesterMixin, floats_tensor

# test name → why it does not apply to this model (each is also listed in tests/dropin/README.md)
SKIPPED = {}


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


for _name, _reason in SKIPPED.items():
    setattr(OmniThinkerGenericTest, _name, unittest.skip(_reason)(getattr(OmniThinkerGenericTest, _name)))

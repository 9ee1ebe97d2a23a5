"""Tiny Qwen2.5-Omni configurations with a small vocabulary whose special ids differ from the official ones."""

import copy
from typing import Any

TINY_VOCAB_SIZE = 1024
# Special tokens sit right after a 1000-entry byte-level BPE vocabulary (see `testing.tokenizer`).
TINY_SPECIAL_TOKENS = {
    "<|endoftext|>": 1000,
    "<|im_start|>": 1001,
    "<|im_end|>": 1002,
    "<|AUDIO|>": 1003,
    "<|audio_bos|>": 1004,
    "<|audio_eos|>": 1005,
    "<|vision_bos|>": 1006,
    "<|vision_eos|>": 1007,
    "<|vision_pad|>": 1008,
    "<|IMAGE|>": 1009,
    "<|VIDEO|>": 1010,
}
# Short names of the tiny ids, for tests that build prompts by hand.
TINY_TOKEN_IDS = {
    "audio": TINY_SPECIAL_TOKENS["<|AUDIO|>"],
    "image": TINY_SPECIAL_TOKENS["<|IMAGE|>"],
    "video": TINY_SPECIAL_TOKENS["<|VIDEO|>"],
    "audio_bos": TINY_SPECIAL_TOKENS["<|audio_bos|>"],
    "audio_eos": TINY_SPECIAL_TOKENS["<|audio_eos|>"],
    "vision_bos": TINY_SPECIAL_TOKENS["<|vision_bos|>"],
    "vision_eos": TINY_SPECIAL_TOKENS["<|vision_eos|>"],
    "pad": TINY_SPECIAL_TOKENS["<|endoftext|>"],
    "im_end": TINY_SPECIAL_TOKENS["<|im_end|>"],
}


def tiny_thinker_config_dict(size: str = "tiny", **overrides: Any) -> dict[str, Any]:
    """An official-format (`qwen2_5_omni_thinker`) config dict for a tiny random Thinker.

    The same dict builds transformers' reference (`Qwen2_5OmniThinkerConfig(**d)`) and, translated, ours.
    `size="small"` gives the benchmark model (text hidden 512, 8 layers).
    """
    sp = TINY_SPECIAL_TOKENS
    if size == "tiny":
        audio = dict(encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64, d_model=32)
        vision = dict(depth=3, hidden_size=32, intermediate_size=48, num_heads=2, fullatt_block_indexes=[1])
        text = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            mrope_section=[2, 3, 3],
        )
    elif size == "small":
        audio = dict(encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=1024, d_model=256)
        vision = dict(depth=4, hidden_size=256, intermediate_size=512, num_heads=4, fullatt_block_indexes=[1, 3])
        text = dict(
            hidden_size=512,
            intermediate_size=1408,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=2,
            mrope_section=[8, 12, 12],
        )
    else:
        raise ValueError(f"size must be 'tiny' or 'small', got {size!r}")
    hidden = text["hidden_size"]
    vocab_size = TINY_VOCAB_SIZE if size == "tiny" else 152064  # the benchmark keeps the real lm_head width
    config = {
        "model_type": "qwen2_5_omni_thinker",
        "audio_config": {
            "model_type": "qwen2_5_omni_audio_encoder",
            "num_mel_bins": 128,
            "n_window": 100,
            "max_source_positions": 1500,
            "output_dim": hidden,
            **audio,
        },
        "vision_config": {
            "model_type": "qwen2_5_omni_vision_encoder",
            "patch_size": 14,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "window_size": 112,
            "out_hidden_size": hidden,
            "in_channels": 3,
            **vision,
        },
        "text_config": {
            "model_type": "qwen2_5_omni_text",
            "vocab_size": vocab_size,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6,
            "hidden_size": hidden,
            "intermediate_size": text["intermediate_size"],
            "num_hidden_layers": text["num_hidden_layers"],
            "num_attention_heads": text["num_attention_heads"],
            "num_key_value_heads": text["num_key_value_heads"],
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": text["mrope_section"],
            },
            "pad_token_id": sp["<|endoftext|>"],
            "eos_token_id": sp["<|im_end|>"],
        },
        "audio_token_index": sp["<|AUDIO|>"],
        "image_token_index": sp["<|IMAGE|>"],
        "video_token_index": sp["<|VIDEO|>"],
        "audio_start_token_id": sp["<|audio_bos|>"],
        "audio_end_token_id": sp["<|audio_eos|>"],
        "vision_start_token_id": sp["<|vision_bos|>"],
        "vision_end_token_id": sp["<|vision_eos|>"],
        "user_token_id": 900,
        "position_id_per_seconds": 25,
        "seconds_per_chunk": 2,
    }
    merged = copy.deepcopy(config)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def reinit_(model, std: float = 0.15, seed: int = 0):
    """Re-initialise every matrix/conv weight with N(0, std) (deterministic), so outputs are far from zero.

    transformers' default N(0, 0.02) init makes logits nearly uniform; parity tests need meaningful numbers.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model

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


# Tiny speech side. Codec ids keep the official layout (8192 speech codes, pad 8292, bos 8293, eos 8294,
# mask 8296, vocabulary 8448) because the DiT's codec embedding (8193 rows) is indexed by them.
TINY_TTS_TOKENS = {"tts_text_pad_token_id": 1011, "tts_text_start_token_id": 1012, "tts_text_end_token_id": 1013}
TINY_SPEAKER_BOS = {"Chelsie": 1014, "Ethan": 1015}


def tiny_talker_config_dict(size: str = "tiny", **overrides: Any) -> dict[str, Any]:
    """Official-format (`qwen2_5_omni_talker`) config of a tiny talker matching `tiny_thinker_config_dict(size)`."""
    thinker = tiny_thinker_config_dict(size)
    width = thinker["text_config"]["hidden_size"]
    if size == "tiny":
        layers = dict(
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=12,
            mrope_section=[2, 2, 2],
        )
    else:  # benchmark: hidden 384, 6 layers
        layers = dict(
            hidden_size=384,
            intermediate_size=1024,
            num_hidden_layers=6,
            num_attention_heads=6,
            num_key_value_heads=2,
            head_dim=64,
            mrope_section=[8, 12, 12],
        )
    mrope = layers.pop("mrope_section")
    config = {
        "model_type": "qwen2_5_omni_talker",
        "vocab_size": 8448,
        "embedding_size": width,
        "max_position_embeddings": 8192,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
        "rms_norm_eps": 1e-6,
        "tts_codec_start_token_id": 8293,
        "tts_codec_end_token_id": 8294,
        "tts_codec_pad_token_id": 8292,
        "tts_codec_mask_token_id": 8296,
        **TINY_TTS_TOKENS,
        **{
            k: thinker[k]
            for k in (
                "audio_token_index",
                "image_token_index",
                "video_token_index",
                "audio_start_token_id",
                "audio_end_token_id",
                "vision_start_token_id",
                "position_id_per_seconds",
                "seconds_per_chunk",
            )
        },
        "vision_end_token_id": thinker["vision_end_token_id"],
        **layers,
    }
    config.update(overrides)
    return config


def tiny_token2wav_config_dict(size: str = "tiny", **overrides: Any) -> dict[str, Any]:
    """Official-format (`qwen2_5_omni_token2wav`) config: a tiny DiT and a reduced BigVGAN (still x240 upsampling)."""
    if size == "tiny":
        dit = dict(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            head_dim=16,
            emb_dim=16,
            enc_emb_dim=24,
            enc_dim=16,
            enc_channels=[16, 16, 16, 16, 48],
            enc_attention_channels=8,
            enc_se_channels=8,
            look_ahead_layers=[2],
            look_backward_layers=[0, 3],
        )
        vocoder = dict(
            upsample_initial_channel=128, resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]]
        )
    else:  # benchmark: DiT hidden 256, 6 layers; reduced BigVGAN
        dit = dict(
            hidden_size=256,
            num_hidden_layers=6,
            num_attention_heads=4,
            head_dim=64,
            emb_dim=128,
            enc_emb_dim=192,
            enc_dim=64,
            enc_channels=[64, 64, 64, 64, 192],
            enc_attention_channels=32,
            enc_se_channels=32,
            look_ahead_layers=[3],
            look_backward_layers=[0, 5],
        )
        vocoder = dict(
            upsample_initial_channel=256,
            resblock_kernel_sizes=[3, 7, 11],
            resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        )
    config = {
        "model_type": "qwen2_5_omni_token2wav",
        "dit_config": {
            "model_type": "qwen2_5_omni_dit",
            "dropout": 0.0,
            "mel_dim": 80,
            "block_size": 24,
            "repeats": 2,
            "num_embeds": 8193,
            "ff_mult": 2,
            **dit,
        },
        "bigvgan_config": {
            "model_type": "qwen2_5_omni_bigvgan",
            "mel_dim": 80,
            "upsample_rates": [5, 3, 2, 2, 2, 2],
            "upsample_kernel_sizes": [11, 7, 4, 4, 4, 4],
            **vocoder,
        },
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    return config


def tiny_speakers(enc_emb_dim: int, seed: int = 0):
    """Two random speakers (`Chelsie`, `Ethan`) with the tiny bos ids, a `(1, enc_emb_dim)` x-vector and a 1 s mel."""
    import torch

    from ..voices.speakers import Speaker, SpeakerBank

    generator = torch.Generator().manual_seed(seed)
    return SpeakerBank(
        {
            name: Speaker(
                name,
                bos,
                torch.randn(1, enc_emb_dim, generator=generator),
                torch.randn(1, 100, 80, generator=generator) * 2 - 6,
            )
            for name, bos in TINY_SPEAKER_BOS.items()
        }
    )


def make_codes_audible_(dit, seed: int = 0):
    """Re-draw a tiny random DiT's code path so that its mel depends on the codes as much as on the noise.

    With the tiny `reinit_` weights, changing every code moves the decoded log-mel ~10x less than changing the ODE
    noise, so no tokenizer could invert it; after this the two are comparable (measured 0.27 vs 0.27 mean |Δ| on the
    demo model) and each code's effect stays local (about ±10 frames). Only for stand-in speech-tokenizer runs.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param, std in (
            (dit.text_embed.codec_embed.weight, 1.0),
            (dit.input_embed.proj.weight, 0.3),
            (dit.proj_out.weight, 0.5),
        ):
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return dit

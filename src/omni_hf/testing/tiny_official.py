"""A tiny official-layout Qwen2.5-Omni checkpoint saved by transformers itself (the oracle of the parity tests)."""

from pathlib import Path

from .tiny import (
    TINY_SPEAKER_BOS,
    reinit_,
    tiny_talker_config_dict,
    tiny_thinker_config_dict,
    tiny_token2wav_config_dict,
)


def save_tiny_official_omni(path: str | Path):
    """Build transformers' `Qwen2_5OmniForConditionalGeneration` (tiny, re-initialised weights), save it with a
    `spk_dict.pt` of two random speakers at `path`, and return the reference model (speakers loaded)."""
    import torch
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen2_5OmniConfig(
        thinker_config=tiny_thinker_config_dict(),
        talker_config=tiny_talker_config_dict(),
        token2wav_config=tiny_token2wav_config_dict(),
    )
    reference = Qwen2_5OmniForConditionalGeneration(config).eval()
    reinit_(reference.thinker)
    reinit_(reference.talker, std=0.1, seed=1)
    reinit_(reference.token2wav.code2wav_dit_model, std=0.05, seed=2)
    reinit_(reference.token2wav.code2wav_bigvgan_model, std=0.3, seed=3)
    reference.save_pretrained(path)
    generator = torch.Generator().manual_seed(4)
    speakers = {
        name: {
            "bos_token": bos,
            "cond": torch.randn(1, 24, generator=generator),
            "ref_mel": torch.randn(1, 60, 80, generator=generator) - 5,
        }
        for name, bos in TINY_SPEAKER_BOS.items()
    }
    torch.save(speakers, Path(path) / "spk_dict.pt")
    reference.load_speakers(Path(path) / "spk_dict.pt")
    return reference


__all__ = ["save_tiny_official_omni"]

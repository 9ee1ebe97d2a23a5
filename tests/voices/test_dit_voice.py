"""The DiT part of a voice: `voice_lora.py --dit_lora` trains a LoRA adapter on token2wav's DiT from the rows' audio
(espeak-ng speech here); it is saved and loaded with the voice, switched per request (generate, stream), leaves the
base DiT exactly as it was outside the voice, merges and unloads; a DiT part made for another DiT is refused."""

import json

import pytest
import soundfile
import torch

from helpers.recipes import load_recipe
from omni_hf import OmniForConditionalGeneration
from omni_hf.omni import AudioChunk

PROMPT = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10]])
GREEDY = dict(thinker_max_new_tokens=5, thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=16)
CODES = torch.tensor([[3, 17, 250, 4000, 12, 900, 77, 5, 6000, 31, 8, 1200, 44, 2, 610, 90]])


@pytest.fixture(scope="module")
def dit_voice(tiny_voice_model_dir, speech_clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dit_voice")
    audio, rate = speech_clip
    generator = torch.Generator().manual_seed(0)
    rows = []
    for i in range(2):
        clip = audio[: len(audio) * (2 + i) // 4]
        soundfile.write(folder / f"u{i}.wav", clip, rate)
        n = len(clip) * 24000 // rate // 480
        rows.append(
            {
                "text": f"utterance {i}",
                "audio": f"u{i}.wav",
                "codes": torch.randint(8192, (n,), generator=generator).tolist(),
            }
        )
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--model", str(tiny_voice_model_dir), "--data", str(folder / "data.jsonl"), "--voice", "robo"]
    argv += ["--output_dir", str(folder / "out"), "--max_steps", "2", "--batch_size", "2", "--dit_lora"]
    metrics = load_recipe("voice_lora").main([*argv, "--dit_max_steps", "12", "--dit_learning_rate", "0.003"])
    return metrics


def _mel(model, voice=None, seed=0):
    speaker = model.speakers["Chelsie"]
    with torch.no_grad(), model.voice_adapters.use_dit(voice):
        out = model.token2wav(
            CODES, reference_mel=speaker.reference_mel, speaker_embedding=speaker.speaker_embedding, num_inference_steps=2,
            generator=torch.Generator().manual_seed(seed), output_type="mel",
        )  # fmt: skip
    return out.audios if hasattr(out, "audios") else out[0]


def test_recipe_trains_and_saves_the_dit_part(dit_voice):
    metrics = dit_voice
    assert metrics["dit_loss_after"] < metrics["dit_loss_before"]
    assert metrics["dit_trainable_parameters"] > 0
    from pathlib import Path

    saved = Path(metrics["adapter_dir"])
    assert (saved / "dit" / "pytorch_lora_weights.safetensors").is_file() or any((saved / "dit").glob("*.safetensors"))
    assert json.loads((saved / "voice.json").read_text())["dit"]["num_hidden_layers"] > 0
    assert "LoRA adapter on token2wav's DiT" in (saved / "README.md").read_text()


def test_dit_part_switches_per_request_and_leaves_the_base_exact(dit_voice, tiny_voice_model_dir):
    from pathlib import Path

    model = OmniForConditionalGeneration.from_pretrained(tiny_voice_model_dir).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    base = _mel(model)
    model.voice_adapters.load(Path(dit_voice["adapter_dir"]))
    assert model.voice_adapters.names == ["robo"] and model.voice_adapters.dit_names == ["robo"]
    assert torch.equal(_mel(model), base)  # outside the voice: the base DiT, exactly
    voiced = _mel(model, "robo")
    assert (voiced - base).abs().max() > 1e-3
    assert torch.equal(_mel(model, None), base)
    # generate and stream switch the DiT part with the voice, and switch it back
    _, wave_base = model.generate(PROMPT, generator=torch.Generator().manual_seed(0), **GREEDY)
    _, wave_voice = model.generate(PROMPT, voice_adapter="robo", generator=torch.Generator().manual_seed(0), **GREEDY)
    assert wave_base.shape == wave_voice.shape and (wave_base - wave_voice).abs().max() > 1e-4
    chunks = [e.audio for e in model.stream(PROMPT, voice_adapter="robo", **GREEDY) if isinstance(e, AudioChunk)]
    assert chunks and torch.equal(_mel(model), base)
    model.voice_adapters.merge("robo")
    assert model.voice_adapters.dit_names == [] and (_mel(model) - voiced).abs().max() < 1e-4


def test_dit_part_for_another_dit_is_refused(dit_voice, tiny_voice_model_dir, tmp_path, foreign_voice):
    from pathlib import Path

    foreign = foreign_voice(Path(dit_voice["adapter_dir"]), "dit", 16)
    model = OmniForConditionalGeneration.from_pretrained(tiny_voice_model_dir)
    with pytest.raises(ValueError, match="DiT part that does not fit"):
        model.voice_adapters.load(foreign)
    assert model.voice_adapters.names == [] and model.voice_adapters.dit_names == []  # nothing half-loaded
    with pytest.raises(SystemExit, match="no row has audio"):
        load_recipe("voice_lora").main(
            ["--model", str(tiny_voice_model_dir), "--data", "synthetic:2", "--output_dir", str(tmp_path / "x"),
             "--max_steps", "1", "--dit_lora"]
        )  # fmt: skip

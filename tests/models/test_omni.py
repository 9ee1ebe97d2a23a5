"""The full model against transformers' `Qwen2_5OmniForConditionalGeneration` on the same tiny weights:
official checkpoint loading (+ spk_dict.pt), text + speech generation, conversion to our layout, errors."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from omni_hf import OmniForConditionalGeneration, cli
from omni_hf.talker.modeling_talker import talker_generation_config
from omni_hf.testing.tiny_official import save_tiny_official_omni


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A tiny official-layout checkpoint saved by transformers, with a spk_dict.pt, and the reference model."""
    path = tmp_path_factory.mktemp("official_full")
    return path, save_tiny_official_omni(path)


@pytest.fixture(scope="module")
def ours(official):
    return OmniForConditionalGeneration.from_pretrained(official[0]).eval()


@pytest.fixture(scope="module")
def batch():
    ids = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10], [1000, 1000, 1000, 1001, 5, 11, 1002, 1001, 9]])
    return {"input_ids": ids, "attention_mask": (ids != 1000).long()}


# Greedy Thinker and Talker, so both implementations must produce the same ids and (given the noise) waveforms.
GREEDY_SPEECH = dict(
    speaker="Chelsie",
    thinker_max_new_tokens=6,
    thinker_do_sample=False,
    thinker_eos_token_id=1002,
    talker_do_sample=False,
    talker_max_new_tokens=30,
    talker_repetition_penalty=1.0,
)


def _reference_speech(reference, batch, seed, **kwargs):
    from transformers import LogitsProcessorList, SuppressTokensLogitsProcessor

    never = talker_generation_config(OmniForConditionalGeneration.config_class().talker_config).suppress_tokens
    torch.manual_seed(seed)  # the reference draws its ODE noise from the global generator
    return reference.generate(
        **batch,
        **GREEDY_SPEECH,
        talker_logits_processor=LogitsProcessorList([SuppressTokensLogitsProcessor(never, device="cpu")]),
        **kwargs,
    )


def _our_speech(model, batch, seed):
    return model.generate(**batch, **GREEDY_SPEECH, generator=torch.Generator().manual_seed(seed))


def test_official_checkpoint_loads_everything(official, ours):
    path, _ = official
    saved = load_file(path / "model.safetensors")
    mine = ours.state_dict()
    dit, vocoder = ours.token2wav.dit.state_dict(), ours.token2wav.vocoder.state_dict()
    assert ours.has_talker and ours.speakers.names() == ["Chelsie", "Ethan"]
    for name, tensor in saved.items():
        if name.startswith("token2wav.code2wav_dit_model."):
            assert torch.equal(dit[name.split(".", 2)[2]], tensor), name
        elif name.startswith("token2wav.code2wav_bigvgan_model."):
            assert torch.equal(vocoder[name.split(".", 2)[2]], tensor), name
        else:
            assert torch.equal(mine[name], tensor), name


def test_batch_of_two_speaks_like_the_reference(official, ours, batch):
    _, reference = official
    expected_ids, expected_waves = _reference_speech(reference, batch, seed=7)
    ids, waves = _our_speech(ours, batch, seed=7)
    assert torch.equal(ids, expected_ids)
    assert len(waves) == len(expected_waves) == 2
    for got, expected in zip(waves, expected_waves):
        assert got.shape == expected.shape and got.numel() > 0 and got.numel() % 480 == 0  # 480 samples per code
        assert expected.abs().max() > 1e-3
        assert (got - expected).abs().max() <= 1e-4


def test_text_only_skips_the_talker(ours, batch):
    calls = []
    handle = ours.talker.register_forward_hook(lambda *args: calls.append(1))
    try:
        ids = ours.generate(**batch, return_audio=False, max_new_tokens=4, do_sample=False)
    finally:
        handle.remove()
    assert ids.shape == (2, batch["input_ids"].shape[1] + 4) and not calls
    torch.testing.assert_close(ids, ours.thinker.generate(**batch, max_new_tokens=4, do_sample=False))


def test_convert_writes_our_layout_that_loads_without_mapping(official, ours, batch, tmp_path):
    path, _ = official
    assert cli.main(["convert", str(path), str(tmp_path / "converted")]) == 0
    converted = tmp_path / "converted"
    assert (converted / "token2wav" / "model_index.json").exists() and (converted / "speakers.json").exists()
    assert not any(k.startswith("token2wav.") for k in load_file(converted / "model.safetensors"))
    again = OmniForConditionalGeneration.from_pretrained(converted).eval()
    first = _our_speech(ours, batch, seed=3)
    second = _our_speech(again, batch, seed=3)
    assert torch.equal(first[0], second[0])
    for a, b in zip(first[1], second[1]):
        torch.testing.assert_close(a, b)
    assert cli.main(["convert", str(path), str(converted)]) == 2  # never writes over a non-empty folder


def test_disable_and_enable_talker(official):
    model = OmniForConditionalGeneration.from_pretrained(official[0])
    model.disable_talker()
    assert model.talker is None and model.token2wav is None and not model.has_talker
    with pytest.raises(ValueError, match="no talker"):
        model.generate(input_ids=torch.tensor([[1, 2]]), return_audio=True)
    model.enable_talker()
    assert model.has_talker


def test_clear_errors(official, ours, batch, tmp_path):
    with pytest.raises(ValueError, match="Unknown speaker 'Nobody'; known speakers: Chelsie, Ethan"):
        ours.generate(**batch, speaker="Nobody")
    # A checkpoint whose token2wav weights were stripped cannot speak, and says so.
    path, _ = official
    stripped = tmp_path / "no_token2wav"
    stripped.mkdir()
    for item in path.iterdir():
        if item.name != "model.safetensors":
            (stripped / item.name).write_bytes(item.read_bytes())
    weights = {k: v for k, v in load_file(path / "model.safetensors").items() if not k.startswith("token2wav.")}
    save_file(weights, stripped / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="no token2wav weights"):
        OmniForConditionalGeneration.from_pretrained(stripped)
    text_only = OmniForConditionalGeneration.from_pretrained(stripped, enable_audio_output=False)
    assert not text_only.has_talker


def test_mixed_text_audio_image_prompt_speaks_like_the_reference(official, ours, tmp_path):
    from omni_hf.testing.media import write_image, write_wav
    from omni_hf.testing.tokenizer import build_tiny_processor

    processor = build_tiny_processor()
    audio = write_wav(tmp_path / "q.wav", duration=1.2, sampling_rate=22050)
    image = write_image(tmp_path / "i.png", width=112, height=84)
    conversations = [
        [
            {
                "role": "user",
                "content": [
                    {"type": "audio", "audio": audio},
                    {"type": "image", "image": image},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
        [{"role": "user", "content": "Hello"}],
    ]
    inputs = dict(
        processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
    )
    _, reference = official
    # transformers 5.24 forwards pixel_values to its talker, whose generate rejects them: route them to None there.
    expected_ids, expected_waves = _reference_speech(reference, inputs, seed=9, talker_pixel_values=None)
    ids, waves = _our_speech(ours, inputs, seed=9)
    assert torch.equal(ids, expected_ids)
    for got, expected in zip(waves, expected_waves):
        assert got.shape == expected.shape and (got - expected).abs().max() <= 1e-4

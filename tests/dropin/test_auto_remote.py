"""Auto classes after `import omni_hf`, and `trust_remote_code` for the full model, the Thinker, the processor and the
token2wav pipeline in a process where importing omni_hf is impossible (outputs equal omni_hf's own)."""

import json

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoModelForTextToWaveform,
    AutoProcessor,
)

import omni_hf
from omni_hf import OmniForConditionalGeneration, OmniThinkerForConditionalGeneration, OmniToken2WavPipeline
from omni_hf.omni.causal_lm_omni import OmniThinkerForCausalLM

SPEAK = dict(
    speaker="Chelsie",
    thinker_max_new_tokens=3,
    thinker_do_sample=False,
    talker_do_sample=False,
    talker_max_new_tokens=10,
    token2wav_num_inference_steps=4,
)


def test_auto_classes_after_import(tiny_omni_dir, tmp_path):
    full = tiny_omni_dir
    assert type(AutoConfig.from_pretrained(full)) is omni_hf.OmniConfig
    for auto in (AutoModelForMultimodalLM, AutoModelForTextToWaveform, AutoModel):
        assert type(auto.from_pretrained(full)) is OmniForConditionalGeneration, auto.__name__
    for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
        thinker = auto.from_pretrained(full)
        assert type(thinker) is OmniThinkerForCausalLM and isinstance(thinker, OmniThinkerForConditionalGeneration)
        assert thinker.generation_config.eos_token_id == 1002
    assert type(AutoProcessor.from_pretrained(full)) is omni_hf.OmniProcessor
    thinker = OmniThinkerForConditionalGeneration.from_pretrained(full)
    reference = AutoModelForCausalLM.from_pretrained(full)
    assert all(torch.equal(a, b) for a, b in zip(thinker.state_dict().values(), reference.state_dict().values()))
    thinker.save_pretrained(tmp_path / "thinker")
    for auto in (AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText):
        assert type(auto.from_pretrained(tmp_path / "thinker")) is OmniThinkerForConditionalGeneration
    auto_map = json.loads((full / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForMultimodalLM"] == "omni_code/modeling_omni.OmniForConditionalGeneration"
    assert auto_map["AutoModelForCausalLM"] == "omni_code/causal_lm_omni.OmniThinkerForCausalLM"
    assert json.loads((full / "processor_config.json").read_text())["auto_map"] == {
        "AutoProcessor": "omni_code/processing_omni.OmniProcessor"
    }
    assert not list(full.glob("*.py")) and len(list((full / "omni_code").glob("*.py"))) > 40  # one folder
    assert json.loads((full / "token2wav" / "model_index.json").read_text())["_class_name"] == [
        "pipeline_token2wav",
        "OmniToken2WavPipeline",
    ]


def test_everything_loads_without_omni_hf(tiny_omni_dir, tmp_path, without_omni_hf):
    full = tiny_omni_dir
    model = OmniForConditionalGeneration.from_pretrained(full).eval()
    processor = omni_hf.OmniProcessor.from_pretrained(full)
    messages = [[{"role": "user", "content": "Hello there"}], [{"role": "user", "content": "Hi"}]]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    ids, waves = model.generate(**inputs, **SPEAK, generator=torch.Generator().manual_seed(0))
    pipe = OmniToken2WavPipeline.from_pretrained(full / "token2wav")
    codes = torch.arange(20).unsqueeze(0) * 7
    voice = model.speakers["Ethan"]
    audio = pipe(
        codes,
        voice.reference_mel,
        voice.speaker_embedding,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(1),
    )
    torch.save(
        {"ids": ids, "waves": waves, "input_ids": inputs["input_ids"], "audio": audio.audios, "codes": codes},
        tmp_path / "expected.pt",
    )
    out = without_omni_hf(
        f"""
        import torch
        from diffusers import DiffusionPipeline
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoModelForMultimodalLM
        from transformers import AutoModelForTextToWaveform, AutoProcessor
        full, expected = {str(full)!r}, torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        processor = AutoProcessor.from_pretrained(full, trust_remote_code=True)
        assert type(processor).__name__ == "OmniProcessor" and "omni_hf" not in type(processor).__module__
        inputs = processor.apply_chat_template(
            {messages!r}, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        assert torch.equal(inputs["input_ids"], expected["input_ids"])
        model = AutoModelForMultimodalLM.from_pretrained(full, trust_remote_code=True).eval()
        assert "omni_hf" not in type(model).__module__ and model.has_talker
        ids, waves = model.generate(**inputs, **{SPEAK!r}, generator=torch.Generator().manual_seed(0))
        assert torch.equal(ids, expected["ids"])
        assert all(torch.equal(a, b) for a, b in zip(waves, expected["waves"]))
        assert type(AutoModelForTextToWaveform.from_pretrained(full, trust_remote_code=True)).__name__ == "OmniForConditionalGeneration"
        for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
            thinker = auto.from_pretrained(full, trust_remote_code=True)
            assert type(thinker).__name__ == "OmniThinkerForCausalLM", type(thinker)
            assert thinker.generation_config.eos_token_id == 1002
            assert torch.equal(thinker.lm_head.weight, model.thinker.lm_head.weight)
        steps = []
        def on_step(pipe, i, t, kwargs):
            steps.append(i)
            return {{"latents": kwargs["latents"]}}
        pipe = DiffusionPipeline.from_pretrained(full + "/token2wav", trust_remote_code=True)
        assert type(pipe).__name__ == "OmniToken2WavPipeline" and "omni_hf" not in type(pipe).__module__
        voice = model.speakers["Ethan"]
        audio = pipe(expected["codes"], voice.reference_mel, voice.speaker_embedding, num_inference_steps=4,
                     generator=torch.Generator().manual_seed(1), callback_on_step_end=on_step).audios
        assert torch.equal(audio, expected["audio"]) and steps == [0, 1, 2]  # once per ODE step (4 grid points)
        print("REMOTE_OK")
        """,
        tmp_path,
    )
    assert "REMOTE_OK" in out


def test_token2wav_callback_on_step_end(tiny_omni_dir):
    from diffusers.callbacks import PipelineCallback

    pipe = OmniToken2WavPipeline.from_pretrained(tiny_omni_dir / "token2wav")
    voice = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir).speakers["Chelsie"]
    codes = torch.arange(10).unsqueeze(0)
    seen = []

    def zero_after_last(pipeline, step, timestep, kwargs):
        seen.append((step, tuple(kwargs)))
        return (
            {"latents": torch.zeros_like(kwargs["latents"])}
            if step == pipeline.scheduler.num_inference_steps - 2
            else {}
        )

    mel = pipe(
        codes,
        voice.reference_mel,
        voice.speaker_embedding,
        num_inference_steps=3,
        output_type="mel",
        callback_on_step_end=zero_after_last,
    ).audios
    # once per ODE step (3 grid points: 2 RK4 steps of 4 DiT evaluations each), not once per evaluation
    assert [s for s, _ in seen] == [0, 1] and len(pipe.scheduler.timesteps) == 8 and seen[0][1] == ("latents",)
    assert torch.equal(mel, torch.zeros_like(mel))  # the callback's latents replaced the sample

    class Record(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            seen.append(step_index)
            return callback_kwargs

    seen.clear()
    pipe(codes, voice.reference_mel, voice.speaker_embedding, num_inference_steps=3, callback_on_step_end=Record())
    assert seen == [0, 1]
    import pytest

    with pytest.raises(ValueError, match="only \\['latents'\\]"):
        pipe(
            codes,
            voice.reference_mel,
            voice.speaker_embedding,
            callback_on_step_end=zero_after_last,
            callback_on_step_end_tensor_inputs=["prompt_embeds"],
        )


def test_missing_package_is_named_by_transformers(tiny_omni_dir, tmp_path, without_omni_hf):
    """A package the code set needs beyond the entry file (here `av`, used by the media layer) is named up front in
    transformers' own words, for the model and the processor alike (not a bare "No module named 'av'" later)."""
    out = without_omni_hf(
        f"""
        import importlib.abc, sys

        class NotInstalled(importlib.abc.MetaPathFinder):  # as if `av` were not installed
            def find_spec(self, name, path=None, target=None):
                if name == "av" or name.startswith("av."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.modules.pop("av", None)
        sys.meta_path.insert(0, NotInstalled())
        from transformers import AutoModelForMultimodalLM, AutoProcessor
        for auto in (AutoProcessor, AutoModelForMultimodalLM):
            try:
                auto.from_pretrained({str(tiny_omni_dir)!r}, trust_remote_code=True)
            except ImportError as error:
                message = str(error)
                assert "requires the following packages that were not found in your environment: av" in message, message
                assert "pip install av" in message
            else:
                raise AssertionError(f"{{auto.__name__}} loaded without av")
        print("NAMED_OK")
        """,
        tmp_path,
    )
    assert "NAMED_OK" in out

"""Token2Wav as a Diffusers pipeline: speech codes → mel (DiT + flow-matching ODE) → 24 kHz waveform (BigVGAN)."""

import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, ModelMixin, SchedulerMixin
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput
from diffusers.utils import logging
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import load_file, save_file

from ..common.remote_code import write_code_set
from ..common.staged_save import check_complete_if_local, staged_save
from .bigvgan import BigVGANVocoder
from .code_to_wave import SAMPLING_RATE, CodeToWave
from .modeling_dit import OmniDiTModel
from .scheduling_flow_match import OmniFlowMatchScheduler, schedule_settings
from .streaming import StreamingWindow, Token2WavStream, decode_windows, stream_token2wav

logger = logging.get_logger(__name__)
OUTPUT_TYPES = ("pt", "np", "mel", "latent")
DEFAULT_SPEAKER = "default_speaker.safetensors"
_FLOAT32_NOTE = (
    "token2wav keeps float32 (as the official model does: its ODE solve and the vocoder's filters are not reliable "
    "in half precision), so the dtype %s asked for is not applied to it; cast explicitly with `pipe.to(dtype)` to "
    "run it in another dtype anyway"
)


def _keep_float32(*modules: torch.nn.Module) -> None:
    """Load-time policy: whichever entry point loaded token2wav (our `from_pretrained`, `DiffusionPipeline` with
    `dtype=`, the full model), its models are float32."""
    asked = {m.dtype for m in modules if m.dtype != torch.float32}
    if asked:
        logger.warning(_FLOAT32_NOTE, ", ".join(sorted(str(d) for d in asked)))
        for module in modules:
            module.to(torch.float32)


def _load_device(device_map) -> torch.device:
    """The one device a `device_map` names for this small pipeline (it is not split across devices)."""
    if device_map in ("auto", "balanced"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device_map, (str, int, torch.device)):
        return torch.device(device_map)
    raise ValueError(
        f"device_map for the token2wav pipeline must be 'auto', 'balanced' or one device (e.g. 'cuda:0'), got "
        f"{device_map!r}: it is small and runs on a single device"
    )


DIT_PREFIX = "token2wav.code2wav_dit_model."
VOCODER_PREFIX = "token2wav.code2wav_bigvgan_model."


def _read_default_speaker(path: Path) -> "DiTSpeakerConditioning":
    tensors = load_file(str(path))
    return DiTSpeakerConditioning(tensors["reference_mel"], tensors["speaker_embedding"])


@dataclass(frozen=True)
class DiTSpeakerConditioning:
    """The DiT's speaker conditioning (what `OmniToken2WavPipeline.speaker_conditioning` makes of a `Speaker`):
    `reference_mel` `(1, frames, 80)` for its speaker encoder and `speaker_embedding` `(1, enc_emb_dim)` x-vector."""

    reference_mel: torch.Tensor
    speaker_embedding: torch.Tensor


class OmniToken2WavPipeline(DiffusionPipeline, CodeToWave):
    r"""Qwen2.5-Omni code-to-waveform pipeline, the paper's code-to-wave stage (`omni_hf.token2wav.code_to_wave`).

    Components:
        dit ([`OmniDiTModel`]): predicts the mel's flow-matching velocity from codes and a speaker.
        scheduler ([`OmniFlowMatchScheduler`]): the ODE solver (official: 10 grid points, RK4, sway -1).
        vocoder ([`BigVGANVocoder`]): mel → waveform at 24 kHz (240 samples per mel frame, 2 frames per code).

    Example:

    ```python
    >>> pipe = OmniToken2WavPipeline.from_pretrained("path/to/omni_hf_model/token2wav")
    >>> speaker = model.speakers["Chelsie"]
    >>> audio = pipe(codes, reference_mel=speaker.reference_mel, speaker_embedding=speaker.speaker_embedding).audios  # (1, samples)
    ```"""

    model_cpu_offload_seq = "dit->vocoder"
    sampling_rate = SAMPLING_RATE
    _callback_tensor_inputs = ["latents"]

    # Annotated with the Diffusers base classes: a folder loaded through its own code (trust_remote_code) imports the
    # component classes once per component folder, and Diffusers compares types by identity (a needless warning).
    def __init__(self, dit: ModelMixin, scheduler: SchedulerMixin, vocoder: ModelMixin):
        super().__init__()
        _keep_float32(dit, vocoder)
        self.register_modules(dit=dit, scheduler=scheduler, vocoder=vocoder)
        self._default_speaker: DiTSpeakerConditioning | None = None

    @property
    def default_speaker(self) -> "DiTSpeakerConditioning | None":
        """The speaker used when a call passes none: saved in the folder (`default_speaker.safetensors`, written
        with the full model's token2wav from its first speaker), or set with `set_default_speaker`."""
        if self._default_speaker is None:
            folder = Path(str(self.config.get("_name_or_path") or "."))
            if (folder / DEFAULT_SPEAKER).is_file():
                self._default_speaker = _read_default_speaker(folder / DEFAULT_SPEAKER)
        return self._default_speaker

    def set_default_speaker(self, conditioning: "DiTSpeakerConditioning | None") -> None:
        """Use `conditioning` (`speaker_conditioning(model.speakers[name])`) when a call passes no speaker; it is
        saved with the pipeline."""
        self._default_speaker = conditioning

    @classmethod
    def from_official(cls, token2wav_config: dict, state_dict: dict[str, torch.Tensor]) -> "OmniToken2WavPipeline":
        """Build from an official `token2wav_config` and the `token2wav.code2wav_*` tensors of a checkpoint."""

        def settings(key: str, model_class) -> dict:
            # Official sub-configs also carry every PreTrainedConfig field (dtype, id2label, ...): keep ours only.
            accepted = inspect.signature(model_class.__init__).parameters
            return {k: v for k, v in (token2wav_config.get(key) or {}).items() if k in accepted and k != "model_type"}

        dit = OmniDiTModel.from_config(settings("dit_config", OmniDiTModel))
        vocoder = BigVGANVocoder.from_config(settings("bigvgan_config", BigVGANVocoder))
        for model, prefix in ((dit, DIT_PREFIX), (vocoder, VOCODER_PREFIX)):
            weights = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            if weights:
                model.load_state_dict(weights, strict=True)
        return cls(dit=dit.float().eval(), scheduler=OmniFlowMatchScheduler(), vocoder=vocoder.float().eval())

    # ---------------------------------------------------------------- saving / loading (also without omni_hf)
    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as Diffusers does, staged (`omni_hf.common.staged_save`: written whole beside `save_directory`, then
        moved in), plus the code for `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` without
        omni_hf: the pipeline's flat code set at the root, each component's beside its weights, and a
        `model_index.json` naming those files instead of omni_hf modules."""
        if kwargs.get("push_to_hub"):
            kwargs.setdefault("repo_id", os.path.basename(os.path.abspath(save_directory)))
        with staged_save(save_directory, "token2wav") as stage:
            super().save_pretrained(stage, *args, **kwargs)
            self._write_remote_code(Path(stage))
            if self.default_speaker is not None:
                speaker = self.default_speaker
                tensors = {"reference_mel": speaker.reference_mel, "speaker_embedding": speaker.speaker_embedding}
                save_file(
                    {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()},
                    Path(stage) / DEFAULT_SPEAKER,
                )

    def _write_remote_code(self, folder: Path) -> None:
        write_code_set([type(self)], folder, import_all_in_entry=True)
        index = json.loads((folder / "model_index.json").read_text())
        index["_class_name"] = [Path(inspect.getfile(type(self))).stem, type(self).__name__]
        for name in ("dit", "scheduler", "vocoder"):
            component = type(getattr(self, name))
            write_code_set([component], folder / name, import_all_in_entry=True)
            index[name] = [Path(inspect.getfile(component)).stem, component.__name__]
        staged = folder / ".model_index.json.partial"
        staged.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        os.replace(staged, folder / "model_index.json")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "OmniToken2WavPipeline":
        """Load `dit/`, `scheduler/`, `vocoder/` with this module's own classes (whatever `model_index.json` names),
        always in float32 (`dtype=` / `torch_dtype=` other than float32 are noted and not applied, as for the full
        model), on the device `device_map` names ("auto": the GPU when there is one).
        `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` also loads a saved folder, through the code
        saved in it, with the same dtype policy. A local folder left half-written by an interrupted save is refused."""
        check_complete_if_local(pretrained_model_name_or_path)
        folder = Path(pretrained_model_name_or_path)
        hub = {k: kwargs.pop(k) for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(pretrained_model_name_or_path), **hub))
        if not (folder / "model_index.json").is_file():
            raise ValueError(
                f"{pretrained_model_name_or_path} is not a token2wav pipeline folder (no model_index.json)"
            )
        asked = [kwargs.pop(key) for key in ("dtype", "torch_dtype") if key in kwargs]
        device_map = kwargs.pop("device_map", None)
        if kwargs:
            raise TypeError(f"OmniToken2WavPipeline.from_pretrained got unsupported arguments: {sorted(kwargs)}")
        device = _load_device(device_map) if device_map is not None else None
        if any(dtype not in (None, "auto", torch.float32, "float32") for dtype in asked):
            logger.warning(_FLOAT32_NOTE, ", ".join(str(d) for d in asked))
        dit = OmniDiTModel.from_pretrained(folder / "dit", torch_dtype=torch.float32)
        vocoder = BigVGANVocoder.from_pretrained(folder / "vocoder", torch_dtype=torch.float32)
        scheduler = OmniFlowMatchScheduler.from_pretrained(folder / "scheduler")
        pipe = cls(dit=dit.eval(), scheduler=scheduler, vocoder=vocoder.eval())
        if (folder / DEFAULT_SPEAKER).is_file():
            pipe.set_default_speaker(_read_default_speaker(folder / DEFAULT_SPEAKER))
        return pipe.to(device) if device is not None else pipe

    def check_inputs(self, codes, reference_mel, speaker_embedding, num_inference_steps):
        if not torch.is_tensor(codes) or codes.dim() not in (1, 2):
            raise ValueError(f"codes must be a (codes,) or (batch, codes) integer tensor, got {type(codes).__name__}")
        if reference_mel is None or speaker_embedding is None:
            raise ValueError(
                "Pass the speaker conditioning: reference_mel (batch, frames, 80) and speaker_embedding (this pipeline "
                "has no default speaker: set_default_speaker(), or save it with a full model)"
            )
        if num_inference_steps < 2:
            raise ValueError(f"num_inference_steps must be at least 2 (grid points), got {num_inference_steps}")

    def prepare_latents(self, batch, frames, dtype, device, generator=None, latents=None) -> torch.Tensor:
        shape = (batch, frames, self.dit.config.mel_dim)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
            return latents.to(device=device, dtype=dtype)
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    def scheduler_for(self, solver: str | None = None, sway_coefficient: float | None | str = "default"):
        """The pipeline's scheduler, or a copy of it with another solver / sway (the pipeline's stays unchanged;
        `"default"` / None keep the scheduler's). Either is a template: each solve runs on its own copy (`solve`), so
        replies never share solver state."""
        overrides = ({"sway_coefficient": sway_coefficient} if sway_coefficient != "default" else {}) | (
            {"solver": solver} if solver is not None else {}
        )
        if any(self.scheduler.config.get(k) != v for k, v in overrides.items()):
            return OmniFlowMatchScheduler.from_config(self.scheduler.config, **overrides)
        return self.scheduler

    def solve(
        self,
        sample,
        conditioning,
        scheduler,
        num_inference_steps: int,
        guidance_scale: float,
        progress=False,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
    ):
        """Integrate the flow ODE from noise `sample` `(batch, frames, mel_dim)` to the mel (same layout).

        `callback_on_step_end(pipeline, step, timestep, {"latents": ...})` runs after each ODE step (each interval
        of the time grid, `num_inference_steps - 1` of them; an RK4 step takes 4 DiT evaluations) with the step's
        index and the time it reached, as in Diffusers' pipelines; the `latents` it returns (if any) replace the
        current sample. `scheduler` is used as a template: the solve runs on its own copy, so one scheduler may
        serve solves running at once. The template gets the timesteps too (what callbacks read as
        `pipe.scheduler.timesteps`, as in Diffusers), never the solver's progress."""
        scheduler.set_timesteps(num_inference_steps, device=sample.device)
        scheduler = OmniFlowMatchScheduler.from_config(scheduler.config)
        scheduler.set_timesteps(num_inference_steps, device=sample.device)
        order = scheduler.order
        bar = self.progress_bar(total=len(scheduler.timesteps) // order) if progress else None
        if bar is not None and not self._progress_bar_config.get("desc"):
            bar.set_description("token2wav ODE steps")
        for i, t in enumerate(scheduler.timesteps):
            velocity = self.dit(sample, t, conditioning, guidance_scale=guidance_scale).sample
            sample = scheduler.step(velocity, t, sample).prev_sample
            if (i + 1) % order:
                continue  # inside an ODE step: `sample` is where the next stage is evaluated, not a solution yet
            step = i // order
            if callback_on_step_end is not None:
                available = {"latents": sample}
                callback_kwargs = {k: available[k] for k in callback_on_step_end_tensor_inputs}
                outputs = callback_on_step_end(self, step, scheduler.time_grid[step + 1], callback_kwargs) or {}
                sample = outputs.pop("latents", sample)
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        return sample

    def solve_settings(self, num_inference_steps: int | None, guidance_scale: float | None) -> tuple[int, float]:
        """The call's grid points and guidance, the scheduler's config filling what the call leaves None."""
        config = self.scheduler.config
        steps = config.get("num_inference_steps", 10) if num_inference_steps is None else num_inference_steps
        guidance = config.get("guidance_scale", 0.5) if guidance_scale is None else guidance_scale
        return int(steps), float(guidance)

    # ---------------------------------------------------------------- the code-to-wave interface
    def speaker_conditioning(self, speaker) -> DiTSpeakerConditioning:
        """The DiT's conditioning for a `voices.Speaker` (its reference mel and x-vector)."""
        return DiTSpeakerConditioning(speaker.reference_mel, speaker.speaker_embedding)

    def decode(self, codes: torch.Tensor, conditioning: DiTSpeakerConditioning, generator=None, **options):
        """Speech codes `(n,)` → float32 waveform `(samples,)` at 24 kHz, one global ODE (the reference's numerics);
        `options`: the call's keyword arguments (`num_inference_steps`, `window`, ...)."""
        if codes.numel() == 0:
            return torch.zeros(0)
        output = self(
            codes.reshape(1, -1),
            reference_mel=conditioning.reference_mel,
            speaker_embedding=conditioning.speaker_embedding,
            generator=generator,
            **options,
        )
        return output.audios[0]

    def open_stream(
        self,
        conditioning: DiTSpeakerConditioning,
        window: StreamingWindow | None = None,
        generator=None,
        stage_context=None,
        batch_key=None,
        **options,
    ) -> Token2WavStream:
        """A [`Token2WavStream`] for one utterance of this speaker (`options`: see `Token2WavStream`)."""
        return Token2WavStream(
            self,
            conditioning.reference_mel,
            conditioning.speaker_embedding,
            window,
            generator=generator,
            stage_context=stage_context,
            batch_key=batch_key,
            keep_mel=False,  # a reply's audio is what it needs, not every chunk's mel
            **options,
        )

    def decode_streams(self, streams: list[Token2WavStream], dit_batches=None, max_wait: int = 0):
        """Advance several streams at once: DiT and vocoder windows batched (`streaming.decode_windows`)."""
        return decode_windows(streams, dit_batches, max_wait)

    @torch.no_grad()
    def __call__(
        self,
        codes: torch.Tensor,
        reference_mel: torch.Tensor | None = None,
        speaker_embedding: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        solver: str | None = None,
        sway_coefficient: float | None | str = "default",
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        window: StreamingWindow | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        schedule: str | None = None,
    ):
        """
        Args:
            codes: `(batch, codes)` speech codes in `[0, dit.config.num_embeds)` (50 per second).
            reference_mel: `(batch or 1, frames, 80)` the speaker's reference mel (`Speaker.reference_mel`).
            speaker_embedding: `(batch or 1, enc_emb_dim)` the speaker x-vector (`Speaker.speaker_embedding`).
            num_inference_steps: ODE grid points (default: the scheduler's; official 10 → 9 RK4 intervals, 36 DiT
                evaluations; a few-step student saves its own).
            guidance_scale: classifier-free guidance `c + s * (c - u)` (default: the scheduler's; official 0.5; 0
                disables it).
            solver: `"euler"`, `"midpoint"` or `"rk4"`; default: the scheduler's (rk4).
            sway_coefficient: sway sampling of the time grid (default: the scheduler's, official -1; None for a
                uniform grid).
            generator / latents: the initial noise `(batch, codes * 2, 80)`.
            output_type: `"pt"` / `"np"` waveforms `(batch, codes * 2 * 240)`, `"mel"` for the mel `(batch, 80,
                frames)`, `"latent"` for the ODE's solution `(batch, frames, 80)` (Diffusers' name; the vocoder is not
                run). Any other value (e.g. `"pil"`: no image here) is refused.
            window: decode in the streaming windows of this [`StreamingWindow`] (exactly what `stream` plays, with
                bounded memory for long audio) instead of one global ODE (the reference's numerics).
            callback_on_step_end: called after each ODE step (`num_inference_steps - 1` of them, not once per DiT
                evaluation) as `callback(pipeline, step, timestep, callback_kwargs)`
                (or a Diffusers `PipelineCallback` / `MultiPipelineCallbacks`); it may return `{"latents": ...}` to
                replace the sample `(batch, frames, mel_dim)`. Not with `window`.
            callback_on_step_end_tensor_inputs: the tensors passed in `callback_kwargs` (default `["latents"]`).
            schedule: a named schedule (`"paper"`, `"fast"`: see `scheduling_flow_match.SCHEDULES` and
                `benchmarks/token2wav_schedules.py` for their measured error), setting `solver`,
                `num_inference_steps` and `sway_coefficient` where the call leaves them unset.

        Returns:
            [`AudioPipelineOutput`] with `audios`, or a tuple when `return_dict=False`.
        """
        if schedule is not None:
            named = schedule_settings(schedule)
            solver = named["solver"] if solver is None else solver
            num_inference_steps = named["num_inference_steps"] if num_inference_steps is None else num_inference_steps
            sway_coefficient = named["sway_coefficient"] if sway_coefficient == "default" else sway_coefficient
        num_inference_steps, guidance_scale = self.solve_settings(num_inference_steps, guidance_scale)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(
                f"output_type must be one of {list(OUTPUT_TYPES)} (token2wav makes audio), got {output_type!r}"
            )
        if (reference_mel is None) != (speaker_embedding is None):
            raise ValueError(
                "Pass both reference_mel and speaker_embedding, or neither (the pipeline's default speaker)"
            )
        if reference_mel is None and self.default_speaker is not None:
            reference_mel, speaker_embedding = (
                self.default_speaker.reference_mel,
                self.default_speaker.speaker_embedding,
            )
        self.check_inputs(codes, reference_mel, speaker_embedding, num_inference_steps)
        if output_type == "latent" and window is not None:
            raise ValueError('output_type="latent" is the global ODE solution: not with window=')
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = list(callback_on_step_end_tensor_inputs or self._callback_tensor_inputs)
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs has {unknown}: only {self._callback_tensor_inputs} are available"
            )
        if callback_on_step_end is not None and window is not None:
            raise ValueError("callback_on_step_end is not supported with window= (streaming windows)")
        codes = codes.unsqueeze(0) if codes.dim() == 1 else codes
        device, dtype = self._execution_device, self.dit.dtype
        batch = codes.shape[0]
        reference_mel = reference_mel.to(device, dtype).expand(batch, -1, -1)
        speaker_embedding = (
            speaker_embedding.to(device, dtype).reshape(speaker_embedding.shape[0], -1).expand(batch, -1)
        )
        self.dit.check_codes(codes)
        sample = self.prepare_latents(
            batch, codes.shape[1] * self.dit.config.repeats, dtype, device, generator, latents
        )
        if window is None:
            conditioning = self.dit.prepare_conditioning(
                codes.to(device), reference_mel, speaker_embedding, guidance_scale > 0
            )
            scheduler = self.scheduler_for(solver, sway_coefficient)
            sample = self.solve(
                sample,
                conditioning,
                scheduler,
                num_inference_steps,
                guidance_scale,
                progress=True,
                callback_on_step_end=callback_on_step_end,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            )
            mel = sample.transpose(1, 2)  # (batch, 80, frames)
            if output_type == "latent":
                self.maybe_free_model_hooks()
                return AudioPipelineOutput(audios=sample) if return_dict else (sample,)
        else:  # what `stream` plays, decoded at once
            mel, audios = [], []
            for row in range(batch):
                stream = Token2WavStream(
                    self,
                    reference_mel[row : row + 1],
                    speaker_embedding[row : row + 1],
                    window,
                    num_inference_steps,
                    guidance_scale,
                    solver,
                    sway_coefficient,
                    latents=sample[row : row + 1],
                )
                audios.append(torch.cat([*stream.push(codes[row]), *stream.finish()]))
                mel.append(torch.cat(stream.mel_chunks, dim=-1))
            mel = torch.cat(mel)
        if output_type == "mel":
            audios = mel
        else:
            audios = torch.stack(audios) if window is not None else self.vocoder(mel.to(self.vocoder.dtype))
            audios = audios.reshape(batch, -1).float()
            if output_type == "np":
                audios = audios.cpu().numpy().astype(np.float32)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (audios,)
        return AudioPipelineOutput(audios=audios)

    def stream(
        self,
        code_chunks: Iterable[torch.Tensor],
        reference_mel: torch.Tensor,
        speaker_embedding: torch.Tensor,
        window: StreamingWindow | None = None,
        **kwargs,
    ) -> Iterator[torch.Tensor]:
        """Decode codes as they arrive: yields float32 waveform chunks `(samples,)` at 24 kHz.

        Args:
            code_chunks: an iterable (e.g. a generator fed by the talker) of `(n,)` code tensors.
            reference_mel / speaker_embedding: the speaker, one utterance.
            window: the DiT chunking ([`StreamingWindow`]); a chunk's mel is decoded once the codes of its look-ahead
                block exist, and the vocoder emits samples once their receptive field is complete.
            kwargs: `num_inference_steps`, `guidance_scale`, `solver`, `sway_coefficient`, `generator`, `latents`,
                `vocoder_context` (see [`Token2WavStream`]).

        The concatenated chunks equal `self(codes, ..., window=window, latents=...)` on the same codes and noise.
        """
        stream = Token2WavStream(self, reference_mel, speaker_embedding, window, **kwargs)
        return stream_token2wav(stream, code_chunks)


__all__ = ["DiTSpeakerConditioning", "OmniToken2WavPipeline", "SAMPLING_RATE"]

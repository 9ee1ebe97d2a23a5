"""Which part of the full model a saved PEFT adapter fits, so `model.load_adapter(path)` loads it there or refuses.

An adapter trained on the Talker (a voice adapter) names `model.layers.N...` modules; on the full model the same
modules are `talker.model.layers.N...`, so transformers' `load_adapter` on the full model would inject LoRA layers
everywhere and load none of the tensors. Here the adapter's tensor names and shapes (read from its safetensors
header, nothing loaded) are matched against the full model, the Thinker and the Talker, and the parts it fits are
returned.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


def adapter_folder(path, **hub_kwargs) -> Path:
    """A local folder holding `adapter_config.json` (a Hub repo is downloaded), else a ValueError naming `path`."""
    local = Path(path)
    if not local.is_dir():
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(str(path), **hub_kwargs))
    if not (local / ADAPTER_CONFIG).is_file():
        raise ValueError(f"{str(path)!r} is not a PEFT adapter: it has no {ADAPTER_CONFIG}")
    if not (local / ADAPTER_WEIGHTS).is_file():
        raise ValueError(f"{str(path)!r} has no {ADAPTER_WEIGHTS}: only safetensors adapters are supported here")
    return local


def adapter_tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """`{tensor name: shape}` of the adapter's weights (its safetensors header only)."""
    with (folder / ADAPTER_WEIGHTS).open("rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    return {name: tuple(info["shape"]) for name, info in header.items() if name != "__metadata__"}


def _module_path(name: str) -> tuple[str, str]:
    """`base_model.model.a.b.lora_A.weight` → (`a.b`, `lora_A`)."""
    parts = name.removeprefix(PEFT_PREFIX).split(".")
    cut = next((i for i, part in enumerate(parts) if part.startswith("lora_")), len(parts) - 1)
    return ".".join(parts[:cut]), parts[cut] if cut < len(parts) else ""


def misfits(part: nn.Module, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The adapter tensors that do not fit `part`: a module it lacks, or a LoRA matrix of the wrong size."""
    modules = dict(part.named_modules())
    wrong = []
    for name, shape in shapes.items():
        path, kind = _module_path(name)
        module = modules.get(path)
        if module is None:
            wrong.append(f"{name} (no module {path})")
        elif isinstance(module, nn.Linear) and (
            (kind == "lora_A" and shape[-1] != module.in_features)
            or (kind == "lora_B" and shape[0] != module.out_features)
        ):
            wrong.append(f"{name} {list(shape)} (module {path}: {module.in_features} -> {module.out_features})")
    return wrong


def fitting_parts(model, shapes: dict[str, tuple[int, ...]]) -> dict[str, list[str]]:
    """`{part: misfits}` for the full model ("model"), its "thinker" and its "talker" (when present)."""
    parts = {"model": model, "thinker": model.thinker, "talker": model.talker}
    return {name: misfits(part, shapes) for name, part in parts.items() if part is not None}


__all__ = ["adapter_folder", "adapter_tensor_shapes", "fitting_parts", "misfits"]

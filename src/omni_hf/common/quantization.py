"""int8 weight-only Thinker and Talker through transformers' quantization integration (token2wav stays float32).

On CPU (and on GPU without bitsandbytes) the weights are quantized with torchao's `Int8WeightOnlyConfig` (per-row
int8, dequantized on the fly) via `transformers.TorchAoConfig`; on CUDA with bitsandbytes installed,
`BitsAndBytesConfig(load_in_8bit=True)` (LLM.int8) is used. The token2wav DiT and vocoder are never quantized:
they are small and their float32 output is what the listener hears.

    from omni_hf.common.quantization import load_int8
    thinker = load_int8(OmniThinkerForConditionalGeneration, "path/or/repo")          # CPU: torchao
    model = load_int8(OmniForConditionalGeneration, "path", device_map="cuda")         # GPU: bitsandbytes
"""

import importlib.util

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Never quantized: the speech decoder (float32), the audio/vision encoders' convolutions are linear-free anyway.
KEEP_FLOAT = ["token2wav"]


def int8_quantization_config(device: str | torch.device = "cpu", backend: str | None = None):
    """The transformers quantization config for int8 weight-only on `device`.

    Args:
        device: where the model will run; "cuda" picks bitsandbytes when it is installed.
        backend: force "torchao" or "bitsandbytes".
    """
    device = torch.device(device)
    if backend is None:
        has_bnb = importlib.util.find_spec("bitsandbytes") is not None
        backend = "bitsandbytes" if device.type == "cuda" and has_bnb else "torchao"
    if backend == "bitsandbytes":
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_FLOAT)
    if backend != "torchao":
        raise ValueError(f"backend must be 'torchao' or 'bitsandbytes', got {backend!r}")
    if importlib.util.find_spec("torchao") is None:
        raise ImportError("int8 weight-only on CPU needs torchao: pip install 'omni_hf[quantization]'")
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    return TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=KEEP_FLOAT)


def quantize_int8_(model: torch.nn.Module, parts: tuple[str, ...] = ("thinker", "talker")) -> torch.nn.Module:
    """Quantize the linear layers of `model`'s `parts` in place with torchao `Int8WeightOnlyConfig` (the same
    scheme `TorchAoConfig` applies at load); the full model's token2wav is left float32."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    for name in parts:
        quantize_(getattr(model, name), Int8WeightOnlyConfig())
    return model


def load_int8(model_class, pretrained_model_name_or_path, device_map=None, backend: str | None = None, **kwargs):
    """`model_class.from_pretrained(...)` with int8 weight-only linear layers (see the module docstring).

    A Thinker or Talker loads through transformers' quantization config. The full model (it has `thinker` and
    `talker` but no single input embedding, which transformers' torchao loader asks for) loads in float and its
    Thinker and Talker are quantized with the same torchao scheme (`quantize_int8_`); bitsandbytes is not
    supported for it."""
    device = device_map if isinstance(device_map, str | torch.device) else "cpu"
    config = int8_quantization_config(device, backend)
    if any(cls.__name__ == "OmniForConditionalGeneration" for cls in model_class.__mro__):
        if type(config).__name__ != "TorchAoConfig":
            raise NotImplementedError("int8 for the full model uses torchao; load the Thinker and Talker with bnb")
        model = model_class.from_pretrained(pretrained_model_name_or_path, device_map=device_map, **kwargs)
        return quantize_int8_(model)
    logger.info("Loading %s with %s int8 weight-only", model_class.__name__, type(config).__name__)
    return model_class.from_pretrained(
        pretrained_model_name_or_path, quantization_config=config, device_map=device_map, **kwargs
    )


def linear_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (quantized tensors count their packed storage)."""
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        data = tensor.data
        inner = getattr(data, "__tensor_flatten__", None)
        if inner is not None and type(data) is not torch.Tensor:
            names, _ = inner()
            total += sum(getattr(data, name).numel() * getattr(data, name).element_size() for name in names)
        else:
            total += data.numel() * data.element_size()
    return total


__all__ = ["KEEP_FLOAT", "int8_quantization_config", "linear_weight_bytes", "load_int8", "quantize_int8_"]

"""Hide log lines a user of omni_hf cannot act on (standard `logging` filters; nothing is imported to install them).

- torchao 0.18 with torch 2.13 on CPU (the `quantization` extra): "Failed to load .../_C_*.so" for its CUDA kernels,
  torch's "... is an Enum subclass and is now natively supported" about torchao's enums, and diffusers' "Unable to
  import `torchao` Tensor objects". int8 on CPU works without those kernels (`omni_hf.common.quantization`).
- transformers' own `Qwen2_5OmniTalkerConfig` checks the Talker's Thinker-vocabulary ids (`tts_text_*`,
  `audio_*`/`vision_*` start and end) against the codec vocabulary and warns on every official config it reads.

Set `OMNI_HF_SHOW_ALL_WARNINGS=1` to see them anyway.
"""

import logging
import os
import re

# logger name -> messages (regular expressions, matched at the start) that are dropped
HIDDEN = {
    "torchao": [r"Failed to load .*torchao.*_C_\w*.*\.so"],
    "torch.utils._pytree": [r"<enum '\w+'> is an Enum subclass and is now natively supported"],
    "diffusers.quantizers.torchao.torchao_quantizer": [r"Unable to import `torchao` Tensor objects"],
    "transformers.configuration_utils": [
        r"Model config: (tts_text_(start|end|pad)|audio_(start|end)|vision_(start|end))_token_id must be `None` or an "
        r"integer within the vocabulary"
    ],
}


class _DropMessages(logging.Filter):
    def __init__(self, patterns: list[str]):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not any(p.match(message) for p in self.patterns)


def install() -> None:
    """Add the filters (once) unless `OMNI_HF_SHOW_ALL_WARNINGS` is set."""
    if os.environ.get("OMNI_HF_SHOW_ALL_WARNINGS"):
        return
    for name, patterns in HIDDEN.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(patterns))


__all__ = ["HIDDEN", "install"]

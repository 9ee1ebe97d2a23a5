"""`disable_adapters()` / `enable_adapters()` for adapters loaded through transformers (`model.load_adapter`,
`model.add_adapter`), with the PEFT release these machines have.

transformers 5.24/5.25 refuse both (and `active_adapters`) unless peft >= 0.22, which is not released; their work is
PEFT's own public layer switch, `BaseTunerLayer.enable_adapters(bool)`, which PEFT 0.21 has. The voice adapters of
the full model (`model.voice_adapters`) are left alone: they are off unless a reply asks for one.
"""

from __future__ import annotations


class AdapterSwitchMixin:
    """`disable_adapters` / `enable_adapters` on the PEFT layers transformers injected into this model."""

    def _transformers_adapter_layers(self) -> list:
        try:
            from peft.tuners.tuners_utils import BaseTunerLayer
        except ImportError:
            raise ValueError("No adapter loaded (PEFT is not installed)") from None
        voices = set(getattr(getattr(self, "voice_adapters", None), "names", []))
        layers = [
            module
            for module in self.modules()
            if isinstance(module, BaseTunerLayer) and not set(module.active_adapters) <= voices
        ]
        if not layers:
            raise ValueError("No adapter loaded: load one with model.load_adapter(path) first")
        return layers

    def disable_adapters(self) -> None:
        """Run the base weights: every adapter loaded through transformers is switched off (kept loaded)."""
        for layer in self._transformers_adapter_layers():
            layer.enable_adapters(False)

    def enable_adapters(self) -> None:
        """Switch the adapters loaded through transformers back on."""
        for layer in self._transformers_adapter_layers():
            layer.enable_adapters(True)


__all__ = ["AdapterSwitchMixin"]

"""Register omni_hf with transformers' Auto classes without importing transformers at `import omni_hf`.

Importing torch, transformers' modeling code and diffusers takes seconds, so `import omni_hf` imports none of them:
its public names load on first use (`omni_hf.__getattr__`). The Auto classes still resolve our model types, because
the registration (`omni_hf.auto.register_auto_classes`) runs as soon as transformers' Auto machinery is loaded:

- at `import omni_hf`, when transformers' Auto modules are loaded already;
- else an import hook watches modules of `transformers` and `omni_hf` as they finish loading; once an Auto module
  (`transformers.models.auto.*_auto`) is loaded, the first moment no transformers or omni_hf module is half-way
  through its own import, the registration runs and the hook removes itself.

A registration that meets a half-imported module (an import cycle) is simply tried again at the next such moment.
"""

import importlib.abc
import importlib.machinery
import sys
import threading

_WATCHED = ("transformers.", "omni_hf.")
_AUTO_MODULES = (
    "transformers.models.auto.configuration_auto",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.processing_auto",
)
_lock = threading.RLock()
_state = {"done": False, "running": False}


def _initializing(module) -> bool:
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _auto_loaded() -> bool:
    return any(name in sys.modules for name in _AUTO_MODULES)


def try_register(finishing: str | None = None) -> bool:
    """Register the Auto classes now if transformers' Auto machinery is loaded and no import is under way (but the
    one of module `finishing`, which has just run). Returns whether omni_hf is registered."""
    with _lock:
        if _state["done"]:
            return True
        if _state["running"] or not _auto_loaded():
            return False
        watched = [m for n, m in list(sys.modules.items()) if n.startswith(_WATCHED) and n != finishing]
        if any(_initializing(m) for m in watched):
            return False
        _state["running"] = True
        try:
            from .auto import register_auto_classes

            register_auto_classes()
        except ImportError:  # an import cycle met a half-imported module: tried again at the next moment
            return False
        finally:
            _state["running"] = False
        _state["done"] = True
        _remove_hook()
        return True


class _RegisterAfterLoad(importlib.abc.Loader):
    """Runs the real loader, then `try_register`."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            self.loader.exec_module(module)
        finally:
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = self.loader  # reloads and introspection see the real loader
            if getattr(module, "__loader__", None) is self:
                module.__loader__ = self.loader
        try_register(finishing=module.__name__)

    def __getattr__(self, name):  # get_resource_reader, is_package, get_code, ... of the real loader
        return getattr(self.loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if _state["done"] or not fullname.startswith(_WATCHED):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisterAfterLoad(spec.loader)
                return spec
        return None


_FINDER = _Finder()


def _remove_hook() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def install() -> None:
    """Register now if possible, else watch imports until it is (called once by `import omni_hf`)."""
    if not try_register() and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


__all__ = ["install", "try_register"]

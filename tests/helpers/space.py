"""Import the Space's `spaces/omni_chat/app.py` as a module (its model is not loaded: tests hand it theirs)."""

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

APP = Path(__file__).resolve().parents[2] / "spaces" / "omni_chat" / "app.py"


def load_space_app(name: str, **env: str) -> ModuleType:
    """`app.py` as a fresh module named `name`, imported off Spaces (`SPACE_ID` unset) with `env` set while it
    imports (it reads `OMNI_*` settings then); the environment is put back afterwards."""
    spec = importlib.util.spec_from_file_location(name, APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    saved = {k: os.environ.get(k) for k in [*env, "SPACE_ID"]}
    os.environ.update(env)
    os.environ.pop("SPACE_ID", None)
    try:
        spec.loader.exec_module(module)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return module


__all__ = ["APP", "load_space_app"]

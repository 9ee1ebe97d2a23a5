"""Load a script of the checkout's `recipes/` folder as a module (tests call its `main(argv)`, the real entry point)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def load_recipe(name: str) -> ModuleType:
    """`recipes/<name>.py` as a fresh module named `<name>_recipe`."""
    path = RECIPES / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"No recipe {path}")
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


__all__ = ["RECIPES", "load_recipe"]

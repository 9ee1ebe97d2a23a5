"""Reading the recipes' input files with errors that name the file and the line: YAML configs, JSON-lines data,
and the `synthetic:N` stand-in data sources."""

import json
import os
from pathlib import Path


class RecipeInputError(ValueError):
    """A recipe input (config or data file) that cannot be used; the message names the file and, where known,
    the line."""


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """The mapping in YAML file `path` (`{}` when empty); a syntax error names the file, line and column."""
    import yaml

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise RecipeInputError(f"{where}: not valid YAML ({problem})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise RecipeInputError(f"{path} must hold a mapping of option: value, got {type(loaded).__name__}")
    return loaded


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSON-lines file; a malformed line is named by file and line number (1-based), an empty file is
    refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file {str(path)!r} does not exist")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise RecipeInputError(
                    f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(row, dict):
                raise RecipeInputError(f"{path}:{number}: each line must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise RecipeInputError(f"Data file {path} has no rows (it is empty)")
    return rows


def check_data_file(path: str | os.PathLike) -> None:
    """Before handing a local data file to `datasets`: an empty file, or a malformed JSON-lines row, is named here
    (`datasets` reports a bare StopIteration or a generic generation error)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise RecipeInputError(f"Data file {path} has no rows (it is empty)")
    if path.suffix == ".jsonl":
        read_jsonl(path)


def synthetic_count(source: str, option: str = "--data") -> int:
    """N of a `synthetic:N` data source (a positive integer)."""
    value = source.split(":", 1)[1]
    try:
        count = int(value)
    except ValueError:
        count = None
    if count is None or count <= 0:
        raise RecipeInputError(f"{option} {source}: expected synthetic:N with N a positive integer, e.g. synthetic:8")
    return count


__all__ = ["RecipeInputError", "check_data_file", "read_jsonl", "read_yaml_mapping", "synthetic_count"]

"""Command-line parsing shared by the recipes in `recipes/`: TRL's `TrlParser` (transformers' `HfArgumentParser`)
over dataclasses, with a YAML `--config` whose keys are the same options (flags given on the command line win).

Every field of the training config (`TrainingArguments`, `DPOConfig`, ...) is a flag: `--warmup_steps`,
`--report_to wandb`, `--per_device_train_batch_size`, `--push_to_hub --hub_model_id me/name`, ... The short
spellings of earlier omni_hf releases still work (`ALIASES`: `--batch_size`, `--repo_id`, `--warmup_ratio`).
"""

import copy
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers.utils import logging

from .recipe_inputs import RecipeInputError, read_yaml_mapping

logger = logging.get_logger(__name__)

# old omni_hf spelling -> the library's field name
ALIASES = {
    "batch_size": "per_device_train_batch_size",
    "repo_id": "hub_model_id",
    "warmup_ratio": "warmup_steps",  # transformers reads warmup_steps < 1 as a ratio of the total steps
    # transformers 5.24 deprecates `gradient_checkpointing*` (a FutureWarning per run): the same options, new names
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


@dataclass
class OutputArguments:
    """What a recipe may do with a non-empty `output_dir` (base of every recipe's script arguments)."""

    overwrite: bool = field(default=False, metadata={"help": "write into a non-empty output_dir"})
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in output_dir"})


def _translate(argv: Sequence[str]) -> list[str]:
    out = []
    for arg in argv:
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            arg = f"--{ALIASES.get(name, name)}{eq}{value}"
        out.append(arg)
    return out


def split_config(argv: Sequence[str] | None) -> tuple[list[str], Path | None]:
    """`argv` without `--config PATH` (aliases translated), and PATH."""
    argv = _translate(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[:i] + argv[i + 2 :], Path(argv[i + 1])
        if arg.startswith("--config="):
            return argv[:i] + argv[i + 1 :], Path(arg.split("=", 1)[1])
    return argv, None


def read_config(path: Path | None, parser) -> dict:
    """The YAML mapping at `path` (keys translated from `ALIASES`); a parser error naming the file otherwise."""
    if path is None:
        return {}
    if not path.is_file():
        parser.error(f"--config {path}: no such file")
    try:
        config = read_yaml_mapping(path)
    except RecipeInputError as error:  # a syntax error: file, line and column instead of a traceback
        parser.error(str(error))
    return {ALIASES.get(key, key): value for key, value in config.items()}


def option_value(name: str, argv: Sequence[str] | None, default=None):
    """The value of option `name` from the command line, else from the `--config` file, else `default` (used
    before full parsing, when other defaults depend on it, e.g. a recipe's `--stage`)."""
    from transformers import HfArgumentParser

    args, path = split_config(argv)
    for i, arg in enumerate(args):
        if arg == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return read_config(path, HfArgumentParser([])).get(name, default)


def parse_recipe_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    *,
    defaults: dict | None = None,
    required: Sequence[str] = (),
    description: str | None = None,
) -> tuple:
    """Parse `argv` (default `sys.argv[1:]`) into one instance per dataclass type, in order.

    Precedence: command-line flags > the `--config` YAML > `defaults` (the recipe's own) > the dataclasses'
    defaults. Unknown YAML keys and unknown flags, missing `required` options and a `--push_to_hub` that cannot
    succeed (no repo id, no token) are errors naming them (exit status 2), before any model is loaded.
    """
    import torch
    from trl import TrlParser

    parser = TrlParser(dataclass_types, description=description, allow_abbrev=False)  # a typo is not a prefix
    args, path = split_config(argv)
    config = read_config(path, parser)
    base = {}
    if any("use_cpu" in getattr(kind, "__dataclass_fields__", {}) for kind in dataclass_types):
        base["use_cpu"] = not torch.cuda.is_available()  # the GPU configs stay valid (bf16) for CPU smoke runs
    unknown = parser.set_defaults_with_config(**{**base, **(defaults or {}), **config})
    if unknown:
        parser.error(f"{path} has unknown options: {sorted({key[2:] for key in unknown[::2]})}")
    namespace, extra = parser.parse_known_args(args)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    missing = [name for name in required if getattr(namespace, name, None) in (None, "")]
    if missing:
        parser.error(f"missing options (give them as flags or in --config): {', '.join('--' + m for m in missing)}")
    if getattr(namespace, "push_to_hub", False):  # checked before training, so a long run never ends in a refused push
        from ..hub import check_repo_id, resolve_token

        if not getattr(namespace, "hub_model_id", None):
            parser.error("--push_to_hub needs --hub_model_id (or --repo_id)")
        try:
            check_repo_id(namespace.hub_model_id)
            resolve_token(getattr(namespace, "hub_token", None))
        except ValueError as error:
            parser.error(str(error))
    from .recipe_logging import apply_log_level

    level = getattr(namespace, "log_level", "passive")  # TrainingArguments' own field
    apply_log_level(None if level in (None, "passive") else level)  # else TRANSFORMERS_VERBOSITY, else warning
    return tuple(parser.parse_args_into_dataclasses(args=args))


def trainer_arguments(training_args, **changes):
    """A copy of `training_args` for the `Trainer` itself: `push_to_hub` off (recipes publish their final artifact
    once, with its card, not every checkpoint), plus `changes` (e.g. another `output_dir`)."""
    args = copy.copy(training_args)
    args.push_to_hub = False
    if args.use_cpu and args.bf16:
        logger.warning("bf16 needs a GPU: training in float32 on CPU")
        args.bf16 = False
    for name, value in changes.items():
        setattr(args, name, value)
    return args


def run_recipe(main, argv=None) -> None:
    """Run a recipe's `main(argv)` as a command: exit status 0 when it returned metrics, 1 when not; an input error
    (`ValueError`, `FileNotFoundError`) is printed as one line naming what is wrong, exit status 2, without a
    traceback (`OMNI_HF_TRACEBACK=1` shows it)."""
    import sys

    try:
        result = main() if argv is None else main(argv)
    except (ValueError, FileNotFoundError) as error:
        if os.environ.get("OMNI_HF_TRACEBACK"):
            raise
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if result else 1)


RECIPE_OUTPUT_MARKER = ".omni_hf_recipe_output"  # in every folder a recipe writes into: "--overwrite may replace me"


def check_output_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse a non-empty output directory unless the run resumes, or may overwrite a folder that an omni_hf recipe
    made (it holds `RECIPE_OUTPUT_MARKER`). A recipe writes fixed names (`README.md`, `config.json`, the
    weights) and rotates `checkpoint-*` folders, so `--overwrite` on any other folder could replace or delete the
    user's own files: it is refused, naming them, before any work. Marks the folder as a recipe's output."""
    output = Path(path)
    if output.exists() and not output.is_dir():
        raise SystemExit(f"{output} exists and is not a directory")
    found = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    entries = [name for name in found if name != RECIPE_OUTPUT_MARKER]  # a marker alone: another rank's just now
    if entries and not (overwrite or resume):
        raise SystemExit(f"{output} is not empty: choose another --output_dir, --resume, or pass --overwrite")
    if entries and overwrite and not resume and RECIPE_OUTPUT_MARKER not in found:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise SystemExit(
            f"{output} was not made by an omni_hf recipe (it holds {shown}): --overwrite only replaces a recipe's "
            "own output, so that none of your files is replaced or deleted; choose another --output_dir"
        )
    output.mkdir(parents=True, exist_ok=True)
    if resume:  # the folder of an earlier run: it is marked already (or predates the marker), nothing to add
        return output
    try:
        with open(output / RECIPE_OUTPUT_MARKER, "x") as marker:  # every rank may call this: the first one writes
            marker.write(
                "written by an omni_hf recipe: a later run with --overwrite may replace this folder's files\n"
            )
    except FileExistsError:
        pass
    return output


__all__ = [
    "ALIASES",
    "RECIPE_OUTPUT_MARKER",
    "OutputArguments",
    "check_output_dir",
    "option_value",
    "parse_recipe_args",
    "run_recipe",
    "read_config",
    "split_config",
    "trainer_arguments",
]

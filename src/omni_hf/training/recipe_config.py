"""Command-line options that may also come from a YAML file (`--config`), shared by the recipes in `recipes/`."""

import argparse
from collections.abc import Sequence
from pathlib import Path

from .recipe_inputs import RecipeInputError, read_yaml_mapping


def parse_with_config(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, required: Sequence[str] = ()
) -> argparse.Namespace:
    """Parse `argv`; the keys of the YAML file named by `--config` become defaults (flags given on the command line
    win). Unknown YAML keys and missing `required` options are errors naming them."""
    if not any(action.dest == "config" for action in parser._actions):
        parser.add_argument("--config", help="YAML file whose keys are this script's options (flags win)")
    args = parser.parse_args(argv)
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            parser.error(f"--config {args.config}: no such file")
        try:
            defaults = read_yaml_mapping(path)
        except RecipeInputError as error:  # a syntax error: file, line and column instead of a traceback
            parser.error(str(error))
        unknown = set(defaults) - set(vars(args))
        if unknown:
            parser.error(f"{args.config} has unknown options: {sorted(unknown)}")
        parser.set_defaults(**defaults)
        args = parser.parse_args(argv)
    missing = [name for name in required if getattr(args, name, None) in (None, "")]
    if missing:
        parser.error(f"missing options (give them as flags or in --config): {', '.join('--' + m for m in missing)}")
    if getattr(args, "push_to_hub", False):  # checked before training, so a long run never ends in a refused push
        from ..hub import check_repo_id, resolve_token

        if not getattr(args, "repo_id", None):
            parser.error("--push_to_hub needs --repo_id")
        try:
            check_repo_id(args.repo_id)
            resolve_token(None)
        except ValueError as error:
            parser.error(str(error))
    return args


def check_output_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse a non-empty output directory unless the run resumes or may overwrite (user files are never lost)."""
    output = Path(path)
    if output.exists() and not output.is_dir():
        raise SystemExit(f"{output} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not (overwrite or resume):
        raise SystemExit(f"{output} is not empty: choose another --output_dir, --resume, or pass --overwrite")
    return output


def push_output(folder: str | Path, repo_id: str, commit_message: str, exclude=()) -> str:
    """Upload a recipe's output folder, with the card it wrote (`README.md`), in one commit; returns the commit
    URL. Raises `omni_hf.hub.PushError` if the upload fails (a repo created for it is removed again)."""
    from ..common.staged_save import check_complete
    from ..hub import upload_folder_as_commit

    folder = Path(folder)
    check_complete(folder)  # never publish a folder an interrupted save left half-written
    card = folder / "README.md"
    if not card.is_file():
        raise FileNotFoundError(f"{folder} has no README.md card to publish")
    info = upload_folder_as_commit(folder, repo_id, card.read_text(), commit_message=commit_message, exclude=exclude)
    return info.commit_url


__all__ = ["check_output_dir", "parse_with_config", "push_output"]

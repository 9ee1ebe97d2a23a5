"""Staged saves: an artifact is written whole into a sibling staging folder, then moved into place.

A new folder appears in one `rename`, so a reader sees nothing or the whole artifact. Into an existing folder, the
files are moved in under a marker (`.omni_hf_incomplete`): a save killed part-way leaves the marker, and every
omni_hf loader then refuses the folder with a clear error (`check_complete`) instead of loading a mix of old and new.

Several processes may save into one folder at once (every rank of a training run, two `omni-hf speaker add`):
commits into one parent folder take turns under a lock on that folder, so each save lands whole, one after the other,
and the last one's files are what the folder holds. A save killed before its commit leaves a hidden staging folder;
the next save beside it removes those of processes that no longer run on this host.

Each save names the `part` it writes ("model", "processor", "speakers", ...). The folder's manifest
(`.omni_hf_saved.json`) records the files of each part, so an overwrite removes what the same part wrote last time
and is not written now (nothing stale), while files no part of ours wrote — the user's — are kept.

Example:

```python
>>> with staged_save("out/model", part="model") as stage:
...     write_everything_into(stage)  # an exception here leaves out/model untouched
```
"""

import errno
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transformers.utils import logging

logger = logging.get_logger(__name__)

MANIFEST = ".omni_hf_saved.json"
INCOMPLETE = ".omni_hf_incomplete"


class IncompleteSaveError(OSError):
    """The folder was left half-written by an interrupted save."""


def check_complete(directory: str | os.PathLike) -> None:
    """Raise `IncompleteSaveError` when `directory` (or the artifact folder holding it) is half-written."""
    directory = Path(directory)
    for folder in (directory, directory.parent):
        if (folder / INCOMPLETE).is_file():
            raise IncompleteSaveError(
                f"{folder} was left half-written by an interrupted save ({INCOMPLETE} is present) and may mix old "
                "and new files: save it again (the same save completes it) or restore it from a copy"
            )


def check_complete_if_local(path, subfolder: str = "") -> None:
    """`check_complete` for a local folder; Hub repo ids and files pass through. A name that can only be a local
    path (absolute, `./`, `../`, `~`, or with more than one `/`) but is not a folder is refused by name, instead of
    the Hub's "Repo id must be in the form ..." it would otherwise get."""
    folder = Path(str(path)) / (subfolder or "")
    if folder.is_dir():
        check_complete(folder)
    elif isinstance(path, (str, os.PathLike)) and not Path(str(path)).exists() and _looks_local(str(path)):
        raise FileNotFoundError(
            f"{str(path)!r} is not a folder (nothing is there), and not a Hub repo id like 'Qwen/Qwen2.5-Omni-7B'"
        )


def _looks_local(name: str) -> bool:
    return os.path.isabs(name) or name.startswith(("./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name


def read_manifest(directory: str | os.PathLike) -> dict[str, list[str]]:
    """The files each part wrote into `directory` at its last save (`{}` for a folder we never saved into)."""
    try:
        parts = json.loads((Path(directory) / MANIFEST).read_text())["parts"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return {}
    return {str(k): [str(f) for f in v] for k, v in parts.items()} if isinstance(parts, dict) else {}


def _files(root: Path) -> list[str]:
    """Relative paths (posix) of the files under `root`, without the top-level manifest and marker."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            relative = (Path(folder) / name).relative_to(root).as_posix()
            if relative not in (MANIFEST, INCOMPLETE):
                found.append(relative)
    return sorted(found)


def _write_manifest(path: Path, parts: dict[str, list[str]]) -> None:
    staged = path.with_name(path.name + ".partial")
    staged.write_text(json.dumps({"parts": parts}, indent=1, sort_keys=True) + "\n")
    os.replace(staged, path)


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as error:  # another file system (the folder is a symlink): copy beside the target, then rename
        if error.errno != errno.EXDEV:
            raise
        partial = target.with_name(f".{target.name}.partial")
        shutil.copy2(source, partial)
        os.replace(partial, target)


def _prune_empty_parents(path: Path, root: Path) -> None:
    folder = path.parent
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


_HELD: dict[tuple[int, int], list] = {}  # (device, inode) -> [thread lock, descriptor, depth] of folders locked here
_HELD_GUARD = threading.Lock()


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` itself (flock on its descriptor: nothing is written into it), against other
    processes and other threads; re-entrant in the thread that holds it. Where flock is missing (Windows), only the
    threads of one process are serialised."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None
    info = os.stat(folder)
    key = (info.st_dev, info.st_ino)
    with _HELD_GUARD:
        held = _HELD.setdefault(key, [threading.RLock(), None, 0])
    with held[0]:
        if held[2] == 0 and fcntl is not None:
            descriptor = os.open(folder, os.O_RDONLY)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            held[1] = descriptor
        held[2] += 1
        try:
            yield
        finally:
            held[2] -= 1
            if held[2] == 0 and held[1] is not None:
                os.close(held[1])  # closing releases the flock
                held[1] = None


@contextmanager
def exclusive_folder(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold `directory` (an existing artifact folder) for a read-modify-write, such as adding a speaker to a model's
    bank: other processes and threads doing the same wait, so neither loses the other's change."""
    directory = Path(os.path.abspath(directory))
    with _folder_lock(directory):
        yield directory


def _staging_prefix(directory: Path) -> str:
    return f".{directory.name}.staging-"


def _remove_abandoned_stagings(directory: Path) -> None:
    """Remove the staging folders beside `directory` that saves killed on this host left behind (their process no
    longer runs). Another host's (a shared file system) are left alone: their processes cannot be checked here."""
    host = socket.gethostname().replace("-", "_")
    for staging in directory.parent.glob(_staging_prefix(directory) + "*"):
        fields = staging.name[len(_staging_prefix(directory)) :].split("-")
        if len(fields) != 3 or fields[0] != host or not fields[1].isdigit():
            continue
        try:
            os.kill(int(fields[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
            logger.info("Removed %s, left by a save that was killed", staging)
        except PermissionError:  # another user's live process
            continue


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _usual_permissions(staging: Path, umask: int) -> None:
    """Give the staged files the permissions a plain `open(..., "w")` gives under `umask` (0644 for the usual 022):
    writers that stage through a private temp file (safetensors: 0600) must not leave saves unreadable to others."""
    for root, _, names in os.walk(staging):
        for name in names:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            executable = os.stat(path).st_mode & 0o111
            os.chmod(path, (0o777 if executable else 0o666) & ~umask)


def commit(staging: Path, directory: Path, part: str) -> None:
    """Move the files of `staging` into `directory` as `part` (see the module docstring). Commits into one parent
    folder take turns, so two processes saving the same folder both land whole, one after the other. The files
    get the user's umask (not a temp file's 0600)."""
    _usual_permissions(staging, _current_umask())
    with _folder_lock(directory.parent):
        _commit_locked(staging, directory, part)


def _commit_locked(staging: Path, directory: Path, part: str) -> None:
    written = _files(staging)
    if not directory.exists():
        _write_manifest(staging / MANIFEST, {part: written})
        try:
            os.rename(staging, directory)  # one step: the folder appears whole
            return
        except OSError as error:  # created meanwhile by a writer that does not take the lock: merge into it
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not directory.is_dir():
                raise
            (staging / MANIFEST).unlink()
    if not directory.is_dir():
        raise NotADirectoryError(f"Cannot save into {directory}: it exists and is not a folder")
    clashes = [name for name in written if (directory / name).is_dir() and not (directory / name).is_symlink()]
    if clashes:
        raise IsADirectoryError(f"Cannot save into {directory}: {clashes} exist there as folders")
    parts = read_manifest(directory)
    others = {name for other, names in parts.items() if other != part for name in names}
    stale = [name for name in parts.get(part, []) if name not in written and name not in others]
    marker = directory / INCOMPLETE
    marker.write_text(f"an omni_hf save of {part!r} is moving files in\n")
    for name in stale:
        target = directory / name
        if target.is_file() or target.is_symlink():
            target.unlink()
            _prune_empty_parents(target, directory)
    for name in written:
        _move(staging / name, directory / name)
    _write_manifest(directory / MANIFEST, {**parts, part: written})
    marker.unlink()
    if stale:
        logger.info("Removed %d file(s) the previous %s save left in %s: %s", len(stale), part, directory, stale)


@contextmanager
def staged_save(directory: str | os.PathLike, part: str) -> Iterator[Path]:
    """Yield an empty staging folder beside `directory`; when the block ends without error, move its files into
    `directory` as `part`. On error the staging folder is removed and `directory` is untouched."""
    directory = Path(os.path.abspath(directory))
    directory.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_stagings(directory)
    owner = f"{socket.gethostname().replace('-', '_')}-{os.getpid()}-"  # host and process: see the cleanup above
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(directory) + owner, dir=directory.parent))
    staging.chmod(0o777 & ~_current_umask())  # a new folder gets the usual permissions, not mkdtemp's 0700
    try:
        yield staging
        commit(staging, directory, part)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a small text file beside its target, then rename it into place."""
    path = Path(path)
    staged = path.with_name(f".{path.name}.partial")
    staged.write_text(text)
    os.replace(staged, path)


__all__ = [
    "INCOMPLETE",
    "MANIFEST",
    "IncompleteSaveError",
    "check_complete",
    "check_complete_if_local",
    "exclusive_folder",
    "read_manifest",
    "staged_save",
    "write_text_atomic",
]

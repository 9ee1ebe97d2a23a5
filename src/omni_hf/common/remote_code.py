"""A self-contained code set for `trust_remote_code`, written with a saved checkpoint.

transformers copies a remote-code module and its *same-folder* relative imports (`from .x import y`) into its module
cache, while omni_hf's source tree is organised by stage (`thinker/`, `talker/`, `common/`, ...). At save time we
therefore gather every omni_hf module that the saved classes import (at module level or inside functions), rewrite
each `from ..pkg.module import name` to `from .module import name`, and write them side by side. Module base names
are unique across the package, which keeps the flattened names unambiguous.

Where the files go. transformers' loader (`get_class_from_dynamic_module`, 5.24) splits an `auto_map` value on its one
dot into a file and a class, and fetches `<file>.py` by its path in the repo, so the file may lie in a folder:
`"omni_code/modeling_omni.OmniForConditionalGeneration"` loads `omni_code/modeling_omni.py` and then its
relative imports from that same folder (local folders and Hub repos alike). What it does not allow: a dot in the
folder name, or relative imports across folders (`from ..x`, `from .pkg.x`: it looks for `pkg.x.py`). So the
transformers code set lives in one folder, `CODE_FOLDER`, instead of ~56 files at the top of the checkpoint. Diffusers'
loader is stricter (the pipeline file at the folder's root, each component's file beside its weights), so the token2wav
pipeline keeps its flat files (`folder=None`).

Missing packages. transformers checks a remote module's imports (`check_imports`) but, for a local folder, only those
of the entry file: a package the rest of the set needs surfaced as a bare "No module named 'av'" later. Each entry
file therefore names every third-party package of the set in an `if TYPE_CHECKING:` block (never run, read by
`check_imports`), so a missing one fails up front with transformers' "This modeling file requires the following
packages that were not found in your environment: ... Run `pip install ...`".
"""

import ast
import os
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # src/omni_hf
PACKAGE = PACKAGE_ROOT.name
CODE_FOLDER = "omni_code"  # the transformers code set of a saved folder (no dot: see the module docstring)
# omni_hf's core dependencies (pyproject `dependencies`, by import name): the only packages a code set may need.
CORE_PACKAGES = frozenset(
    {"torch", "transformers", "diffusers", "accelerate", "huggingface_hub", "safetensors", "tokenizers", "numpy"}
    | {"scipy", "soundfile", "av", "PIL", "tqdm"}
)


def _module_file(dotted: str) -> Path:
    """`thinker.modeling_thinker` → its file (a package resolves to its `__init__.py`)."""
    path = PACKAGE_ROOT.joinpath(*dotted.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _import_base(importer: str, node: ast.ImportFrom) -> str | None:
    """The omni_hf module or package (dotted, relative to the package) named by a `from X import` statement."""
    if node.level == 0:
        if not (node.module or "").startswith(PACKAGE):
            return None
        return ".".join(node.module.split(".")[1:])
    package = importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
    return ".".join(base)


def _resolve(importer: str, node: ast.ImportFrom) -> list[str]:
    """The omni_hf modules (dotted, relative to the package) a `from ... import ...` statement reads."""
    dotted = _import_base(importer, node)
    if dotted is None:
        return []
    if _module_file(dotted).name != "__init__.py":
        return [dotted] * len(node.names)
    # `from ..pkg import name`: a submodule named `name`, else the module of the package that defines it
    found = []
    for alias in node.names:
        sub = f"{dotted}.{alias.name}" if dotted else alias.name
        if _module_file(sub).is_file() and _module_file(sub).name != "__init__.py":
            found.append(sub)
        else:
            found.append(_defining_module(dotted, alias.name))
    return found


def _defining_module(package: str, name: str) -> str:
    init = _module_file(package)
    tree = ast.parse(init.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias, target in zip(node.names, _resolve(f"{package}.__init__", node)):
                if (alias.asname or alias.name) == name:
                    return target
    raise ValueError(f"Cannot find where {PACKAGE}.{package} defines {name!r} for the remote-code set")


def code_closure(modules: list[str]) -> list[str]:
    """Every omni_hf module the given ones import, directly or not (dotted names relative to the package)."""
    seen: list[str] = []
    todo = list(modules)
    while todo:
        dotted = todo.pop()
        if dotted in seen:
            continue
        seen.append(dotted)
        tree = ast.parse(_module_file(dotted).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                todo.extend(_resolve(dotted, node))
    names = [m.split(".")[-1] for m in seen]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise ValueError(f"Module base names must be unique for the remote-code set, found twice: {sorted(clashes)}")
    return sorted(seen)


def _optional_package(node: ast.AST) -> str | None:
    """The top-level package of an absolute import that is neither the standard library nor a core dependency."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
    else:
        return None
    for name in names:
        top = name.split(".")[0]
        if top != PACKAGE and top not in CORE_PACKAGES and top not in sys.stdlib_module_names:
            return top
    return None


def _guard_optional_import(dotted: str, node: ast.AST, lines: list[str]) -> tuple[int, int, int, str]:
    """Wrap a lazy import of an optional package (peft, trl, ...) in `try: ... except ImportError: raise`.

    Same behaviour when run (the import still raises where it is reached), but transformers' `check_imports` skips
    imports inside `try` blocks, so loading the code set needs only the core dependencies."""
    if node.col_offset == 0:
        raise ValueError(
            f"{PACKAGE}.{dotted} imports the optional package {_optional_package(node)!r} at module level: the "
            "remote-code set must load with the core dependencies only (import it inside the function using it)."
        )
    indent = lines[node.lineno - 1][: node.col_offset]
    body = "".join(lines[node.lineno - 1 : node.end_lineno])[node.col_offset :].rstrip("\n")
    body = body.replace("\n", "\n    ")
    return (
        node.lineno,
        node.end_lineno,
        node.col_offset,
        f"try:\n{indent}    {body}\n{indent}except ImportError:\n{indent}    raise",
    )


def _flatten(dotted: str) -> str:
    """The module's source with omni_hf imports pointing at the flat siblings (and optional imports guarded)."""
    source = _module_file(dotted).read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    edits = []
    for node in ast.walk(tree):
        if _optional_package(node) is not None:
            edits.append(_guard_optional_import(dotted, node, lines))
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        targets = _resolve(dotted, node)
        if not targets:
            continue
        indent = lines[node.lineno - 1][: node.col_offset]
        groups: dict[str, list[str]] = {}
        for alias, target in zip(node.names, targets):
            base = _import_base(dotted, node)
            is_submodule = target == (f"{base}.{alias.name}" if base else alias.name)
            module = "" if is_submodule else target.split(".")[-1]
            groups.setdefault(module, []).append(f"{alias.name} as {alias.asname}" if alias.asname else alias.name)
        text = "\n".join(
            f"{indent if i else ''}from .{module} import {', '.join(names)}"
            for i, (module, names) in enumerate(groups.items())
        )
        edits.append((node.lineno, node.end_lineno, node.col_offset, text))
    for start, end, col, text in sorted(edits, reverse=True):
        lines[start - 1 : end] = [lines[start - 1][:col] + text + "\n"]
    return "".join(lines)


def third_party_packages(source: str) -> list[str]:
    """The top-level packages a module's source imports that are neither the standard library nor omni_hf, outside
    `try` blocks (what transformers' `check_imports` would require)."""
    found = set()

    def visit(node):
        if isinstance(node, ast.Try):
            return
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top != PACKAGE and top not in sys.stdlib_module_names:
                found.add(top)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return sorted(found)


def _requirements_block(packages: list[str]) -> str:
    lines = "".join(f"    import {name}  # noqa: F401\n" for name in packages)
    return (
        "\n# Every third-party package of this code set, for transformers' `check_imports` (it reads only the entry file"
        "\n# of a local folder): a missing one is named up front. Never run.\n"
        "import typing as _typing  # noqa: E402\n\n"
        f"if _typing.TYPE_CHECKING:\n{lines}"
    )


def write_code_set(
    classes: list[type],
    save_directory: str | os.PathLike,
    import_all_in_entry: bool = False,
    folder: str | None = "",
) -> list[str]:
    """Write the code set that defines `classes` into `save_directory/folder` (`folder=None`: `save_directory`
    itself, flat); returns the paths written, relative to `save_directory`.

    With `import_all_in_entry` (diffusers' need: it copies only the *direct* relative imports of a remote-code file
    into its module cache), the classes' own modules also import every other module of the set directly, and the
    set is flat by default (diffusers wants the files beside the weights); otherwise it goes to `CODE_FOLDER`. The
    classes' own modules name every third-party package of the set (see the module docstring).
    Only files this function writes are touched: a `.py` file of the same name is replaced, nothing else."""
    if folder == "":
        folder = None if import_all_in_entry else CODE_FOLDER
    entries = [cls.__module__.split(".", 1)[1] for cls in classes]
    closure = [m for m in code_closure(entries) if _module_file(m).name != "__init__.py"]
    sources = {dotted: _flatten(dotted) for dotted in closure}
    packages = sorted({package for source in sources.values() for package in third_party_packages(source)})
    target_folder = Path(save_directory) / folder if folder else Path(save_directory)
    target_folder.mkdir(parents=True, exist_ok=True)
    written = []
    for dotted, source in sources.items():
        name = dotted.split(".")[-1] + ".py"
        if dotted in entries:
            if import_all_in_entry:
                others = [m.split(".")[-1] for m in closure if m not in entries]
                source += "\n# diffusers copies only a remote-code file's direct relative imports: name every module of the set.\n"
                source += "".join(f"from .{m} import __name__ as _{m}_module  # noqa: E402, F401\n" for m in others)
            source += _requirements_block(packages)
        target = target_folder / name
        staged = target.with_name(f".{name}.partial")
        staged.write_text(source, encoding="utf-8")
        os.replace(staged, target)
        written.append(f"{folder}/{name}" if folder else name)
    return written


def auto_map_entry(cls: type, folder: str | None = CODE_FOLDER) -> str:
    """`folder/module.Class` as it reads in the code set (`auto_map` value; `module.Class` for a flat set)."""
    module = f"{cls.__module__.split('.')[-1]}.{cls.__name__}"
    return f"{folder}/{module}" if folder else module


__all__ = ["CODE_FOLDER", "auto_map_entry", "code_closure", "third_party_packages", "write_code_set"]

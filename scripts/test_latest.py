#!/usr/bin/env python3
"""`make test-latest`: the test suite on the newest versions pyproject.toml allows, and who breaks it.

1. A separate venv (default `.venv-latest`, which does not see the system's packages) gets `omni-hf[dev,quantization]`
   at the newest releases the ranges allow (torch: the CPU pin; `--newest-torch` takes the newest torch too).
2. The suite runs there. Each package newer than the lock is listed.
3. For each failing test, each newer package is put back to its locked version on its own and the failures are run
   again: a package whose locked version makes failures pass is named as the one whose newer release breaks them.

Prints a summary and writes it as JSON to `<venv>/test-latest.json`. Exits 0 when the suite passes on the newest
versions, 1 when it does not (the drift to look at), 2 when the set-up itself failed.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Checked first when a failure is traced to a package: the libraries omni_hf builds on.
KEY_PACKAGES = ["transformers", "diffusers", "trl", "peft", "accelerate", "huggingface-hub", "tokenizers", "datasets",
                "safetensors", "gradio", "gradio-client", "fastapi", "openai", "torchao", "numpy"]  # fmt: skip


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, **kwargs)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(\s*;\s*(.*))?$", line)
        if match and (match.group(4) is None or _marker_holds(match.group(4))):
            pins[normalise(match.group(1))] = match.group(2)
    return pins


try:
    from packaging.markers import Marker
    from packaging.version import Version
except ImportError:  # pip vendors packaging
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.version import Version


def _marker_holds(marker: str) -> bool:
    return Marker(marker).evaluate()


def _version(text: str):
    return Version(text)


def installed_versions(python: str) -> dict[str, str]:
    script = "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True).stdout
    return {normalise(k): v for k, v in json.loads(out).items()}


def failures_of(output: str) -> list[str]:
    """Node ids of failed tests and errors from pytest's short summary (`-rfE`)."""
    found = []
    for line in output.splitlines():
        match = re.match(r"^(FAILED|ERROR) (\S+)", line)
        if match:
            found.append(match.group(2))
    return list(dict.fromkeys(found))


def pytest(python: str, targets: list[str], extra: list[str]) -> tuple[int, str]:
    command = [python, "-m", "pytest", "-q", "-rfE", *extra, *targets]
    print("+", " ".join(command), flush=True)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line)
    return process.wait(), "".join(lines)


def pip_install(python: str, *args: str) -> bool:
    return run([python, "-m", "pip", "install", "-q", *args]).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=".venv-latest")
    parser.add_argument("--lock", default="requirements/lock.txt")
    parser.add_argument("--torch", default="torch==2.13.0", help="installed when the venv has no torch")
    parser.add_argument("--newest-torch", action="store_true", help="also upgrade torch (a CUDA build on PyPI)")
    parser.add_argument("--skip-install", action="store_true", help="reuse the venv as it is")
    parser.add_argument("--max-tries", type=int, default=30, help="packages tried when tracing failures")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, e.g. a test path")
    args = parser.parse_args()

    venv = ROOT / args.venv
    python = str(venv / "bin" / "python")
    if not args.skip_install:
        # Not seeing the system's packages: an older copy there would satisfy a range and hide the newest release.
        if not Path(python).exists() and run([sys.executable, "-m", "venv", str(venv)]).returncode:
            return 2
        if run([python, "-c", "import torch"], capture_output=True).returncode and not pip_install(python, args.torch):
            return 2
        upgrade = ["--upgrade", "--upgrade-strategy", "eager", "-e", ".[dev,quantization]"]
        if args.newest_torch:
            upgrade.append("torch")
        else:  # eager upgrades would replace torch too (on PyPI: a CUDA build of several GB)
            keep = venv / "keep-torch.txt"
            keep.write_text(f"torch=={installed_versions(python)['torch']}\n")
            upgrade += ["-c", str(keep)]
        if not pip_install(python, *upgrade):
            return 2
    if run(["bash", "scripts/ensure_test_deps.sh", python]).returncode:
        return 2

    locked = read_lock(ROOT / args.lock)
    newest = installed_versions(python)
    newer = {name: (locked[name], newest[name]) for name in locked if name in newest and newest[name] != locked[name]}
    print("\nPackages at another version than the lock:" if newer else "\nEvery locked package is at its version.")
    for name, (old, new) in sorted(newer.items()):
        later = _version(new) > _version(old)
        print(
            f"  {name}: {old} -> {new}" + ("" if later else "  (older: a copy outside the venv satisfies the range)")
        )

    code, output = pytest(python, list(args.pytest_args), [])
    failing = failures_of(output)
    blamed: dict[str, list[str]] = {}
    if code not in (0, 5) and failing:
        order = [n for n in map(normalise, KEY_PACKAGES) if n in newer] + sorted(
            set(newer) - set(map(normalise, KEY_PACKAGES))
        )
        for name in order[: args.max_tries]:
            if all(any(test in fixed for fixed in blamed.values()) for test in failing):
                break  # every failure is explained
            old, new = newer[name]
            print(f"\n--- does {name} {new} break them? trying {name}=={old}", flush=True)
            if not pip_install(python, "--no-deps", f"{name}=={old}"):
                continue
            _, again = pytest(python, failing, ["-p", "no:randomly"])
            still = set(failures_of(again))
            fixed = [test for test in failing if test not in still and " passed" in again]
            if fixed:
                blamed[name] = fixed
            pip_install(python, "--no-deps", f"{name}=={new}")

    summary = {
        "exit_code": code,
        "newer": {k: {"locked": v[0], "newest": v[1]} for k, v in sorted(newer.items())},
        "failing": failing,
        "broken_by": blamed,
        "unexplained": [t for t in failing if not any(t in fixed for fixed in blamed.values())],
    }
    (venv / "test-latest.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n==== make test-latest ====")
    print(
        f"{len(newer)} package(s) at another version than the lock; the suite {'passed' if code == 0 else 'FAILED'}."
    )
    for name, tests in blamed.items():
        old, new = newer[name]
        print(f"BREAKS: {name} {new} (locked {old}) fails {len(tests)} test(s): {', '.join(tests[:5])}"
              + (" ..." if len(tests) > 5 else ""))  # fmt: skip
    if summary["unexplained"]:
        print(f"Not explained by any single package: {', '.join(summary['unexplained'][:10])}")
    print(f"Details: {os.path.relpath(venv / 'test-latest.json', ROOT)}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

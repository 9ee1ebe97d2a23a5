#!/usr/bin/env bash
# Refresh requirements/lock.txt: the exact versions `make venv`/`make test`/.ci/run install (as pip constraints).
# Run it after changing a range in pyproject.toml or to move the lock forward, then run `make test` on a fresh clone
# and commit the lock only if the suite is green. Needs uv (`pip install uv`).
#   scripts/lock.sh                    # newest versions the ranges allow today
#   scripts/lock.sh --exclude-newer 2026-11-30T12:00:00Z   # as they were on a given day
# torch is resolved at the CPU pin the Makefile installs (TORCH_CPU) but left out of the lock with everything only
# torch needs (CUDA wheels, triton, sympy ...): a user's own torch is kept, never replaced by the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null 2>&1 || { echo "scripts/lock.sh needs uv: pip install uv" >&2; exit 1; }
TORCH_PIN="${TORCH_PIN:-$(sed -n 's/^TORCH_CPU ?= *//p' Makefile)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "$TORCH_PIN" >"$tmp/torch.txt"
# resemblyzer (the offline speaker encoder of omni-hf eval) asks for the `typing` backport; its newest release is for
# Python < 3.5 only and pip refuses it on 3.11, so the lock takes the last one pip installs there.
echo "typing<3.8" >>"$tmp/torch.txt"
uv pip compile pyproject.toml --extra dev --extra quantization --universal --python-version 3.11 --no-header --quiet \
  -c "$tmp/torch.txt" "$@" -o "$tmp/full.txt"
python3 - "$tmp/full.txt" requirements/lock.txt "$TORCH_PIN" <<'PY'
"""Drop torch and every package that only torch (or what only torch needs) pulls in."""
import re
import sys

src, dst, torch_pin = sys.argv[1:]
blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", open(src).read()) if b.strip()]
name_of = lambda line: re.split(r"[=;\s]", line, maxsplit=1)[0].lower()  # noqa: E731
vias = {}
for block in blocks:
    lines = block.splitlines()
    found = set()
    for line in lines[1:]:
        text = line.strip().lstrip("#").strip()
        text = text[len("via"):].strip() if text.startswith("via") else text
        if text and not text.startswith("-r") and not text.startswith("-c"):
            found.add(text.split()[0].lower())
    vias.setdefault(name_of(lines[0]), set()).update(found)
dropped = {"torch"}
changed = True
while changed:
    changed = False
    for name, parents in vias.items():
        if name not in dropped and parents and parents <= dropped:
            dropped.add(name)
            changed = True
kept = [b for b in blocks if name_of(b.splitlines()[0]) not in dropped]
header = (
    "# The versions the test suite was last green on: pip constraints for `make venv/test/demo` and .ci/run.\n"
    "# Made by scripts/lock.sh (uv pip compile, universal for Python >= 3.11); do not edit by hand.\n"
    f"# Resolved with {torch_pin} (the CPU build the Makefile installs when no torch is importable); torch and\n"
    f"# what only torch needs are left out so that a user's own torch is kept: {', '.join(sorted(dropped))}.\n"
)
open(dst, "w").write(header + "\n".join(b.rstrip() for b in kept) + "\n")
print(f"wrote {dst}: {len(kept)} packages ({len(dropped)} torch-only left out)")
PY

"""`make test` checks the test tools first (scripts/ensure_test_deps.sh): a non-root user without them gets one
message with the exact commands, before any test runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "scripts" / "ensure_test_deps.sh"


def _bare_path(tmp_path: Path, uid: str) -> str:
    """A PATH with only what the script itself needs (no espeak-ng, ffmpeg, apt-get); `id -u` answers `uid`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "id").write_text(f"#!{shutil.which('bash')}\necho {uid}\n")
    (bin_dir / "id").chmod(0o755)
    return str(bin_dir)


def test_missing_tools_stop_with_the_exact_commands(tmp_path):
    env = {"PATH": _bare_path(tmp_path, "1000"), "OMNI_CHROMIUM": str(tmp_path / "no-chromium")}
    result = subprocess.run(
        [shutil.which("bash"), str(SCRIPT), sys.executable], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "sudo apt-get update && sudo apt-get install -y espeak-ng ffmpeg chromium" in result.stderr
    assert result.stdout == ""


def test_makefile_checks_before_pytest_and_ci_only_calls_make():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert recipe.index("ensure_test_deps.sh") < recipe.index("pytest")
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test" and not any("apt-get" in line for line in ci)
    assert os.access(SCRIPT, os.X_OK)

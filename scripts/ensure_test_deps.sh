#!/usr/bin/env bash
# What the tests need besides the Python packages of `.[dev]`: Debian's espeak-ng (test speech), ffmpeg (gradio's
# streaming audio) and chromium (the browser test drives it through Playwright's `executable_path`, so no
# `playwright install` download is needed). Run by `make test` before any test.
# As root with apt-get: installs what is missing. Otherwise: prints the exact commands and exits 1.
set -euo pipefail
PY="${1:-python3}"
CHROMIUM="${OMNI_CHROMIUM:-/usr/bin/chromium}"

packages=()
command -v espeak-ng >/dev/null 2>&1 || packages+=(espeak-ng)
command -v ffmpeg >/dev/null 2>&1 || packages+=(ffmpeg)
[ -x "$CHROMIUM" ] || packages+=(chromium)
python_missing=()
"$PY" -c "import playwright.sync_api" >/dev/null 2>&1 || python_missing+=("playwright>=1.40")

if [ ${#packages[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing the test tools: ${packages[*]} (apt-get)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >/dev/null
  fi
  packages=()
  [ -x "$CHROMIUM" ] || { echo "chromium was installed but $CHROMIUM is missing (set OMNI_CHROMIUM)" >&2; exit 1; }
fi
if [ ${#python_missing[@]} -gt 0 ]; then
  "$PY" -m pip install -q "${python_missing[@]}" >/dev/null 2>&1 && python_missing=()
fi

if [ ${#packages[@]} -gt 0 ] || [ ${#python_missing[@]} -gt 0 ]; then
  {
    echo "The tests need tools that are not installed. Run, then 'make test' again:"
    [ ${#packages[@]} -gt 0 ] && echo "  sudo apt-get update && sudo apt-get install -y ${packages[*]}"
    [ ${#python_missing[@]} -gt 0 ] && echo "  $PY -m pip install '${python_missing[*]}'"
  } >&2
  exit 1
fi

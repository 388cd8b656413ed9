# Two commands for a new user: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint format demo ui bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The suite runs in TEST_WORKERS processes, a test file per process at a time (its module fixtures stay whole);
# every test makes its own servers, ports, databases and directories, so files never share state.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# The nightly backups of the last complete week through yesterday, and that week's archive, for real on the
# embedded default; Dagster's instance is this directory's dagster.yaml.
demo: $(STAMP)
	DAGSTER_HOME=$(CURDIR) $(BIN)/python -m patina_assets.demo

# The Dagster UI on the same instance as the demo (http://127.0.0.1:3000; `make ui PORT=3001 HOST=0.0.0.0`).
# The demo's source databases are generated first if they are missing, so its runs work before `make demo`.
# `patina_assets.dev` is `dagster dev` (same arguments) with Patina's daemon, whose backfills look every second
# instead of every 30 s (patina_assets/daemon.py).
HOST ?= 127.0.0.1
PORT ?= 3000
ui: $(STAMP)
	$(BIN)/python -m patina_assets.demo --sources-only
	DAGSTER_HOME=$(CURDIR) $(BIN)/python -m patina_assets.dev -h $(HOST) -p $(PORT)

# Format the code and fix what the linter can (`make test` checks both).
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/bench_dump.py

clean:
	rm -rf $(VENV) .patina .pytest_cache

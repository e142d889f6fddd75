# Loupe. `make run` starts the embedded default; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every install comes from the locks: exact versions with hashes, never a fresh resolution.
# Loupe itself is not installed: it runs from this folder.
LOCK := requirements/lock.txt
RUNTIME_LOCK := requirements/runtime.txt
UV_COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock'

.PHONY: run test lint lock lock-upgrade clean

# A changed lock rebuilds the virtual environment from scratch, so it holds
# exactly what the lock names and nothing left over from an earlier one.
$(STAMP): $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	LOUPE_SECRET_KEY=mypy-only $(BIN)/mypy

# Re-resolve after editing pyproject.toml: pins that still satisfy it are kept.
lock: $(STAMP)
	$(UV_COMPILE) pyproject.toml requirements/pip.in --extra dev -o $(LOCK)
	$(UV_COMPILE) pyproject.toml requirements/pip.in --constraint $(LOCK) -o $(RUNTIME_LOCK)

# Move every pin to the newest release pyproject.toml allows; review it with `make test`.
lock-upgrade: $(STAMP)
	$(UV_COMPILE) --upgrade pyproject.toml requirements/pip.in --extra dev -o $(LOCK)
	$(UV_COMPILE) pyproject.toml requirements/pip.in --constraint $(LOCK) -o $(RUNTIME_LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

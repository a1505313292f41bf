# Each target sets itself up: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pocketvl-installed

.PHONY: setup sysdeps demo test lint format bench schemas clean

setup: $(STAMP) sysdeps

# Re-install when the project's pins change; otherwise a no-op.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# redis-server is the only system package the local stack needs (Debian: redis-server).
sysdeps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server)"; exit 1; \
	  fi; }

demo: setup
	$(BIN)/pocketvl demo

lint: $(STAMP)
	$(BIN)/ruff check services tests model_repository
	$(BIN)/ruff format --check services tests model_repository
	$(BIN)/mypy services tests

format: $(STAMP)
	$(BIN)/ruff format services tests model_repository
	$(BIN)/ruff check --fix services tests model_repository

test: setup lint
	$(BIN)/pytest

schemas: $(STAMP)
	$(BIN)/pocketvl schemas export

clean:
	rm -rf .pocketvl .pytest_cache .mypy_cache .ruff_cache

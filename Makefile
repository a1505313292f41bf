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

# System packages: redis-server (the local stack) and the DejaVu fonts (DriveLM camera labels
# are drawn in DejaVuSans-Bold, as in training). Installed with apt when missing.
SYSPKGS_MISSING = $(shell command -v redis-server >/dev/null 2>&1 || echo redis-server) \
	$(shell test -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf || echo fonts-dejavu-core)

sysdeps:
	@if [ -n "$(strip $(SYSPKGS_MISSING))" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSPKGS_MISSING) >/dev/null; \
	  else \
	    echo "missing system packages: $(SYSPKGS_MISSING) (Debian/Ubuntu: sudo apt-get install $(SYSPKGS_MISSING))"; exit 1; \
	  fi; \
	fi

demo: setup
	$(BIN)/pocketvl demo

lint: $(STAMP)
	$(BIN)/ruff check services tests bench model_repository
	$(BIN)/ruff format --check services tests bench model_repository
	$(BIN)/mypy services tests bench
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format services tests bench model_repository
	$(BIN)/ruff check --fix services tests bench model_repository

test: setup lint
	$(BIN)/pytest

# The streaming benchmark (one worker against the echo and fixed_latency stand-ins, over Kafka,
# with a Triton outage); preprocessing and memory per request (CPU); engine throughput with
# full-size random weights only where CUDA is available (it says so and skips otherwise).
bench: setup
	$(BIN)/pocketvl bench --out bench/results
	$(BIN)/python -m bench.preprocess
	$(BIN)/python -m bench.datapath
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.engine

schemas: $(STAMP)
	$(BIN)/pocketvl schemas export

clean:
	rm -rf .pocketvl .pytest_cache .mypy_cache .ruff_cache

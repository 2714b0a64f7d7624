# The two commands of the README: `make run` and `make test`. Both create the venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PEERS  := sipp baresip

.PHONY: run test lint typecheck unit bench peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,fast]'
	touch $(STAMP)

# The interop tests drive real SIP peers. As root, install them when missing; otherwise the
# tests that need them skip and say why.
peers:
	@missing=""; for p in $(PEERS); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing SIP peers:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sip-tester baresip-core; \
	  else echo "SIP peers missing:$$missing (interop tests will skip; install sip-tester baresip-core)"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench ivr_prompts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: $(STAMP) peers lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider
	$(BIN)/pytest -q -p no:cacheprovider bench --benchmark-disable

bench: $(STAMP)
	mkdir -p bench/results
	$(BIN)/pytest bench --benchmark-only --benchmark-json=bench/results/bench.json

# `make run`: set up the demo room and access number (idempotent), print how to dial in, then
# serve. Both commands get the same database and configuration: `make run CONFIG=bridge.toml`,
# `make run DB=/path/to/file.sqlite3`. Without either: the defaults (var/bridge.sqlite3).
DB     ?=
CONFIG ?=
RUN_ARGS = $(if $(CONFIG),--config $(CONFIG)) $(if $(DB),--db $(DB))

run: $(STAMP)
	$(BIN)/bridge demo $(RUN_ARGS)
	$(BIN)/bridge serve $(RUN_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .benchmarks

# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= $(shell command -v python3 || command -v python)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TYPECHECK_LINKS := build/typecheck/partita

.PHONY: demo test check lint typecheck unit bench bench-peers bench-scale chaos soak dev clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: a real workflow on an embedded JetStream server with real workers
demo: $(STAMP)
	$(PY) -m examples.order_fulfillment.demo

## test: lint, type-check, then every test (unit, integration against real nats-server, fault tests)
test: check
	$(PY) -m pytest

check: lint typecheck

lint: $(STAMP)
	$(VENV)/bin/ruff check actors transport schemas tests bench examples
	$(VENV)/bin/ruff format --check actors transport schemas tests bench examples

# mypy cannot see setuptools' editable-install mapping; give it a partita/ tree of symlinks instead.
$(TYPECHECK_LINKS):
	mkdir -p $(TYPECHECK_LINKS)
	for p in actors transport schemas; do ln -sfn ../../../$$p $(TYPECHECK_LINKS)/$$p; done

typecheck: $(STAMP) $(TYPECHECK_LINKS)
	$(VENV)/bin/mypy -p partita

## unit: the pure tests only (no server)
unit: $(STAMP)
	$(PY) -m pytest tests/unit

## bench: the benchmark suite, every workload against a raw JetStream pipeline (docs/performance.md)
bench: $(STAMP)
	$(PY) -m bench.suite --update-docs

## bench-peers: the same suite plus Temporal, Restate, DBOS and Celery (installed by bench/peers/setup)
bench-peers: $(STAMP)
	bench/peers/setup
	$(PY) -m bench.suite --peers all --update-docs

## bench-scale: chain-3 with 1, 2 and 3 nodes on a 3-server JetStream cluster (docs/performance.md)
bench-scale: $(STAMP)
	$(PY) -m bench.scale --update-docs

## chaos: the fault-injection suite, three runs with different seeds (CI runs a short one in `make test`)
chaos: $(STAMP)
	for seed in 1 2 3; do $(PY) -m tests.chaos.chaos --workflows 300 --seed $$seed || exit 1; done

## soak: MINUTES (default 20) of mixed load on a 3-server cluster while servers, nodes and workers fail at random
MINUTES ?= 20
soak: $(STAMP)
	$(PY) -m tests.soak.soak --minutes $(MINUTES)

## dev: embedded nats-server + node on 127.0.0.1:4222, in the foreground
dev: $(STAMP)
	$(VENV)/bin/partita dev

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis

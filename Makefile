# Backcast: `make demo` runs the platform with demo backtests, `make test`
# runs the tests. Both create .venv and install into it on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf

.PHONY: demo up test lint protos bench bench-engine soak clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## Run the whole platform on an embedded PostgreSQL, submit demo backtests,
## print their results and stop everything.
demo: $(STAMP)
	$(BIN)/backcast demo

## Run the platform until Ctrl-C.
up: $(STAMP)
	$(BIN)/backcast up

## Run every test (real PostgreSQL: BACKCAST_TEST_DATABASE_URL, or embedded).
test: $(STAMP)
	$(BIN)/python -m pytest

## Measure the platform end to end (drain, submit, latency, fairness,
## history, the seed workload) beside raw SQL baselines; prints a table and
## writes benchmarks/results/bench-<time>.json. See docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

## Time the engine on a million synthetic candles beside a numpy baseline,
## then loading a year of minute candles from PostgreSQL, cold and cached.
bench-engine: $(STAMP)
	$(BIN)/python benchmarks/engine_bench.py
	$(BIN)/python benchmarks/candle_load_bench.py

JOBS ?= 5000

## Run JOBS backtests while workers and the scheduler are killed, frozen and
## restarted at random, then audit the database (exit 1 if a job was lost,
## duplicated or stuck).
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --jobs $(JOBS)

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@1.75.0

## Lint the contracts (buf, STANDARD rules) and the Python code (ruff).
lint: $(STAMP) $(BUF)
	$(BUF) lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Regenerate libs/backcast/v1 from protos/.
protos: $(STAMP)
	PYTHON=$(BIN)/python scripts/generate_protos.sh

clean:
	rm -rf $(VENV) $(TOOLS) .backcast

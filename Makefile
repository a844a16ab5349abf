# Every target creates and uses its own virtual environment in .venv, so a machine with only
# Python 3.11+ and pip can run `make check`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo static fmt fmt-check lint typecheck test check soak bench bench-sinks bench-redis bench-database bench-quick docs serve-docs clean

$(STAMP): pyproject.toml tests/node/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[web,redis,database,queue]" --group dev
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/node --no-audit --no-fund; \
	else echo "note: npm not found; tests that read the ai-sdk stream with Node will be skipped"; fi
	touch $(STAMP)

install: $(STAMP)

# The chat demo on http://127.0.0.1:8000: the fake Anthropic, SQLite, the memory broadcaster.
demo: $(STAMP)
	$(BIN)/python -m anthropic_rx.demo

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

fmt-check: $(STAMP)
	$(BIN)/ruff format --check .

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term

static: fmt-check lint typecheck

check: static test

# The fuzz and property suites, fifty times the examples of a `make check` run.
soak: $(STAMP)
	ANTHROPIC_RX_SOAK=1 $(BIN)/pytest -q -p no:cacheprovider tests/test_http11_differential.py \
		tests/test_http11.py tests/test_many_at_once.py tests/sinks tests/reliability

bench: $(STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.sinks
	$(BIN)/python -m benchmarks.redis
	$(BIN)/python -m benchmarks.database

bench-sinks: $(STAMP)
	$(BIN)/python -m benchmarks.sinks

bench-redis: $(STAMP)
	$(BIN)/python -m benchmarks.redis

bench-database: $(STAMP)
	$(BIN)/python -m benchmarks.database

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick --guard

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

serve-docs: $(STAMP)
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage htmlcov dist site

# posp — run, test, bench, lint. Each target one or two lines.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test test-slow bench lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip && $(BIN)/python -m pip install -q -e '.[test]' && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)           ## start HSM sim, issuer sim and the switch on embedded defaults, run a demo, keep serving
	$(BIN)/posp up

test: $(STAMP)          ## default suite (no slow load/soak tests)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)     ## load, soak and topology tests
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)         ## benchmarks: print rates and ratios
	$(BIN)/python -m tests.bench

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/lint-imports

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache

# posp — run, test, bench, lint. Each target one or two lines.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test test-slow test-compiled compiled bench lint install lock clean

# A .venv whose python or pip does not run (half made, moved, Python upgraded) loses
# its stamp and is made again; dependencies come at the versions of requirements.lock.
ifneq ($(shell $(BIN)/python -m pip --version >/dev/null 2>&1 && echo ok),ok)
$(shell rm -f $(STAMP))
endif
$(STAMP): pyproject.toml requirements.lock
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PY) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip && $(BIN)/python -m pip install -q -c requirements.lock -e '.[test]' && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)           ## start HSM sim, issuer sim and the switch on embedded defaults, run a demo, keep serving
	$(BIN)/posp up

test: $(STAMP)          ## default suite (no slow load/soak tests)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)     ## load, soak and topology tests
	$(BIN)/python -m pytest -q -m slow

# The compiled build: a copy of the tree in build/compiled with the modules of
# compiled-modules.txt compiled by mypyc (a C compiler and Python's headers needed).
COMPILED := $(CURDIR)/build/compiled
compiled: $(STAMP)      ## the mypyc build of compiled-modules.txt, in build/compiled
	$(BIN)/python tools/build_compiled.py $(COMPILED)

test-compiled: compiled ## the default suite on the compiled build (CI runs it after `make test`)
	cd $(COMPILED) && PYTHONPATH=$(COMPILED) POSP_EXPECT_COMPILED=1 $(abspath $(BIN))/python -m pytest -q

bench: $(STAMP)         ## benchmarks: print rates and ratios
	$(BIN)/python -m tests.bench

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/mypy tools setup.py && $(BIN)/lint-imports

lock: $(STAMP)          ## regenerate requirements.lock from pyproject.toml (pip-tools)
	$(BIN)/python -m pip install -q pip-tools && $(BIN)/pip-compile -q --extra test --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

clean:                  ## the venv, caches and builds; data/ (the journal) is kept
	rm -rf $(VENV) .mypy_cache .ruff_cache build

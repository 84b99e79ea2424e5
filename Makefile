# chartmogul-sync: the two commands are `make demo` and `make test`.
# Both set up .venv themselves on a fresh clone (needs python3 >= 3.11 and the package registry).

# The Lambda runtime is Python 3.13: build and test on it (pyenv's 3.13 where present).
PYTHON ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3 2>/dev/null || command -v python3.13 || echo python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# pytest workers: one per core (the suite is sized for 2 cores).
PYTEST_WORKERS ?= auto

.PHONY: install lint test demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml

test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS)

demo: $(STAMP)
	$(BIN)/cmsync demo --report report.json

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .aws-sam report.json

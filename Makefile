# chartmogul-sync: the two commands are `make demo` and `make test`.
# Both set up .venv themselves on a fresh clone (needs Python 3.13, e.g. pyenv's, and the package registry).

# The Lambda runtime is Python 3.13: build and test on it (pyenv's 3.13 where present).
PYTHON ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3 2>/dev/null || command -v python3.13 || echo python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# pytest workers: one per core (the suite is sized for 2 cores).
PYTEST_WORKERS ?= auto

# Tools that pin dependencies the project cannot share (aws-sam-cli pins boto3 and cfn-lint; checkov pins its
# own world): each in its own venv under .tools/, installed from PyPI at a pinned version.
SAM_CLI_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
SAM := .tools/sam-$(SAM_CLI_VERSION)/bin/sam
CHECKOV := .tools/checkov-$(CHECKOV_VERSION)/bin/checkov
# sam build looks for python3.13 (the functions' Runtime) on PATH: put the chosen interpreter's directory first.
PYTHON_DIR := $(shell dirname "$$(command -v $(PYTHON))")
SAM_ENV := PATH="$(PYTHON_DIR):$$PATH" SAM_CLI_TELEMETRY=0
REGION ?= us-east-1
# The deployable build (arm64, as the template says) and the smoke-test build (this machine's architecture:
# the smoke test imports the layer's compiled wheels here).
BUILD_DIR := .aws-sam/build
SMOKE_BUILD_DIR := .aws-sam/smoke
HOST_PLATFORM := manylinux2014_$(shell uname -m)

.PHONY: install lint test demo bench clean build smoke-build smoke validate checkov tools

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(SAM):
	$(PYTHON) -m venv .tools/sam-$(SAM_CLI_VERSION)
	.tools/sam-$(SAM_CLI_VERSION)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)

$(CHECKOV):
	$(PYTHON) -m venv .tools/checkov-$(CHECKOV_VERSION)
	.tools/checkov-$(CHECKOV_VERSION)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)

tools: $(SAM) $(CHECKOV)

lint: $(STAMP) $(SAM) $(CHECKOV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(MAKE) --no-print-directory validate checkov

# sam's own lint (cfn-lint through the SAM translator); --region keeps region-specific rules deterministic.
validate: $(SAM)
	$(SAM_ENV) $(SAM) validate --lint --region $(REGION)

# Every finding is fixed or skipped in template.yaml with a one-line reason (Metadata.checkov.skip).
# BC_SKIP_MAPPING and --skip-download: no calls to checkov's vendor (the checks are all local).
checkov: $(CHECKOV)
	BC_SKIP_MAPPING=TRUE $(CHECKOV) --file template.yaml --framework cloudformation --compact --quiet --skip-download

# The deployable artifact; the layer's build prints its size. --no-cached: sam's cache is keyed by the sources,
# not by LAYER_PLATFORM, so a cached build could hand one architecture's layer to the other.
build: $(SAM)
	$(SAM_ENV) $(SAM) build --no-cached --build-dir $(BUILD_DIR)

smoke-build: $(SAM)
	$(SAM_ENV) LAYER_PLATFORM=$(HOST_PLATFORM) $(SAM) build --no-cached --build-dir $(SMOKE_BUILD_DIR)

# Each function of the built artifact, imported with only the layer and boto3 on the path (tests/artifact).
smoke: $(STAMP) build smoke-build
	CMSYNC_SMOKE_BUILD_DIR=$(SMOKE_BUILD_DIR) $(BIN)/pytest -p no:cacheprovider tests/artifact

test: lint smoke
	$(BIN)/pytest -n $(PYTEST_WORKERS)

demo: $(STAMP)
	$(BIN)/cmsync demo --report report.json

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis .aws-sam report.json

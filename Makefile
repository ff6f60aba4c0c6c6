# kms-appliance: one entry point for developers and CI.
# `make demo` and `make test` set themselves up from nothing (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

help:
	@echo "make demo     - run the plugin on a fresh local keyring and show a round trip"
	@echo "make test     - lint, type-check, proto drift check and the whole test suite"
	@echo "make check    - lint + types + proto drift only"
	@echo "make unit | integration - parts of the suite"
	@echo "make deps     - install the Debian packages make test needs (root), or print the command"

$(STAMP): pyproject.toml | deps-venv
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m kms_appliance demo

check: $(STAMP)
	$(VENV)/bin/ruff check kms_appliance tests bench akeyless_emulator
	$(VENV)/bin/mypy
	PYTHON=$(PY) scripts/gen-protos.sh --check

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration tests/emulator

# The whole suite. Each later stage (binary, packaging, e2e) adds its own
# target in mk/*.mk and appends it to TEST_STAGES.
TEST_STAGES := check pytest-core-with-components
pytest-core: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests/unit tests/integration tests/emulator

-include mk/*.mk

# pytest-core mostly waits on the plugins it starts (measured: 33 s of CPU in 75 s), so in
# `make test` the Go builds of the e2e and deploy components (mk/e2e.mk, mk/deploy.mk) run
# beside it. Each target's output is printed whole when it ends.
pytest-core-with-components: $(STAMP)
	$(MAKE) --no-print-directory -j2 --output-sync=target pytest-core deploy-components

# The whole suite runs e2e against the frozen binary, with the local and the Akeyless backend.
E2E_ALL_PLUGINS := appliance,akeyless
test: export E2E_KMS_PLUGIN := $(or $(E2E_KMS_PLUGIN),$(E2E_ALL_PLUGINS))
test: export E2E_APPLIANCE_CMD := $(or $(E2E_APPLIANCE_CMD),$(CURDIR)/dist/kms-appliance)
# deps first: a machine without the Debian packages stops here, with the command to run.
test: deps $(TEST_STAGES)

.PHONY: help venv demo check unit integration test pytest-core pytest-core-with-components

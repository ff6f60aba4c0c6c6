# End-to-end checks against a real kube-apiserver, etcd and kubectl built from
# their published Go modules (see docs/e2e.md). Included by the top-level Makefile.
#
#   make e2e-components            build/check the pinned binaries into .cache/e2e/<k8s-version>/bin
#   make e2e                       build if needed, then run every e2e scenario
#   make e2e E2E_PYTEST_ARGS='-k kms_v2'         one scenario
#   make e2e E2E_KMS_PLUGIN=appliance            against kms-appliance instead of the test plugin
#   make e2e E2E_BIN_DIR=/path/to/rc/bin         against binaries you already have

E2E_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
E2E_PYTEST_ARGS ?=

.PHONY: e2e-components e2e

# Knobs read by the harness and build script (empty means default).
export E2E_KMS_PLUGIN E2E_APPLIANCE_CMD E2E_BIN_DIR E2E_CACHE_DIR E2E_BUILD_JOBS

e2e-components:
	$(if $(E2E_BIN_DIR),@echo "E2E_BIN_DIR=$(E2E_BIN_DIR): using those binaries, nothing to build",tests/e2e/build_components.sh)

e2e: e2e-components
	$(E2E_PYTHON) -m pytest -m e2e -v tests/e2e $(E2E_PYTEST_ARGS)

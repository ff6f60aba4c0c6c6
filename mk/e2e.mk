# End-to-end checks against a real kube-apiserver, etcd and kubectl built from
# their published Go modules (docs/e2e.md). Included by the top-level Makefile.
#
#   make e2e-components      build/check the pinned binaries into .cache/e2e/<k8s-version>/bin
#   make e2e                 build if needed, then run every e2e scenario
#
# Knobs (all optional; empty means default):
#   E2E_PYTEST_ARGS='-k at_rest'          one scenario (any pytest arguments)
#   E2E_KMS_PLUGIN=appliance|akeyless|appliance,akeyless   which plugin(s) sit behind the apiserver
#   E2E_APPLIANCE_CMD=dist/kms-appliance   test the frozen binary instead of this checkout
#   E2E_BIN_DIR=/path/to/bin               use your own kube-apiserver, kubectl, etcd, etcdctl
#   E2E_CACHE_DIR, E2E_BUILD_JOBS          build cache root, parallel compile jobs (default 2)

E2E_PYTHON ?= $(if $(PY),$(PY),$(if $(wildcard .venv/bin/python),.venv/bin/python,python3))
E2E_PYTEST_ARGS ?=

export E2E_KMS_PLUGIN E2E_APPLIANCE_CMD E2E_BIN_DIR E2E_CACHE_DIR E2E_BUILD_JOBS

.PHONY: e2e-components e2e e2e-with-fuzz-and-packaging

e2e-components: | deps-go
	@if [ -n "$(E2E_BIN_DIR)" ]; then echo "E2E_BIN_DIR=$(E2E_BIN_DIR): using those binaries; nothing to build"; \
	else tests/e2e/build_components.sh; fi

e2e: e2e-components $(STAMP)
	$(E2E_PYTHON) -m pytest -m e2e -v tests/e2e $(E2E_PYTEST_ARGS)

# In `make test` e2e runs with the fuzz campaigns (mk/reliability.mk), then the packaging
# suite (mk/packaging.mk), beside it: e2e mostly waits on the apiserver (measured: 83 s of CPU
# in 254 s), so the three took 278 s on 2 cores against 254 + 128 + 145 s one after another.
# The binary and image are made first, once (-o: not again in the sub-make); each target's
# output is printed whole when it ends.
e2e-with-fuzz-and-packaging: e2e-components image $(STAMP)
	$(MAKE) --no-print-directory -j2 --output-sync=target -o e2e-components -o binary -o image \
	  e2e test-fuzz test-packaging

TEST_STAGES += e2e-with-fuzz-and-packaging

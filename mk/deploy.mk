# The static pod under a real kubelet and containerd (docs/deployment-tests.md).
# Included by the top-level Makefile after mk/e2e.mk and mk/packaging.mk.
#
#   make deploy-components   build/check kubelet, containerd, containerd-shim-runc-v2, ctr and
#                            the pause binary into the e2e cache (tests/e2e/build_components.sh)
#   make test-deploy         the OCI image, those and the e2e components, then tests/deploy (root)
#
# Knobs: DEPLOY_PYTEST_ARGS (any pytest arguments), E2E_BIN_DIR (bring every
# binary yourself), DEPLOY_KEEP_LOGS (where the component logs are copied).

DEPLOY_COMPONENTS := kubelet containerd containerd-shim-runc-v2 ctr pause
DEPLOY_PYTEST_ARGS ?=

.PHONY: deploy-components test-deploy test-deploy-with-repro

deploy-components: e2e-components | deps-binary
	@if [ -n "$(E2E_BIN_DIR)" ]; then echo "E2E_BIN_DIR=$(E2E_BIN_DIR): using those binaries; nothing to build"; \
	else E2E_COMPONENTS="$(DEPLOY_COMPONENTS)" tests/e2e/build_components.sh; fi

test-deploy: image deploy-components $(STAMP) | deps-packaging
	@s=$$(date +%s); $(E2E_PYTHON) -m pytest -m deploy -v -s tests/deploy $(DEPLOY_PYTEST_ARGS); \
	  rc=$$?; echo "test-deploy: pytest $$(( $$(date +%s) - s ))s"; exit $$rc

# In `make test` the reproducibility check (mk/binary.mk) runs beside this suite, which mostly
# waits on the kubelet and its probes (measured: 32 s of CPU in 137 s); the check is one
# CPU-bound build, so the pair takes the suite's time. Shared prerequisites are made first,
# once (-o: not again in the sub-make); each target's output is printed whole when it ends.
test-deploy-with-repro: image deploy-components
	$(MAKE) --no-print-directory -j2 --output-sync=target -o binary -o image -o deploy-components \
	  test-deploy repro-check

# Fits CI's budget (docs/deployment-tests.md: ~2.5 min with the e2e cache, ~4.5 min more building
# kubelet and containerd from warm Go caches); the binary and image are those the packaging suite tests.
TEST_STAGES += test-deploy-with-repro

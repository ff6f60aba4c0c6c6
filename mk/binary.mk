# The appliance binary (docs/binary.md). Included by the top-level Makefile.
#
#   make binary        dist/kms-appliance (static, reproducible) + .cdx.json SBOM + SHA256SUMS
#   make test-binary   tests/binary against dist/kms-appliance (needs root: mount namespaces)
#   make repro-check   build every artefact of the committed tree twice in fresh clones, compare byte for byte
#   make bench-startup start-to-ready and idle RSS of the binary, both backends
#
# Knobs: STATICX_COMPRESS=1 / KMS_PKG_COMPRESS=1 (smaller file, slower start),
# KMS_AKEYLESS_MODELS=all (every SDK model). See docs/binary.md.

export STATICX_COMPRESS KMS_PKG_COMPRESS KMS_AKEYLESS_MODELS

.PHONY: binary test-binary repro-check bench-startup

# KMS_BINARY_BUILD: mk/arm64.mk's arm64 build (make ARCH=arm64 binary).
binary: | deps-binary
	$(or $(KMS_BINARY_BUILD),build/build.sh)

test-binary: binary $(STAMP)
	$(PY) -m pytest -q -m binary tests/binary

# Every artefact (binary, SBOM, .deb, .rpm, OCI archive, bundle) twice: the packaging tools too.
repro-check: binary | deps-packaging
	build/repro-check.sh

bench-startup: binary $(STAMP)
	$(PY) -m bench.startup

# repro-check is in `make test` too, beside the deploy suite (mk/deploy.mk).
TEST_STAGES += test-binary

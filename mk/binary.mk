# The appliance binary (docs/binary.md). Included by the top-level Makefile.
#
#   make binary        dist/kms-appliance (static, reproducible) + .cdx.json SBOM + SHA256SUMS
#   make test-binary   tests/binary against dist/kms-appliance (needs root: mount namespaces)
#   make repro-check   rebuild the committed tree in a fresh clone, compare byte for byte
#   make bench-startup start-to-ready and idle RSS of the binary, both backends
#
# Knobs: STATICX_COMPRESS=1 / KMS_PKG_COMPRESS=1 (smaller file, slower start),
# KMS_AKEYLESS_MODELS=all (every SDK model). See docs/binary.md.

export STATICX_COMPRESS KMS_PKG_COMPRESS KMS_AKEYLESS_MODELS

.PHONY: binary test-binary repro-check bench-startup

binary: | deps-binary
	build/build.sh

test-binary: binary $(STAMP)
	$(PY) -m pytest -q -m binary tests/binary

repro-check: binary
	build/repro-check.sh

bench-startup: binary $(STAMP)
	$(PY) bench/startup.py

TEST_STAGES += test-binary repro-check

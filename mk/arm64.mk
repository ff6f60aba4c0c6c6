# arm64 (aarch64) artefacts (docs/arm64.md). Included by the top-level Makefile
# before mk/binary.mk and mk/packaging.mk, which read KMS_ARCH.
#
#   make ARCH=arm64 binary       dist/arm64/kms-appliance (+ SBOM, SHA256SUMS)
#   make ARCH=arm64 deb rpm image bundle   the same artefacts as amd64, in dist/arm64/
#   make ARCH=arm64 test-arm64   builds all of the above, then tests them (under emulation on x86_64):
#                                static, version and SBOM, v2/v1 round trip in an empty root
#                                (tests/binary); deb/rpm/image/bundle are arm64 and carry the binary,
#                                the image serves a round trip read-only as uid 65532 (tests/arm64)
#
# On x86_64 the binary is frozen in an arm64 Debian 12 root under qemu-user-static
# (binfmt_misc; build/arm64/); on an arm64 host build/build.sh runs natively.
# Only ARCH given on the command line counts: an ARCH in the environment (some CI
# images export ARCH=x86_64) leaves the build as it is. Without it: the host's
# architecture (amd64 on x86_64, as before; arm64 on an arm64 host).

KMS_HOST_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,amd64)
KMS_ARCH := $(if $(filter command line,$(origin ARCH)),$(ARCH),$(KMS_HOST_ARCH))
ifeq ($(filter amd64 arm64,$(KMS_ARCH)),)
$(error ARCH=$(KMS_ARCH): only amd64 and arm64 are built)
endif

# What an x86_64 host needs to run the arm64 build root (mmdebstrap is in DEPS_PACKAGING too);
# an arm64 host needs scons on top of deps-binary (staticx has no arm64 wheel: pip builds it).
DEPS_ARM64 := qemu-user-static binfmt-support arch-test mmdebstrap
DEPS_ARM64_NATIVE := scons

.PHONY: deps-arm64 test-arm64

deps-arm64:
	@scripts/apt-deps.sh $(if $(filter arm64,$(KMS_HOST_ARCH)),$(DEPS_ARM64_NATIVE),$(DEPS_ARM64))

ifeq ($(KMS_ARCH),arm64)
KMS_BINARY_BUILD := build/arm64/build.sh dist/arm64
binary: | deps-arm64

test-arm64: bundle $(STAMP)
	@s=$$(date +%s); KMS_BINARY=$(CURDIR)/dist/arm64/kms-appliance ARM64_DIST=$(CURDIR)/dist/arm64 \
	  $(PY) -m pytest -q -m "binary or packaging" tests/binary/test_static.py \
	  tests/binary/test_distroless.py::test_v2_and_v1_round_trip_in_empty_root tests/arm64; \
	  rc=$$?; echo "test-arm64: pytest $$(( $$(date +%s) - s ))s"; exit $$rc
else
test-arm64:
	@echo "test-arm64: run as make ARCH=arm64 test-arm64" >&2; exit 2
endif

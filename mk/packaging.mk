# Packaging and deployment artefacts (docs/deployment.md). Included by the
# top-level Makefile after mk/binary.mk.
#
#   make deb       dist/kms-appliance_<version>_amd64.deb
#   make rpm       dist/kms-appliance-<version>-1.x86_64.rpm
#   make image     dist/kms-appliance_<version>_oci.tar (buildah, local distroless-equivalent base)
#   make bundle    dist/kms-appliance-bundle-<version>.tar.gz: everything for an air-gapped site,
#                  signed (+ .tar.gz.asc, kms-appliance-release.asc/.gpg; docs/verify.md) with
#                  KMS_SIGNING_KEY_FILE or KMS_SIGNING_GNUPGHOME (+ KMS_SIGNING_KEY), else an
#                  ephemeral key in .cache/signing (scripts/signing.sh)
#   make deploy-manifests   regenerate deploy/kubeadm/*.yaml from the code
#   make test-packaging     build all of the above, then tests/packaging (root; bounded, timed)
#
# Each artefact depends on the `binary` target, so these work from a clean clone.

PKG_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' kms_appliance/version.py)
# ARCH=arm64 (mk/arm64.mk): the same artefacts of dist/arm64/kms-appliance, in dist/arm64/.
export PKG_ARCH := $(KMS_ARCH)
PKG_DIST := $(if $(filter arm64,$(PKG_ARCH)),dist/arm64,dist)
PKG_DEB := $(PKG_DIST)/kms-appliance_$(PKG_VERSION)_$(PKG_ARCH).deb
PKG_RPM := $(PKG_DIST)/kms-appliance-$(PKG_VERSION)-1.$(if $(filter arm64,$(PKG_ARCH)),aarch64,x86_64).rpm
PKG_IMAGE := $(PKG_DIST)/kms-appliance_$(PKG_VERSION)$(if $(filter arm64,$(PKG_ARCH)),_arm64)_oci.tar
PKG_BUNDLE := $(PKG_DIST)/kms-appliance-bundle-$(PKG_VERSION)$(if $(filter arm64,$(PKG_ARCH)),-arm64).tar.gz
PKG_IMAGE_REF := localhost/kms-appliance:$(PKG_VERSION)
PKG_PYTEST_ARGS ?=

.PHONY: deb rpm image bundle deploy-manifests test-packaging

deb: binary | deps-packaging
	@s=$$(date +%s); packaging/deb/build.sh $(PKG_DIST)/kms-appliance $(PKG_DIST) && echo "deb: $$(( $$(date +%s) - s ))s"

rpm: binary | deps-packaging
	@s=$$(date +%s); packaging/rpm/build.sh $(PKG_DIST)/kms-appliance $(PKG_DIST) && echo "rpm: $$(( $$(date +%s) - s ))s"

image: binary | deps-packaging
	@s=$$(date +%s); packaging/image/build.sh $(PKG_DIST)/kms-appliance $(PKG_DIST) && echo "image: $$(( $$(date +%s) - s ))s"

# deb, rpm and image are listed as prerequisites for `make -j`; the script
# only packs what they wrote.
bundle: deb rpm image
	@s=$$(date +%s); packaging/bundle/build.sh $(PKG_DIST) && echo "bundle: $$(( $$(date +%s) - s ))s"

deploy-manifests: $(STAMP)
	$(PY) -c 'import pathlib; from kms_appliance import config, manifests; \
	  cfg = config.load(env={}, config_file=pathlib.Path("/dev/null"), flags={"server.backend": "local"}); \
	  open("deploy/kubeadm/kms-appliance.yaml", "w").write(manifests.static_pod(cfg, "$(PKG_IMAGE_REF)")); \
	  open("deploy/kubeadm/encryption-config.yaml", "w").write(manifests.encryption_config(cfg))'

test-packaging: bundle $(STAMP) | deps-packaging
	@s=$$(date +%s); $(PY) -m pytest -m packaging -v --durations=0 tests/packaging $(PKG_PYTEST_ARGS); \
	  rc=$$?; echo "test-packaging: pytest $$(( $$(date +%s) - s ))s"; exit $$rc

# In `make test` beside e2e (mk/e2e.mk).

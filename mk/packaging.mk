# Packaging and deployment artefacts (docs/deployment.md). Included by the
# top-level Makefile after mk/binary.mk.
#
#   make deb       dist/kms-appliance_<version>_amd64.deb
#   make rpm       dist/kms-appliance-<version>-1.x86_64.rpm
#   make image     dist/kms-appliance_<version>_oci.tar (buildah, local distroless-equivalent base)
#   make bundle    dist/kms-appliance-bundle-<version>.tar.gz: everything for an air-gapped site
#   make deploy-manifests   regenerate deploy/kubeadm/*.yaml from the code
#   make test-packaging     build all of the above, then tests/packaging (root; bounded, timed)
#
# Each artefact depends on the `binary` target, so these work from a clean clone.

PKG_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' kms_appliance/version.py)
PKG_DEB := dist/kms-appliance_$(PKG_VERSION)_amd64.deb
PKG_RPM := dist/kms-appliance-$(PKG_VERSION)-1.x86_64.rpm
PKG_IMAGE := dist/kms-appliance_$(PKG_VERSION)_oci.tar
PKG_BUNDLE := dist/kms-appliance-bundle-$(PKG_VERSION).tar.gz
PKG_IMAGE_REF := localhost/kms-appliance:$(PKG_VERSION)
PKG_PYTEST_ARGS ?=

.PHONY: deb rpm image bundle deploy-manifests test-packaging

deb: binary | deps-packaging
	@s=$$(date +%s); packaging/deb/build.sh dist/kms-appliance dist && echo "deb: $$(( $$(date +%s) - s ))s"

rpm: binary | deps-packaging
	@s=$$(date +%s); packaging/rpm/build.sh dist/kms-appliance dist && echo "rpm: $$(( $$(date +%s) - s ))s"

image: binary | deps-packaging
	@s=$$(date +%s); packaging/image/build.sh dist/kms-appliance dist && echo "image: $$(( $$(date +%s) - s ))s"

# deb, rpm and image are listed as prerequisites for `make -j`; the script
# only packs what they wrote.
bundle: deb rpm image
	@s=$$(date +%s); packaging/bundle/build.sh dist && echo "bundle: $$(( $$(date +%s) - s ))s"

deploy-manifests: $(STAMP)
	$(PY) -c 'import pathlib; from kms_appliance import config, manifests; \
	  cfg = config.load(env={}, config_file=pathlib.Path("/dev/null"), flags={"server.backend": "local"}); \
	  open("deploy/kubeadm/kms-appliance.yaml", "w").write(manifests.static_pod(cfg, "$(PKG_IMAGE_REF)")); \
	  open("deploy/kubeadm/encryption-config.yaml", "w").write(manifests.encryption_config(cfg))'

test-packaging: bundle $(STAMP) | deps-packaging
	@s=$$(date +%s); $(PY) -m pytest -m packaging -v --durations=0 tests/packaging $(PKG_PYTEST_ARGS); \
	  rc=$$?; echo "test-packaging: pytest $$(( $$(date +%s) - s ))s"; exit $$rc

TEST_STAGES += test-packaging

# The Debian packages the targets need: the one list (it used to live in
# .ci/apt-packages, read only by CI, so `make test` on a fresh machine stopped
# at the packaging stage). Included by the top-level Makefile.
#
#   make deps            everything `make test` needs (Debian packages, then a Go check for e2e)
#   make deps-venv       what the virtualenv needs (make demo, make unit, ...)
#   make deps-binary     the freezing toolchain (make binary)
#   make deps-packaging  deb/rpm/image tooling and the packaging tests
#
# scripts/apt-deps.sh checks with dpkg-query (a warm machine does nothing),
# installs only the missing ones as root, and otherwise stops with the one
# `sudo apt-get install ...` line to run. KMS_DEPS=skip turns the check off.

# python3-venv: `python3.11 -m venv` needs ensurepip.
DEPS_VENV := python3-venv
# The PyInstaller bootloader is compiled here (gcc, libc6-dev, binutils), then
# patched and stripped; libpython3.11 and the headers freeze the interpreter;
# git stamps the commit and clones for repro-check.
DEPS_BINARY := libpython3.11 python3.11-dev gcc libc6-dev binutils patch git
# packaging (mk/packaging.mk, tests/packaging): deb/rpm tooling, bootstrapped
# bookworm roots, systemd-nspawn, rootless-engine image build/run, promtool,
# PyYAML for parsing the generated manifests, CA bundle for the image base;
# signing and the bundle's signed repositories (docs/verify.md): GnuPG,
# apt-ftparchive (apt-utils), createrepo_c, and dnf to install from the YUM
# repository in the tests.
DEPS_PACKAGING := lintian rpm rpmlint mmdebstrap systemd systemd-container buildah podman runc \
	skopeo containernetworking-plugins prometheus python3-yaml ca-certificates \
	gpg gpg-agent gpgv apt-utils createrepo-c dnf

DEPS_ALL := $(DEPS_VENV) $(DEPS_BINARY) $(DEPS_PACKAGING)

# Go is only checked, not installed: Debian 12's golang is 1.19 and the e2e
# build needs >= 1.26 (docs/e2e.md). Not needed when E2E_BIN_DIR is given or
# the pinned components are already built in the cache.
DEPS_E2E_BIN = $(or $(E2E_CACHE_DIR),.cache/e2e)/$(shell sed -n 's/^KUBERNETES_VERSION=//p' tests/e2e/versions.env)/bin

.PHONY: deps deps-apt deps-venv deps-binary deps-packaging deps-go

# apt first: as root the packages get installed even when Go is still missing.
deps: deps-apt deps-go

deps-apt:
	@scripts/apt-deps.sh $(DEPS_ALL)

deps-go:
	@[ -n "$(E2E_BIN_DIR)" ] || command -v go >/dev/null || [ "$(KMS_DEPS)" = skip ] || \
	  for c in kube-apiserver kubectl etcd etcdctl; do [ -x "$(DEPS_E2E_BIN)/$$c" ] || { \
	    echo "deps: the e2e stage builds kube-apiserver and etcd with Go >= 1.26 (not a Debian 12 package): install it from https://go.dev/dl/ or set E2E_BIN_DIR (docs/e2e.md)" >&2; exit 1; }; done

deps-venv:
	@scripts/apt-deps.sh $(DEPS_VENV)

deps-binary:
	@scripts/apt-deps.sh $(DEPS_BINARY)

deps-packaging:
	@scripts/apt-deps.sh $(DEPS_PACKAGING)

#!/usr/bin/env bash
# One tarball for an air-gapped site: binary, .deb, .rpm, OCI image archive,
# SBOM, deployment files, an install guide, signed APT and YUM repositories,
# provenance, and SHA256SUMS over all of it, every piece signed with the
# release key (scripts/signing.sh: KMS_SIGNING_KEY_FILE or KMS_SIGNING_GNUPGHOME;
# an ephemeral key otherwise). Next to the tarball: its .asc and the public key.
#
#   packaging/bundle/build.sh [DIST]     (make bundle builds what it packs first)
set -euo pipefail
cd "$(dirname "$0")/../.."
# The files are copied from the checkout, whose modes follow the umask it was made with.
umask 022
DIST=${1:-dist}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' kms_appliance/version.py)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
# PKG_ARCH=arm64: the arm64 artefacts (make ARCH=arm64 bundle packs dist/arm64/).
case ${PKG_ARCH:-amd64} in
  amd64) NAME=kms-appliance-bundle-$VERSION MACHINE=x86_64
         files=(kms-appliance kms-appliance.cdx.json "kms-appliance_${VERSION}_amd64.deb"
                "kms-appliance-${VERSION}-1.x86_64.rpm" "kms-appliance_${VERSION}_oci.tar") ;;
  arm64) NAME=kms-appliance-bundle-$VERSION-arm64 MACHINE=aarch64
         files=(kms-appliance kms-appliance.cdx.json "kms-appliance_${VERSION}_arm64.deb"
                "kms-appliance-${VERSION}-1.aarch64.rpm" "kms-appliance_${VERSION}_arm64_oci.tar") ;;
  *) echo "bundle: PKG_ARCH must be amd64 or arm64, not $PKG_ARCH" >&2; exit 1 ;;
esac
for f in "${files[@]}"; do
  [[ -f $DIST/$f ]] || { echo "bundle: $DIST/$f missing (make deb rpm image)" >&2; exit 1; }
done

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/kms-bundle.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
B=$STAGE/$NAME
mkdir -p "$B/deploy"
for f in "${files[@]}"; do cp "$DIST/$f" "$B/"; done
cp -r deploy/kubeadm deploy/prometheus deploy/grafana "$B/deploy/"
sed -e "s/@VERSION@/$VERSION/g" -e "s/@NAME@/$NAME/g" -e "s/@DEB@/${files[2]}/g" -e "s/@RPM@/${files[3]}/g" \
  -e "s/@IMAGE@/${files[4]}/g" -e "s/@MACHINE@/$MACHINE/g" packaging/bundle/INSTALL.md >"$B/INSTALL.md"
cp docs/deployment.md "$B/deployment.md"
# Every document, as in the repository (README.md's links go to docs/).
cp README.md "$B/README.md"
mkdir -p "$B/docs"
cp docs/*.md "$B/docs/"
# Signed: the .rpm, APT and YUM repositories, the image, provenance, each
# artefact and SHA256SUMS over every file (scripts/sign_release.sh, docs/verify.md).
scripts/sign_release.sh bundle "$B"
out=$DIST/$NAME.tar.gz
tar -C "$STAGE" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
  -cf - "$NAME" | gzip -n >"$out"
scripts/sign_release.sh files "$out"
scripts/sign_release.sh pubkey "$DIST/kms-appliance-release"
echo "$out"

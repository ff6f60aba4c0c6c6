#!/usr/bin/env bash
# Build dist/kms-appliance-<version>-1.<x86_64|aarch64>.rpm from the static binary.
#
#   packaging/rpm/build.sh [BINARY] [OUTDIR]
#   RPM_VERSION=0.1.1 ...   override the version
#   PKG_ARCH=amd64|arm64    the binary's architecture (default amd64: x86_64)
set -euo pipefail
cd "$(dirname "$0")/../.."
BINARY=${1:-dist/kms-appliance}
OUTDIR=${2:-dist}
VERSION=${RPM_VERSION:-$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' kms_appliance/version.py)}
case ${PKG_ARCH:-amd64} in
  amd64) RPM_ARCH=x86_64 TARGET=() ;;
  arm64) RPM_ARCH=aarch64 TARGET=(--target aarch64) ;;
  *) echo "rpm: PKG_ARCH must be amd64 or arm64, not $PKG_ARCH" >&2; exit 1 ;;
esac
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
[[ -x $BINARY ]] || { echo "rpm: $BINARY missing (make binary)" >&2; exit 1; }
command -v rpmbuild >/dev/null || { echo "rpm: rpmbuild missing (apt-get install rpm)" >&2; exit 1; }

TOP=$(mktemp -d "${TMPDIR:-/tmp}/kms-rpm.XXXXXX")
trap 'rm -rf "$TOP"' EXIT
mkdir -p "$TOP/SOURCES" "$OUTDIR"
cp "$BINARY" "$TOP/SOURCES/kms-appliance"
cp packaging/systemd/kms-appliance.service packaging/config.toml "$TOP/SOURCES/"
gzip -9nc packaging/man/kms-appliance.8 >"$TOP/SOURCES/kms-appliance.8.gz"
mkdir -p "$TOP/SOURCES/docs"
cp README.md "$TOP/SOURCES/"
cp docs/*.md "$TOP/SOURCES/docs/"
sed -n '/^License: Apache-2.0$/,$p' packaging/deb/copyright | sed 's/^ \.$//; s/^ //' >"$TOP/SOURCES/LICENSE-NOTICE"

# --dbpath: Debian's rpm has no system database worth touching.
rpmbuild -bb --quiet "${TARGET[@]}" \
  --define "_topdir $TOP" --define "_sourcedir $TOP/SOURCES" --define "_rpmdir $TOP/RPMS" \
  --define "_dbpath $TOP/db" --define "pkg_version $VERSION" \
  --define "_buildhost kms-appliance-build" --define "use_source_date_epoch_as_buildtime 1" \
  --define "clamp_mtime_to_source_date_epoch 1" --define "_binary_payload w6.gzdio" \
  packaging/rpm/kms-appliance.spec
out=$OUTDIR/kms-appliance-$VERSION-1.$RPM_ARCH.rpm
mv "$TOP/RPMS/$RPM_ARCH/kms-appliance-$VERSION-1.$RPM_ARCH.rpm" "$out"
echo "$out"

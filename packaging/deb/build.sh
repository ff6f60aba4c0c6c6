#!/usr/bin/env bash
# Build dist/kms-appliance_<version>_<arch>.deb from the static binary with
# plain dpkg-deb (no debhelper): the binary is already built and stripped.
#
#   packaging/deb/build.sh [BINARY] [OUTDIR]
#   DEB_VERSION=0.1.1 ...   override the version (the upgrade test uses it)
#   PKG_ARCH=amd64|arm64    the binary's architecture (default amd64)
#   SOURCE_DATE_EPOCH       mtimes of every file (default: last commit)
set -euo pipefail
cd "$(dirname "$0")/../.."
BINARY=${1:-dist/kms-appliance}
OUTDIR=${2:-dist}
VERSION=${DEB_VERSION:-$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' kms_appliance/version.py)}
ARCH=${PKG_ARCH:-amd64}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
[[ -x $BINARY ]] || { echo "deb: $BINARY missing (make binary)" >&2; exit 1; }
[[ $VERSION =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || { echo "deb: bad version $VERSION" >&2; exit 1; }
[[ $ARCH == amd64 || $ARCH == arm64 ]] || { echo "deb: PKG_ARCH must be amd64 or arm64, not $ARCH" >&2; exit 1; }

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/kms-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root
DOC=$R/usr/share/doc/kms-appliance
umask 022

install -D -m 0755 "$BINARY" "$R/usr/bin/kms-appliance"
install -D -m 0644 packaging/systemd/kms-appliance.service "$R/lib/systemd/system/kms-appliance.service"
# 0640 from the start (it may hold a secret); postinst adds the group.
install -D -m 0640 packaging/config.toml "$R/etc/kms-appliance/config.toml"
install -D -m 0644 packaging/man/kms-appliance.8 "$R/usr/share/man/man8/kms-appliance.8"
gzip -9n "$R/usr/share/man/man8/kms-appliance.8"
install -D -m 0644 packaging/deb/copyright "$DOC/copyright"
# The operator's documentation, laid out as in the repository so its links
# work: README.md, docs/*.md. Kept uncompressed (read with any pager, the
# same paths as in the .rpm and the bundle; the man page names them).
install -m 0644 README.md "$DOC/README.md"
install -d -m 0755 "$DOC/docs"
install -m 0644 docs/*.md "$DOC/docs/"
{
  echo "kms-appliance ($VERSION) unstable; urgency=medium"
  echo
  echo "  * Release $VERSION, see https://github.com/kms-appliance/kms-appliance."
  echo
  echo " -- kms-appliance maintainers <kms-appliance@lists.kms-appliance.org>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$DOC/changelog"
gzip -9n "$DOC/changelog"
install -D -m 0644 packaging/deb/lintian-overrides "$R/usr/share/lintian/overrides/kms-appliance"

install -d -m 0755 "$R/DEBIAN"
for f in postinst prerm postrm; do install -m 0755 "packaging/deb/$f" "$R/DEBIAN/$f"; done
install -m 0644 packaging/deb/conffiles "$R/DEBIAN/conffiles"
(cd "$R" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' \
  | LC_ALL=C sort -z | xargs -0 md5sum) >"$R/DEBIAN/md5sums"
chmod 0644 "$R/DEBIAN/md5sums"
# Installed-Size as dpkg-gencontrol counts it (KiB per file rounded up, 1 per
# directory), not du: du reports blocks, which depend on the build's file system.
size=$(cd "$R" && find . -path ./DEBIAN -prune -o \( -type f -printf '%s\n' -o -printf '1\n' \) \
  | awk '{ n += $1 == 1 ? 1 : int(($1 + 1023) / 1024) } END { print n }')
sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@ARCH@/$ARCH/" \
  packaging/deb/control.in >"$R/DEBIAN/control"
find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUTDIR"
out=$OUTDIR/kms-appliance_${VERSION}_${ARCH}.deb
# The payload is already compressed (PyInstaller archive): xz takes ~20 s to
# save 2%, gzip ~1 s.
dpkg-deb --root-owner-group -Zgzip -z6 --build "$R" "$out" >/dev/null
echo "$out"

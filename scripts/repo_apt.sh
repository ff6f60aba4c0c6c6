#!/usr/bin/env bash
# A signed APT repository of the given .deb files, for the offline bundle:
#
#   REPO/dists/stable/Release      suite metadata + SHA256/SHA512 of the indices
#   REPO/dists/stable/InRelease    the same, clear-signed (what apt reads first)
#   REPO/dists/stable/Release.gpg  detached signature (older apt)
#   REPO/dists/stable/main/binary-<arch>/Packages{,.gz}   (each architecture of the .debs)
#   REPO/pool/main/k/kms-appliance/*.deb   (hard links to the given files)
#
# An operator points apt at it with signed-by= the release keyring
# (docs/verify.md); apt then refuses a Release that is not signed by that key
# and a .deb whose SHA256 differs from Packages.
#
#   scripts/repo_apt.sh REPO_DIR DEB...     (release key: scripts/signing.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/signing.sh
source "$HERE/signing.sh"
(( $# >= 2 )) || { echo "usage: $0 REPO_DIR DEB..." >&2; exit 2; }
REPO_DIR=$1; shift
command -v apt-ftparchive >/dev/null || { echo "repo_apt: apt-ftparchive missing (apt-get install apt-utils)" >&2; exit 1; }
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$HERE" log -1 --format=%ct 2>/dev/null || echo 0)}
signing_init
trap signing_cleanup EXIT

SUITE=stable
DISTS=dists/$SUITE
POOL=pool/main/k/kms-appliance
mkdir -p "$REPO_DIR/$POOL"
arches=()
for deb in "$@"; do
  ln -f "$deb" "$REPO_DIR/$POOL/$(basename "$deb")" 2>/dev/null || cp "$deb" "$REPO_DIR/$POOL/"
  arches+=("$(dpkg-deb -f "$deb" Architecture)")
done
mapfile -t arches < <(printf '%s\n' "${arches[@]}" | LC_ALL=C sort -u)

cd "$REPO_DIR"
# No MD5/SHA1 anywhere: apt trusts only the strong hashes, so list only those.
weak=(-o APT::FTPArchive::MD5=false -o APT::FTPArchive::SHA1=false)
for arch in "${arches[@]}"; do
  index=$DISTS/main/binary-$arch
  mkdir -p "$index"
  apt-ftparchive "${weak[@]}" --arch "$arch" packages pool >"$index/Packages"
  gzip -9n <"$index/Packages" >"$index/Packages.gz"
done
# Date is the build's (reproducible); no Valid-Until: an offline repository
# must keep working on a site that installs it months later.
apt-ftparchive "${weak[@]}" \
  -o APT::FTPArchive::Release::Origin=kms-appliance \
  -o APT::FTPArchive::Release::Label=kms-appliance \
  -o APT::FTPArchive::Release::Suite="$SUITE" \
  -o APT::FTPArchive::Release::Codename="$SUITE" \
  -o APT::FTPArchive::Release::Architectures="${arches[*]}" \
  -o APT::FTPArchive::Release::Components=main \
  -o APT::FTPArchive::Release::Description="kms-appliance offline repository" \
  -o APT::FTPArchive::Release::Date="$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH" | sed 's/+0000$/UTC/')" \
  release "$DISTS" >"$DISTS/Release.new"
mv "$DISTS/Release.new" "$DISTS/Release"
rm -f "$DISTS/InRelease" "$DISTS/Release.gpg"
signing_gpg --local-user "$KMS_SIGNING_FPR" --digest-algo SHA512 --clearsign \
  --output "$DISTS/InRelease" "$DISTS/Release"
signing_gpg --local-user "$KMS_SIGNING_FPR" --digest-algo SHA512 --armor --detach-sign \
  --output "$DISTS/Release.gpg" "$DISTS/Release"
find . -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
echo "$REPO_DIR"

#!/usr/bin/env bash
# A signed YUM/DNF repository of the given .rpm files, for the offline bundle:
#
#   REPO/*.rpm                       (hard links; each already signed: rpmsign)
#   REPO/repodata/repomd.xml         createrepo_c metadata, no sqlite (reproducible)
#   REPO/repodata/repomd.xml.asc     detached signature (dnf repo_gpgcheck=1)
#
# With gpgcheck=1 and repo_gpgcheck=1 and gpgkey= the release key
# (docs/verify.md), dnf refuses metadata not signed by that key and a package
# whose signature or digest does not check out.
#
#   scripts/repo_yum.sh REPO_DIR RPM...     (release key: scripts/signing.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/signing.sh
source "$HERE/signing.sh"
(( $# >= 2 )) || { echo "usage: $0 REPO_DIR RPM..." >&2; exit 2; }
REPO_DIR=$1; shift
command -v createrepo_c >/dev/null || { echo "repo_yum: createrepo_c missing (apt-get install createrepo-c)" >&2; exit 1; }
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$HERE" log -1 --format=%ct 2>/dev/null || echo 0)}
signing_init
trap signing_cleanup EXIT

mkdir -p "$REPO_DIR"
for rpm in "$@"; do
  ln -f "$rpm" "$REPO_DIR/$(basename "$rpm")" 2>/dev/null || cp "$rpm" "$REPO_DIR/"
done
rm -rf "$REPO_DIR/repodata"
# primary.xml records each package file's mtime: the build's, not the copy's.
find "$REPO_DIR" -maxdepth 1 -name '*.rpm' -exec touch -d "@$SOURCE_DATE_EPOCH" {} +
# --revision/--set-timestamp-to-revision: the commit's time, not now;
# --no-database: the sqlite files are not reproducible and dnf does not need them.
createrepo_c --quiet --no-database --simple-md-filenames --revision "$SOURCE_DATE_EPOCH" \
  --set-timestamp-to-revision --general-compress-type=gz "$REPO_DIR" >/dev/null
signing_gpg --local-user "$KMS_SIGNING_FPR" --digest-algo SHA512 --armor --detach-sign \
  --output "$REPO_DIR/repodata/repomd.xml.asc" "$REPO_DIR/repodata/repomd.xml"
find "$REPO_DIR" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
echo "$REPO_DIR"

#!/usr/bin/env bash
# Build the arm64 (aarch64) static binary: the same build/build.sh as amd64,
# run with Debian 12's arm64 Python and gcc.
#
#   build/arm64/build.sh [OUTDIR]      default dist/arm64
#
# On an arm64 host (Graviton, Ampere, ...): build/build.sh runs directly, with
# the packages mk/deps.mk lists for `make binary` (a Debian 12 arm64 machine).
# On an x86_64 host: in an arm64 bookworm root (build/arm64/root.sh, cached in
# .cache/arm64/root) under qemu-user-static through binfmt_misc; needs root
# (mount namespace, chroot). Nothing is written into the working tree but
# OUTDIR. docs/arm64.md.
#
# Knobs: those of build/build.sh (STATICX_COMPRESS, KMS_PKG_COMPRESS,
# KMS_AKEYLESS_MODELS, SOURCE_DATE_EPOCH) are passed through.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
OUT=$(realpath -m "${1:-dist/arm64}")
t0=$(date +%s)
mkdir -p "$OUT"

if [[ $(uname -m) == aarch64 ]]; then
  DIST=$OUT exec build/build.sh
fi

[[ $(id -u) == 0 ]] || { echo "arm64: emulated build needs root (chroot, mounts)" >&2; exit 1; }
ROOT=$(build/arm64/root.sh)
build/arm64/binfmt.sh
# pip inside the root reaches PyPI as the host does: its resolver, its CA bundle
# (a proxy's CA may be installed on the host only), its index settings.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/ssl/certs/host-ca-bundle.crt"
pass_env=(PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt)
for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT \
         http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
         STATICX_COMPRESS KMS_PKG_COMPRESS KMS_AKEYLESS_MODELS SOURCE_DATE_EPOCH; do
  [[ -n ${!v:-} ]] && pass_env+=("$v=${!v}")
done

# The source as `make binary` sees it: a clone of HEAD (so build.sh stamps the
# commit) with the working tree's tracked and untracked files over it (so an
# edit shows as -dirty, as it would on amd64). Prepared by the host's git.
SRC=$ROOT/var/tmp/kms-src
rm -rf "$SRC"
git clone -q --no-hardlinks "$REPO" "$SRC"
git -C "$SRC" checkout -q --detach "$(git rev-parse HEAD)"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [[ -e $f || -L $f ]] && cp -P --parents -t "$SRC" "$f"
done

# A private mount namespace: nothing stays mounted when it ends.
unshare --mount --propagation private -- bash -euo pipefail -c '
  ROOT=$1 OUT=$2
  mount -t proc proc "$ROOT/proc"
  mount --rbind /dev "$ROOT/dev"
  mount -t tmpfs -o size=2g,mode=1777 tmpfs "$ROOT/tmp"
  mkdir -p "$ROOT/out"
  mount --bind "$OUT" "$ROOT/out"
  shift 2
  exec chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 "$@" \
    bash -euo pipefail -c "cd /var/tmp/kms-src && FREEZE_VENV=/opt/venv-freeze DIST=/out WORK=/tmp/work build/build.sh"
' bash "$ROOT" "$OUT" "${pass_env[@]}"
rm -rf "$SRC"
echo "arm64: $OUT/kms-appliance ($(file -b "$OUT/kms-appliance" | cut -d, -f1-2)) in $(( $(date +%s) - t0 ))s"

#!/usr/bin/env bash
# Make sure the Debian packages a make target needs are installed.
#
#   scripts/apt-deps.sh PACKAGE...
#
# The list lives in mk/deps.mk (the one place); this script only acts on it:
#   - everything installed (dpkg-query): print nothing, exit 0. A warm machine
#     pays one dpkg-query call, so every target can depend on this.
#   - something missing, running as root: apt-get update + install only the
#     missing packages (--no-install-recommends), then exit 0.
#   - something missing, not root: one line with the exact command, exit 1,
#     before any long stage starts (rather than "rpmbuild missing" 20 min in).
#   - no dpkg-query (not Debian): one warning line, exit 0; the tools may come
#     from elsewhere and the stage that needs them says what it misses.
# KMS_DEPS=skip skips the check entirely (preinstalled or non-Debian tooling).
set -euo pipefail

[[ ${KMS_DEPS:-} == skip ]] && exit 0
(( $# )) || exit 0

if ! command -v dpkg-query >/dev/null; then
  echo "deps: dpkg-query not found (not Debian?): cannot check for: $*" >&2
  exit 0
fi

# Installed = status "install ok installed"; unknown packages print nothing on
# stdout (dpkg-query exits 1 for them, hence || true).
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null \
  | awk '$NF == "installed" {print $1}' || true)
missing=()
for pkg in "$@"; do
  grep -qxF -- "$pkg" <<<"$installed" || missing+=("$pkg")
done
(( ${#missing[@]} )) || exit 0

if [[ $(id -u) != 0 ]]; then
  echo "deps: missing Debian packages; run: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "deps: installing ${#missing[@]} missing Debian packages: ${missing[*]}" >&2
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
# Wait for the dpkg lock rather than fail: `make -j` may run two of these at once.
lock=(-o DPkg::Lock::Timeout=300)
apt-get "${lock[@]}" update -qq
apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed in $(( $(date +%s) - start ))s" >&2

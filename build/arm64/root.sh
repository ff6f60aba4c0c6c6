#!/usr/bin/env bash
# Create (or reuse) the arm64 Debian 12 build root the arm64 binary is frozen
# in: Debian's arm64 python3.11 and gcc, the same packages mk/deps.mk lists for
# `make binary`. On an x86_64 host it runs under qemu-user-static through
# binfmt_misc (see docs/arm64.md); on an arm64 host it is a plain bookworm root.
#
#   build/arm64/root.sh [ROOT]     default .cache/arm64/root; prints ROOT
#
# Reused while the package list is unchanged (stamp file in the root).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(realpath -m "${1:-.cache/arm64/root}")
# scons: staticx has no arm64 wheel; pip builds it from the sdist, whose bootloader build runs scons.
PACKAGES=python3.11,python3.11-venv,python3-venv,libpython3.11,python3.11-dev,gcc,libc6-dev,binutils,patch,git,ca-certificates,scons
stamp=$ROOT/.kms-root-$(echo "$PACKAGES" | sha256sum | cut -c1-16)
if [[ -f $stamp ]]; then echo "$ROOT"; exit 0; fi

if [[ $(uname -m) != aarch64 ]]; then
  build/arm64/binfmt.sh >&2
fi
rm -rf "$ROOT"
mkdir -p "$(dirname "$ROOT")"
t0=$(date +%s)
mmdebstrap --quiet --arch=arm64 --variant=minbase --include="$PACKAGES" bookworm "$ROOT" >&2
touch "$stamp"
echo "arm64: build root $ROOT in $(( $(date +%s) - t0 ))s" >&2
echo "$ROOT"

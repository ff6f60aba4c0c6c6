#!/usr/bin/env bash
# Build staticx's bootloader from the pinned sdist with build/staticx-bootloader.patch.
#
# Why: the bootloader is the first code that runs and it unpacks everything
# into $TMPDIR (default /tmp). Stock staticx reports a read-only temp dir as
# "Failed to create temporary directory in /tmp: Read-only file system" and a
# noexec one as "Failed to execv() ...: Permission denied"; the patch makes
# both one line that says to set TMPDIR (and detects noexec up front with
# statvfs). It also forwards SIGHUP to its child as it does SIGINT and SIGTERM:
# stock staticx dies of a SIGHUP (systemd's ExecReload sends it to $MAINPID,
# this process) and the server then stops with it (kms_appliance/process.py).
# Nothing else changes. Usage: bootloader.sh VENV OUTFILE
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$1 OUT=$2
VERSION=0.14.2
SDIST_SHA256=bf7d5d35d5777a72b2d4c408eb25f9c61049b28b94a388a012122dba00fffa93
cache=$VENV/src
sdist=$cache/staticx-$VERSION.tar.gz
if [[ ! -f $sdist ]]; then
  mkdir -p "$cache"
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$cache" "staticx==$VERSION"
fi
echo "$SDIST_SHA256  $sdist" | sha256sum -c --quiet - || { echo "staticx sdist hash mismatch" >&2; exit 1; }
src=$(dirname "$OUT")/staticx-src
rm -rf "$src" && mkdir -p "$src"
tar xzf "$sdist" -C "$src" --strip-components=1
patch -s -d "$src" -p1 <build/staticx-bootloader.patch
(cd "$src" && gcc -std=gnu99 -Os -DNDEBUG -Wall -static -DSTATICX_VERSION="\"$VERSION+kms\"" \
  -DCOMPILER_PATH='"gcc"' -DXZ_DEC_X86=1 -ffile-prefix-map="$(pwd)"=. \
  -Ilibtar -Ilibtar/compat -Ilibxz -Wl,--build-id=none -o bootloader.elf \
  bootloader/*.c libtar/*.c libtar/compat/*.c libxz/*.c)
strip --strip-all -o "$OUT" "$src/bootloader.elf"

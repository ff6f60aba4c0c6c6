#!/usr/bin/env bash
# Make this x86_64 host run arm64 executables: qemu-user-static registered in
# binfmt_misc with the F (fix binary) flag, so a chroot without qemu works.
# Mounts binfmt_misc when missing. Fails with what is missing.
set -euo pipefail
BM=/proc/sys/fs/binfmt_misc
die() { echo "arm64: $*" >&2; exit 1; }
[[ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P || -x /usr/bin/qemu-aarch64-static ]] \
  || die "qemu-user-static missing: apt-get install qemu-user-static binfmt-support"
if [[ ! -e $BM/register ]]; then
  mount -t binfmt_misc binfmt_misc "$BM" || die "cannot mount binfmt_misc on $BM (needs root and a kernel with CONFIG_BINFMT_MISC)"
fi
if [[ ! -e $BM/qemu-aarch64 ]]; then
  command -v update-binfmts >/dev/null || die "update-binfmts missing: apt-get install binfmt-support"
  update-binfmts --enable qemu-aarch64 || die "update-binfmts --enable qemu-aarch64 failed"
fi
grep -q '^enabled' "$BM/qemu-aarch64" || die "$BM/qemu-aarch64 is registered but disabled"
grep -q '^flags:.*F' "$BM/qemu-aarch64" || die "$BM/qemu-aarch64 lacks the F flag: a chroot cannot find the interpreter"
echo "arm64: binfmt_misc runs aarch64 ELF with $(sed -n 's/^interpreter //p' "$BM/qemu-aarch64")"

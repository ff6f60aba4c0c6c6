#!/usr/bin/env bash
# Prove every shipped artefact is reproducible: the static binary, its SBOM,
# the .deb, the .rpm, the OCI image archive and the offline bundle are built
# twice, each time in a fresh clone of HEAD (uncommitted edits cannot leak in),
# and compared byte for byte.
#
# The two builds differ in everything that must not matter: checkout path,
# wall-clock time (they run one after the other), temporary directory, umask
# (022 / 002), time zone, locale, host name and the file system under TMPDIR
# (the second runs in its own UTS and mount namespaces when it can, with a
# tmpfs TMPDIR), and each has its own image store (no layer cache is shared).
# SOURCE_DATE_EPOCH comes from the commit in both.
#
# Cheap path (CI): if dist/kms-appliance was built from this very commit with
# a clean tree (its stamp says so), the first build packages that binary
# instead of freezing it again; the second clone freezes its own and packages
# it. Otherwise both clones freeze. On a difference, build/repro_diff.py names
# the differing members inside the artefacts, the work tree is kept for a
# look, and the script fails.
#
#   REPRO_ARTEFACTS=binary   compare the binary and SBOM only (the old check)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${FREEZE_VENV:-$REPO/build/.venv-freeze}
R=$REPO/build/work/repro  # build/work/ is git-ignored
ARTEFACTS=${REPRO_ARTEFACTS:-all}
head=$(git rev-parse HEAD)  # fixed once: others may commit while this runs
commit=${head:0:12}
t0=$(date +%s)

gpgconf --homedir "$R/gnupg" --kill gpg-agent 2>/dev/null || true
rm -rf "$R"
mkdir -p "$R"

# One signing key for both builds: under one key the signatures are
# deterministic, while each clone would otherwise make its own ephemeral key.
# A release key given to the build (KMS_SIGNING_KEY_FILE/GNUPGHOME) is used as is.
if [[ -z ${KMS_SIGNING_KEY_FILE:-}${KMS_SIGNING_GNUPGHOME:-} ]] && command -v gpg >/dev/null; then
  export KMS_SIGNING_GNUPGHOME=$R/gnupg
  mkdir -m 0700 "$KMS_SIGNING_GNUPGHOME"
  gpg --homedir "$KMS_SIGNING_GNUPGHOME" --batch --quiet --passphrase '' --quick-generate-key \
    "kms-appliance repro-check key (NOT a release key) <repro@kms-appliance.invalid>" rsa3072 sign never 2>/dev/null
  trap 'gpgconf --homedir "$R/gnupg" --kill gpg-agent 2>/dev/null || true' EXIT
fi

# $1 = clone dir (each build gets its own path), $2 = output dir,
# $3 = a clean binary of this commit to package (empty: freeze one here).
build_in_clone() {
  local src=$1 out=$2 reuse=$3 s
  s=$(date +%s)
  git clone -q --no-hardlinks "$REPO" "$src"
  git -C "$src" checkout -q --detach "$head"
  mkdir -p "$out" "$src.tmp"
  (
    cd "$src"
    export TMPDIR=$src.tmp
    if [[ -n $reuse ]]; then
      cp -p "$reuse" "$reuse.cdx.json" "$(dirname "$reuse")/SHA256SUMS" "$out/"
      (cd "$out" && sha256sum -c --quiet SHA256SUMS)
    else
      FREEZE_VENV=$VENV DIST=$out WORK=$src/build/work build/build.sh
    fi
    if [[ $ARTEFACTS == all ]]; then
      packaging/deb/build.sh "$out/kms-appliance" "$out"
      packaging/rpm/build.sh "$out/kms-appliance" "$out"
      IMAGE_STORE=$src/.cache/containers packaging/image/build.sh "$out/kms-appliance" "$out"
      packaging/bundle/build.sh "$out"
    fi
  ) >"$out.log" 2>&1 || { tail -20 "$out.log"; echo "repro: build failed (log $out.log)" >&2; exit 1; }
  echo "repro: $(basename "$src"): $([[ -n $reuse ]] && echo packaged || echo built and packaged) in $(( $(date +%s) - s ))s"
}

# The second build: another path, umask, time zone, locale and host name.
other_build() {
  local self
  self=$(declare -f build_in_clone)
  local env=(env R="$R" REPO="$REPO" VENV="$VENV" ARTEFACTS="$ARTEFACTS" head="$head"
             TZ=Pacific/Chatham LANG=C LC_ALL=C)
  local script="umask 002; $self; build_in_clone $R/src-bb $R/out-b ''"
  if [[ $(id -u) == 0 ]] && unshare --uts --mount true 2>/dev/null; then
    # Its own host name, and its TMPDIR (where the packages are staged) on
    # another file system type: tmpfs, where the first build has the disk's.
    mkdir -p "$R/src-bb.tmp"
    "${env[@]}" unshare --uts --mount --propagation private bash -euo pipefail -c \
      "hostname repro-other-host; mount -t tmpfs -o size=4g,mode=0700 tmpfs '$R/src-bb.tmp'; $script"
  else
    "${env[@]}" bash -euo pipefail -c "$script"
  fi
}

reference=""
if [[ -x dist/kms-appliance && -f dist/kms-appliance.cdx.json && -f dist/SHA256SUMS ]]; then
  stamped=$(dist/kms-appliance version --json 2>/dev/null | "$VENV/bin/python" -c \
    'import json,sys; print(json.load(sys.stdin)["commit"])' || true)
  if [[ $stamped == "$commit" ]]; then
    reference=$REPO/dist/kms-appliance
    echo "repro: dist/kms-appliance is a clean build of $commit: the first build packages it"
  fi
fi
[[ -n $reference ]] || echo "repro: dist/ is not a clean build of $commit; both clones freeze"
(umask 022; build_in_clone "$R/src-a" "$R/out-a" "$reference")
other_build

if ! "$VENV/bin/python" build/repro_diff.py "$R/out-a" "$R/out-b"; then
  echo "repro: NOT reproducible ($ARTEFACTS); both builds are kept in $R" >&2
  exit 1
fi
(cd "$R/out-a" && sha256sum -- *)
echo "repro: $ARTEFACTS reproducible in $(( $(date +%s) - t0 ))s"
gpgconf --homedir "$R/gnupg" --kill gpg-agent 2>/dev/null || true
rm -rf "$R"

#!/usr/bin/env bash
# Prove the build is reproducible: build the committed tree (a fresh clone of
# HEAD, so uncommitted edits cannot leak in) and compare byte for byte.
#
# Cheap path (CI): if dist/kms-appliance was built from this very commit with
# a clean tree (its stamp says so), one more build in the clone is compared to
# it; otherwise two clones (at different paths) are built. On a difference, build/repro_diff.py
# names the archive members that differ and the target fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${FREEZE_VENV:-$REPO/build/.venv-freeze}
R=$REPO/build/work/repro  # build/work/ is git-ignored
head=$(git rev-parse HEAD)  # fixed once: others may commit while this runs
commit=${head:0:12}

rm -rf "$R"
mkdir -p "$R"

build_in_clone() {  # $1 = clone dir (each build gets its own path), $2 = output dir
  git clone -q --no-hardlinks "$REPO" "$1"
  git -C "$1" checkout -q --detach "$head"
  (cd "$1" && FREEZE_VENV=$VENV DIST=$2 WORK=$1/build/work build/build.sh >"$2.log" 2>&1) \
    || { tail -20 "$2.log"; echo "repro: build failed (log $2.log)" >&2; exit 1; }
}

reference=""
if [[ -x dist/kms-appliance ]]; then
  stamped=$(dist/kms-appliance version --json 2>/dev/null | "$VENV/bin/python" -c \
    'import json,sys; print(json.load(sys.stdin)["commit"])' || true)
  if [[ $stamped == "$commit" ]]; then
    reference=$REPO/dist/kms-appliance
    echo "repro: comparing dist/kms-appliance (clean build of $commit) with a build in a fresh clone"
  fi
fi
if [[ -z $reference ]]; then
  echo "repro: dist/ is not a clean build of $commit; building the clone twice"
  build_in_clone "$R/src-a" "$R/out1"
  reference=$R/out1/kms-appliance
fi
build_in_clone "$R/src-bb" "$R/out2"  # another path: the output must not depend on it
"$VENV/bin/python" build/repro_diff.py "$reference" "$R/out2/kms-appliance"
sha256sum "$reference" "$R/out2/kms-appliance"
rm -rf "$R"

#!/usr/bin/env bash
# Build the distroless image of kms-appliance without a registry or a Docker
# engine, and export it as an OCI archive:
#   1. assemble the files a distroless static nonroot base holds (passwd and
#      group with nonroot 65532, CA certificates, /tmp, os-release,
#      nsswitch.conf, /home/nonroot) into a local base image;
#   2. `buildah bud -f Dockerfile.distroless` on it (BASE build argument);
#   3. `buildah push` to oci-archive:dist/kms-appliance_<version>_oci.tar.
# With a registry, `--build-arg BASE=gcr.io/distroless/static-debian12:nonroot`
# (the Dockerfile's default) gives the same layout on the upstream base.
#
#   packaging/image/build.sh [BINARY] [OUTDIR]
#   IMAGE_STORE=dir   private containers storage (default .cache/packaging/containers)
#   PKG_ARCH=arm64    an arm64 image of an arm64 binary: kms-appliance_<version>_arm64_oci.tar
#                     (no RUN step, so no emulation is needed to build it)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
BINARY=${1:-dist/kms-appliance}
OUTDIR=${2:-dist}
VERSION=${IMAGE_VERSION:-$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' kms_appliance/version.py)}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
STORE=${IMAGE_STORE:-$REPO/.cache/packaging/containers}
BASE_TAG=localhost/kms-appliance-base:distroless-static-nonroot
TAG=localhost/kms-appliance:$VERSION
case ${PKG_ARCH:-amd64} in
  amd64) PLATFORM=() SUFFIX="" ;;
  arm64) PLATFORM=(--platform linux/arm64) SUFFIX=_arm64 ;;
  *) echo "image: PKG_ARCH must be amd64 or arm64, not $PKG_ARCH" >&2; exit 1 ;;
esac
[[ -x $BINARY ]] || { echo "image: $BINARY missing (make binary)" >&2; exit 1; }

# vfs + chroot isolation: the only combination that works without a container
# engine or overlay support (see the build-and-packaging notes).
B=(buildah --root "$STORE/root" --runroot "$STORE/runroot" --storage-driver vfs)
CTX=$(mktemp -d "${TMPDIR:-/tmp}/kms-image.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
umask 022

# --- 1. the base ------------------------------------------------------------
base=$CTX/base/rootfs
mkdir -p "$base"/{etc/ssl/certs,tmp,home/nonroot,root,usr/bin}
cat >"$base/etc/passwd" <<'P'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
P
cat >"$base/etc/group" <<'G'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
G
cat >"$base/etc/os-release" <<'O'
PRETTY_NAME="Distroless"
NAME="Debian GNU/Linux"
ID="debian"
VERSION_ID="12"
VERSION="Debian GNU/Linux 12 (bookworm)"
HOME_URL="https://github.com/GoogleContainerTools/distroless"
O
echo "hosts: files dns" >"$base/etc/nsswitch.conf"
cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$base/tmp"
chmod 0700 "$base/home/nonroot" "$base/root"
chown 65532:65532 "$base/home/nonroot"
find "$base" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
printf 'FROM scratch\nCOPY rootfs/ /\nUSER 65532:65532\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n' \
  >"$CTX/base/Containerfile"
"${B[@]}" bud --quiet --isolation chroot --format oci --timestamp "$SOURCE_DATE_EPOCH" "${PLATFORM[@]}" \
  --identity-label=false -f "$CTX/base/Containerfile" -t "$BASE_TAG" "$CTX/base" >/dev/null

# --- 2. the image -------------------------------------------------------------
mkdir -p "$CTX/app/dist"
cp "$BINARY" "$CTX/app/dist/kms-appliance"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
"${B[@]}" bud --quiet --isolation chroot --format oci --timestamp "$SOURCE_DATE_EPOCH" "${PLATFORM[@]}" \
  --identity-label=false --pull-never \
  --build-arg BASE="$BASE_TAG" --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
  --build-arg CREATED="$created" \
  --annotation org.opencontainers.image.version="$VERSION" \
  --annotation org.opencontainers.image.revision="$REVISION" \
  --annotation org.opencontainers.image.source=https://github.com/kms-appliance/kms-appliance \
  --annotation org.opencontainers.image.licenses=Apache-2.0 \
  -f Dockerfile.distroless -t "$TAG" "$CTX/app" >/dev/null

# --- 3. export ------------------------------------------------------------------
# Pushed to an OCI layout directory, then archived here: buildah's own
# oci-archive: writer stamps every tar member with the wall clock. The same
# members (oci-layout, index.json, blobs/), sorted, owned by 0, dated
# SOURCE_DATE_EPOCH: skopeo and podman read it as oci-archive.
mkdir -p "$OUTDIR"
out=$OUTDIR/kms-appliance_${VERSION}${SUFFIX}_oci.tar
rm -f "$out"
"${B[@]}" push --quiet "$TAG" "oci:$CTX/layout:$TAG"
tar -C "$CTX/layout" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
  --mode=go-w --format=gnu -cf "$out" oci-layout index.json blobs
# Drop the previous builds' now-dangling layers from the private store.
"${B[@]}" rmi --prune >/dev/null 2>&1 || true
echo "$out"

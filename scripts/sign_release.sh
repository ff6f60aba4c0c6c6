#!/usr/bin/env bash
# Sign a release with the release key (scripts/signing.sh says which key).
#
#   scripts/sign_release.sh bundle DIR     a staged bundle directory (packaging/bundle/build.sh):
#       - signs the .rpm in place (rpmsign: rpm -K, dnf gpgcheck=1)
#       - repo/apt: signed APT repository of the .deb (scripts/repo_apt.sh)
#       - repo/yum: signed YUM/DNF repository of the .rpm (scripts/repo_yum.sh)
#       - repo/kms-appliance.sources, repo/kms-appliance.repo: apt and dnf
#         source definitions (signature checks on), @BUNDLE@ = where it is unpacked
#       - kms-appliance-release.asc/.gpg: the public key (armored / binary keyring)
#       - <image>.sig: containers' simple signing of the image manifest
#         (skopeo standalone-verify; podman/skopeo policy signedBy)
#       - kms-appliance.provenance.json: in-toto/SLSA provenance (scripts/provenance.py)
#       - <artefact>.asc for the binary, SBOM, .deb, .rpm, image and provenance
#       - SHA256SUMS over every file, and SHA256SUMS.asc
#   scripts/sign_release.sh files FILE...  FILE.asc next to each
#   scripts/sign_release.sh rpm FILE...    rpmsign each package in place
#   scripts/sign_release.sh pubkey BASE    BASE.asc and BASE.gpg
#   scripts/sign_release.sh fingerprint    the key's fingerprint (what docs/verify.md publishes)
#
# docs/verify.md is the operator's side of all this.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=scripts/signing.sh
source "$HERE/signing.sh"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 0)}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/kms_appliance/version.py")
KEY_BASE=kms-appliance-release

sign_rpm() {
  rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_path $KMS_SIGNING_GNUPGHOME" \
    --define "_gpg_name $KMS_SIGNING_FPR" --define "_gpg_digest_algo sha256" \
    --define "_gpg_sign_cmd_extra_args --batch --no-tty --faked-system-time ${KMS_SIGNING_TIME}! ${KMS_SIGNING_PASSPHRASE_FILE:+--pinentry-mode loopback --passphrase-file $KMS_SIGNING_PASSPHRASE_FILE}" \
    "$1" </dev/null 2> >(grep -v -e 'faked system time' -e 'GPG_TTY' >&2) >/dev/null
}

# Image reference and manifest digest, from the OCI archive's index.
image_identity() {
  tar -xOf "$1" index.json | python3 -c 'import json, sys
(m,) = json.load(sys.stdin)["manifests"]
print(m["annotations"]["org.opencontainers.image.ref.name"], m["digest"])'
}

# containers/image "simple signing": an OpenPGP-signed JSON naming the image
# and its manifest digest, as `skopeo standalone-sign` writes it, but dated
# like every other signature here (so it is reproducible).
sign_image() {
  local archive=$1 ref digest
  read -r ref digest < <(image_identity "$archive")
  printf '{"critical":{"identity":{"docker-reference":"%s"},"image":{"docker-manifest-digest":"%s"},"type":"atomic container signature"},"optional":{"creator":"kms-appliance sign_release.sh","timestamp":%s}}' \
    "$ref" "$digest" "$KMS_SIGNING_TIME" >"$archive.sig.json"
  rm -f "$archive.sig"
  signing_gpg --local-user "$KMS_SIGNING_FPR" --digest-algo SHA512 --sign --output "$archive.sig" \
    "$archive.sig.json"
  rm -f "$archive.sig.json"
}

source_files() {
  cat >"$1/repo/kms-appliance.sources" <<EOF
# apt source of the offline bundle, checked against the release keyring only.
# The bundle's absolute path is filled in when it is installed (docs/verify.md:
# one sed line); the keyring goes where Signed-By says.
Types: deb
URIs: file:@BUNDLE@/repo/apt
Suites: stable
Components: main
Signed-By: /etc/apt/keyrings/$KEY_BASE.gpg
EOF
  cat >"$1/repo/kms-appliance.repo" <<EOF
# dnf/yum repository of the offline bundle, signature checks on: packages
# (gpgcheck) and metadata (repo_gpgcheck). The bundle's absolute path is filled
# in when it is installed (docs/verify.md: one sed line).
[kms-appliance]
name=kms-appliance offline bundle
baseurl=file://@BUNDLE@/repo/yum
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=file://@BUNDLE@/$KEY_BASE.asc
EOF
}

sign_bundle() {
  local B=$1
  local deb rpm image ref digest
  # PKG_ARCH as in packaging/bundle/build.sh.
  case ${PKG_ARCH:-amd64} in
    amd64) deb=kms-appliance_${VERSION}_amd64.deb rpm=kms-appliance-${VERSION}-1.x86_64.rpm
           image=kms-appliance_${VERSION}_oci.tar ;;
    arm64) deb=kms-appliance_${VERSION}_arm64.deb rpm=kms-appliance-${VERSION}-1.aarch64.rpm
           image=kms-appliance_${VERSION}_arm64_oci.tar ;;
    *) echo "sign: PKG_ARCH must be amd64 or arm64, not $PKG_ARCH" >&2; exit 1 ;;
  esac
  for f in kms-appliance kms-appliance.cdx.json "$deb" "$rpm" "$image"; do
    [[ -f $B/$f ]] || { echo "sign: $B/$f missing" >&2; exit 1; }
  done
  signing_export_public "$B/$KEY_BASE"
  # Signing rewrites the file: break any hard link to dist/ first.
  cp "$B/$rpm" "$B/$rpm.tmp" && mv -f "$B/$rpm.tmp" "$B/$rpm"
  sign_rpm "$B/$rpm"
  "$HERE/repo_apt.sh" "$B/repo/apt" "$B/$deb" >/dev/null
  "$HERE/repo_yum.sh" "$B/repo/yum" "$B/$rpm" >/dev/null
  source_files "$B"
  sign_image "$B/$image"
  read -r ref digest < <(image_identity "$B/$image")
  find "$B" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  python3 "$HERE/provenance.py" --bundle "$B" --out "$B/kms-appliance.provenance.json" \
    --version "$VERSION" --image-ref "$ref" --image-manifest-digest "$digest"
  for f in kms-appliance kms-appliance.cdx.json "$deb" "$rpm" "$image" kms-appliance.provenance.json; do
    sign_detached "$B/$f"
  done
  rm -f "$B/SHA256SUMS" "$B/SHA256SUMS.asc"
  (cd "$B" && find . -type f ! -name SHA256SUMS ! -name SHA256SUMS.asc -printf '%P\n' | LC_ALL=C sort \
    | xargs sha256sum >SHA256SUMS)
  sign_detached "$B/SHA256SUMS"
  find "$B" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

(( $# >= 2 )) || [[ ${1:-} == fingerprint ]] || { sed -n '2,22s/^# \{0,1\}//p' "$0" >&2; exit 2; }
cmd=$1; shift
signing_init
trap signing_cleanup EXIT
case $cmd in
  bundle) sign_bundle "$1" ;;
  files) for f in "$@"; do sign_detached "$f"; done ;;
  rpm) for f in "$@"; do sign_rpm "$f"; done ;;
  fingerprint) echo "$KMS_SIGNING_FPR" ;;
  pubkey) signing_export_public "$1" ;;
  *) echo "sign_release: unknown command $cmd" >&2; exit 2 ;;
esac

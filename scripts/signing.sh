# shellcheck shell=bash
# The release key, for the scripts that sign (sourced by sign_release.sh,
# repo_apt.sh, repo_yum.sh; docs/verify.md says what an operator checks).
#
# Which key (first that applies):
#   KMS_SIGNING_KEY_FILE=path     an exported secret key (gpg --export-secret-keys),
#                                 imported into a private temporary GNUPGHOME
#   KMS_SIGNING_GNUPGHOME=dir     a GnuPG home holding the release key (a smartcard's
#                                 stub works too); KMS_SIGNING_KEY picks one by
#                                 fingerprint when it holds several
#   neither                       an ephemeral key made once in
#                                 .cache/signing/ephemeral-gnupg (never a release key:
#                                 its user id says so, and every script prints it)
#   KMS_SIGNING_PASSPHRASE_FILE   the key's passphrase, if it has one
#
# Signatures are dated max(SOURCE_DATE_EPOCH, the key's creation time), so
# the same key signs the same bytes into the same signature (RSA signatures
# are deterministic): signed artefacts stay reproducible under one key.

SIGNING_EPHEMERAL_UID="kms-appliance ephemeral build key (NOT a release key) <build@kms-appliance.invalid>"

_signing_die() { echo "signing: $*" >&2; exit 1; }

# Run gpg on the release home, quietly, with the frozen signature time.
signing_gpg() {
  local args=(--homedir "$KMS_SIGNING_GNUPGHOME" --batch --no-tty --quiet --no-greeting
              --no-permission-warning --faked-system-time "${KMS_SIGNING_TIME}!")
  [[ -n ${KMS_SIGNING_PASSPHRASE_FILE:-} ]] && \
    args+=(--pinentry-mode loopback --passphrase-file "$KMS_SIGNING_PASSPHRASE_FILE")
  # gpg says it runs with a faked time on every call: that is the point, not news.
  gpg "${args[@]}" "$@" 2> >(grep -v 'faked system time' >&2)
}

_signing_ephemeral_home() {
  local home=$1
  [[ -f $home/.ready ]] && return 0
  mkdir -p "$(dirname "$home")"
  # Two builds starting at once make one key, not two half-made homes.
  (
    flock 9
    [[ -f $home/.ready ]] && exit 0
    rm -rf "$home"
    mkdir -m 0700 "$home"
    gpg --homedir "$home" --batch --quiet --passphrase '' \
      --quick-generate-key "$SIGNING_EPHEMERAL_UID" rsa3072 sign never 2>/dev/null \
      || _signing_die "could not generate the ephemeral key in $home"
    touch "$home/.ready"
  ) 9>"$home.lock"
}

# Resolve the key once; exported so that child scripts reuse it.
signing_init() {
  [[ -n ${KMS_SIGNING_FPR:-} && -n ${KMS_SIGNING_TIME:-} ]] && return 0
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [[ -n ${KMS_SIGNING_KEY_FILE:-} ]]; then
    [[ -r $KMS_SIGNING_KEY_FILE ]] || _signing_die "KMS_SIGNING_KEY_FILE=$KMS_SIGNING_KEY_FILE not readable"
    KMS_SIGNING_GNUPGHOME=$(mktemp -d "${TMPDIR:-/tmp}/kms-gpg.XXXXXX")
    SIGNING_TEMP_HOME=$KMS_SIGNING_GNUPGHOME SIGNING_AGENT_HOME=$KMS_SIGNING_GNUPGHOME
    gpg --homedir "$KMS_SIGNING_GNUPGHOME" --batch --quiet --import "$KMS_SIGNING_KEY_FILE" 2>/dev/null \
      || _signing_die "could not import $KMS_SIGNING_KEY_FILE"
  elif [[ -z ${KMS_SIGNING_GNUPGHOME:-} ]]; then
    KMS_SIGNING_GNUPGHOME=$repo/.cache/signing/ephemeral-gnupg
    SIGNING_AGENT_HOME=$KMS_SIGNING_GNUPGHOME
    _signing_ephemeral_home "$KMS_SIGNING_GNUPGHOME"
  fi
  [[ -d $KMS_SIGNING_GNUPGHOME ]] || _signing_die "KMS_SIGNING_GNUPGHOME=$KMS_SIGNING_GNUPGHOME is not a directory"
  local listing fprs
  listing=$(gpg --homedir "$KMS_SIGNING_GNUPGHOME" --batch --with-colons --list-secret-keys \
    ${KMS_SIGNING_KEY:+"$KMS_SIGNING_KEY"} 2>/dev/null) || _signing_die "no secret key ${KMS_SIGNING_KEY:-} in $KMS_SIGNING_GNUPGHOME"
  fprs=$(awk -F: '$1 == "sec" {getline; print $10}' <<<"$listing")
  [[ $(wc -l <<<"$fprs") == 1 && -n $fprs ]] || \
    _signing_die "$KMS_SIGNING_GNUPGHOME holds $(wc -w <<<"$fprs") secret keys: set KMS_SIGNING_KEY to one fingerprint"
  KMS_SIGNING_FPR=$fprs
  local created epoch=${SOURCE_DATE_EPOCH:-0}
  created=$(awk -F: '$1 == "sec" || $1 == "ssb" {print $6}' <<<"$listing" | sort -n | tail -1)
  KMS_SIGNING_TIME=$(( epoch > created ? epoch : created ))
  export KMS_SIGNING_GNUPGHOME KMS_SIGNING_FPR KMS_SIGNING_TIME
  if grep -qF "(NOT a release key)" <<<"$(gpg --homedir "$KMS_SIGNING_GNUPGHOME" --batch --with-colons \
      --list-keys "$KMS_SIGNING_FPR" 2>/dev/null)"; then
    echo "signing: EPHEMERAL build key $KMS_SIGNING_FPR (not a release key; set KMS_SIGNING_KEY_FILE or KMS_SIGNING_GNUPGHOME)" >&2
  else
    echo "signing: release key $KMS_SIGNING_FPR" >&2
  fi
}

# The agent gpg started on a home this script chose (never on the caller's
# own KMS_SIGNING_GNUPGHOME), and the temporary home of an imported key file.
signing_cleanup() {
  [[ -n ${SIGNING_AGENT_HOME:-} ]] && { gpgconf --homedir "$SIGNING_AGENT_HOME" --kill gpg-agent 2>/dev/null || true; }
  [[ -n ${SIGNING_TEMP_HOME:-} ]] && rm -rf "$SIGNING_TEMP_HOME"
  return 0
}

# FILE -> FILE.asc: an armored detached signature (gpg --verify FILE.asc FILE).
sign_detached() {
  rm -f "$1.asc"
  signing_gpg --local-user "$KMS_SIGNING_FPR" --digest-algo SHA512 --armor --detach-sign \
    --output "$1.asc" "$1"
}

# The public key, armored (rpm --import, dnf gpgkey=) and as a binary keyring
# (apt's signed-by=, gpgv --keyring).
signing_export_public() {
  signing_gpg --armor --export-options export-minimal --export "$KMS_SIGNING_FPR" >"$1.asc"
  signing_gpg --export-options export-minimal --export "$KMS_SIGNING_FPR" >"$1.gpg"
}

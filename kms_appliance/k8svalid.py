"""What Kubernetes accepts, checked before a generator writes a document.

A generated EncryptionConfiguration or static pod with a value Kubernetes
refuses is worse than an error: ``timeout: abc`` stops kube-apiserver from
starting, and a pod named ``A_B`` is silently never created by the kubelet.
So ``encryption-config`` and ``static-pod`` check every value they write
against the upstream rules, and exit 2 naming the flag.

The rules are re-implemented (no Kubernetes library in the binary) from the
sources of the versions the e2e harness pins (tests/e2e/versions.env):

- names: k8s.io/apimachinery pkg/util/validation ``IsDNS1123Label``
  (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63); namespaces are DNS labels
  (apimachinery pkg/api/validation ``ValidateNamespaceName = NameIsDNSLabel``);
  the pod name doubles as the container name and a label value, both DNS
  labels, so a label (not a subdomain, as for pod names alone) is required.
- durations: Go ``time.ParseDuration`` (``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+``,
  units ns us µs μs ms s m h, "0" alone, int64 nanoseconds), which
  ``metav1.Duration`` uses for EncryptionConfiguration ``timeout``; the
  apiserver then requires it positive (k8s.io/apiserver
  pkg/apis/apiserver/validation ``validateKMSTimeout``).
- quantities: k8s.io/apimachinery pkg/api/resource ``ParseQuantity``
  (sign, digits with one optional '.', then a binary-SI, decimal-SI or
  ``e``/``E`` exponent suffix).
- images: github.com/distribution/reference ``ReferenceRegexp``
  (what the kubelet parses before pulling), name at most 255 characters.
- paths: absolute, and no ``..`` element (k8s.io/kubernetes
  pkg/apis/core/validation ``validatePathNoBacksteps`` for hostPath).
"""

from __future__ import annotations

import re
from fractions import Fraction

from .errors import ConfigError, shown

DNS1123_LABEL_MAX = 63
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def dns_label(key: str, value: str) -> str:
    """A DNS-1123 label: pod, container and namespace names."""
    if len(value) > DNS1123_LABEL_MAX or not _DNS1123_LABEL.fullmatch(value):
        raise ConfigError(key, "must be a DNS-1123 label: at most 63 characters of lower-case letters, "
                               "digits and '-', starting and ending with a letter or digit, "
                               f"got {shown(value)}")
    return value


# ---- Go time.ParseDuration ---------------------------------------------------

_DURATION_UNITS_NS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6,
                      "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_INT64_MAX = 2**63 - 1


def go_duration_ns(text: str) -> int | None:
    """Nanoseconds as Go's ``time.ParseDuration`` reads ``text``, or None where Go errors.

    Each element's fraction is truncated to whole nanoseconds, as Go does, so
    ``0.1ns`` is 0 (and therefore not a positive timeout).
    """
    sign, s = 1, text
    if s[:1] in ("-", "+"):
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if s == "0":
        return 0
    if not s:
        return None
    total, pos = 0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        assert m is not None  # every group may be empty
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:  # no digits at all (".s", "s", "..")
            return None
        if unit not in _DURATION_UNITS_NS:  # missing or unknown unit
            return None
        scale = _DURATION_UNITS_NS[unit]
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        if total > 2**63:
            return None
        pos = m.end()
    value = sign * total
    return value if -(2**63) <= value <= _INT64_MAX else None


def kms_timeout(key: str, value: str) -> str:
    """An EncryptionConfiguration kms ``timeout``: a Go duration, strictly positive."""
    ns = go_duration_ns(value)
    if ns is None:
        raise ConfigError(key, "must be a Go duration such as 3s, 500ms or 1m30s "
                               f"(units ns, us, ms, s, m, h), got {shown(value)}")
    if ns <= 0:
        raise ConfigError(key, f"must be a positive duration (kube-apiserver refuses {shown(value)})")
    return value


# ---- resource.Quantity -------------------------------------------------------

_QUANTITY = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_BINARY_SI = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def quantity(key: str, value: str) -> Fraction:
    """The exact value of a Kubernetes quantity (``384Mi``, ``1G``, ``500M``, ``1e9``).

    Like ``ParseQuantity``, the digits may be absent or end with '.' (``1.G``
    is accepted upstream); the suffix is one of the fixed tables or an
    exponent. Deliberate difference: an exponent beyond +-1000 is refused
    (upstream parses it as int64 and truncates it to int32, nonsense either way).
    """
    m = _QUANTITY.fullmatch(value)
    if not value or m is None:
        raise ConfigError(key, "must be a Kubernetes quantity such as 384Mi, 512M or 1G, "
                               f"got {shown(value)}")
    sign, whole, frac, suffix = m.group(1), m.group(2), m.group(3) or "", m.group(4) or ""
    number = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    if suffix in _BINARY_SI:
        number *= 2 ** _BINARY_SI[suffix]
    elif suffix in _DECIMAL_SI:
        number *= Fraction(10) ** _DECIMAL_SI[suffix]
    else:
        exponent = int(suffix[1:])
        if abs(exponent) > 1000:
            raise ConfigError(key, f"exponent out of range, got {shown(value)}")
        number *= Fraction(10) ** exponent
    return -number if sign == "-" else number


# ---- image references ------------------------------------------------------

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = f"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
# The domain, then the repository path (group 1), as reference's anchoredNameRegexp splits them.
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?({_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"{_NAME}(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)
# reference.RepositoryNameTotalLengthMax: applies to the path, without the domain.
NAME_TOTAL_LENGTH_MAX = 255


def image(key: str, value: str) -> str:
    """A container image reference the kubelet can pull: [host[:port]/]path[:tag][@digest]."""
    m = _REFERENCE.fullmatch(value)
    if m is None:
        raise ConfigError(key, "must be an image reference such as registry.example/kms-appliance:0.1.0 "
                               f"(lower-case repository), got {shown(value)}")
    if len(m.group(1)) > NAME_TOTAL_LENGTH_MAX:
        raise ConfigError(key, f"repository path is longer than {NAME_TOTAL_LENGTH_MAX} characters")
    return value


# ---- paths -----------------------------------------------------------------


def abs_path(key: str, value: str) -> str:
    """An absolute path without '..' elements (hostPath and mountPath)."""
    if not value.startswith("/") or "\0" in value or "\n" in value:
        raise ConfigError(key, f"must be an absolute path, got {shown(value)}")
    if ".." in value.split("/"):
        raise ConfigError(key, f"must not contain a '..' element, got {shown(value)}")
    return value

"""k8svalid: the Kubernetes rules the generators apply. Expected values come from the upstream
definitions (apimachinery IsDNS1123Label and ParseQuantity, Go time.ParseDuration,
distribution/reference), not from this implementation."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest

from kms_appliance import k8svalid
from kms_appliance.errors import ConfigError

# check, the option it is given, the values it returns unchanged, the values it refuses
RULES: list[tuple[Callable[[str, str], object], str, list[str], list[str]]] = [
    (k8svalid.dns_label, "--name", ["kms-appliance", "a", "0", "a-b-1", "x" * 63, "kube-system"],
     ["", "A_B", "Kms", "a_b", "-a", "a-", "a.b", "x" * 64, "a b", "é", "kms.appliance", "Kube-System"]),
    (k8svalid.kms_timeout, "--timeout", ["3s", "1m30s", "100ms", "1ns", "500ms", "1.5s", "10s"],
     ["abc", "0", "0s", "-1s", "0.1ns", "3", "-3s", "3 s", "3sec", ""]),
    (k8svalid.quantity, "--memory-limit", [],
     ["", "lots", "384MB", "384mi", "1 Gi", "1.5.5G", "1Ki3", "Gi1", "1e", "0x10", "1KI", "384Mi "]),
    (k8svalid.image, "--image", [
        "kms-appliance", "localhost/kms-appliance:0.1.0", "registry.example:5000/kms-appliance:0.1.0",
        "ghcr.io/org/sub/kms_appliance:v1.2-rc.1", "[::1]:5000/kms:1",
        "registry.example/kms@sha256:" + "a" * 64, "registry.example/kms:1@sha256:" + "0" * 64,
        "a/" + "b" * 255,  # the 255 limit is on the path; "a" is the domain
    ], [
        "", "Kms-Appliance", "registry.example/Kms:1", "kms:", "kms:-bad", "kms::1", " kms", "kms ",
        "kms@sha256:abc", "-kms", "kms//x", "kms:" + "t" * 129, "b" * 256,
        "registry.example/" + "b" * 256, "kms@sha256:" + "a" * 31, "Registry.example/KMS:1", "kms appliance",
    ]),
    (k8svalid.abs_path, "--config", ["/etc/kms-appliance/config.toml", "/", "/a/b..c/d", "/a/./b"],
     ["", "config.toml", "./c", "/etc/../c", "/a/..", "/a\0b", "/a\nb"]),
]


@pytest.mark.parametrize(("check", "key", "value"),
                         [pytest.param(c, k, v, id=f"{c.__name__}-{v}") for c, k, ok, _ in RULES for v in ok])
def test_accepted_unchanged(check: Callable[[str, str], object], key: str, value: str) -> None:
    assert check(key, value) == value


@pytest.mark.parametrize(("check", "key", "value"),
                         [pytest.param(c, k, v, id=f"{c.__name__}-{v}") for c, k, _, bad in RULES for v in bad])
def test_refused_naming_the_option(check: Callable[[str, str], object], key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        check(key, value)
    assert err.value.key == key


@pytest.mark.parametrize(("text", "ns"), [
    ("3s", 3 * 10**9), ("500ms", 5 * 10**8), ("1h30m", 5400 * 10**9), ("1.5s", 15 * 10**8),
    (".5s", 5 * 10**8), ("1.s", 10**9), ("+2m", 120 * 10**9), ("-3s", -3 * 10**9), ("0", 0),
    ("10us", 10**4), ("10\u00b5s", 10**4), ("10\u03bcs", 10**4), ("1h1h", 7200 * 10**9),
    ("0.1ns", 0), ("2562047h", 2562047 * 3600 * 10**9),
])
def test_go_duration_accepted(text: str, ns: int) -> None:
    assert k8svalid.go_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "abc", "3", "3 s", "3sec", "3S", ".s", "s", "1..5s", "+", "-",
                                  "1e3s", "3s ", "2562048h", "0x10s"])
def test_go_duration_refused(text: str) -> None:
    assert k8svalid.go_duration_ns(text) is None


@pytest.mark.parametrize(("text", "value"), [
    ("384Mi", 384 * 2**20), ("1G", 10**9), ("500M", 5 * 10**8), ("1Gi", 2**30), ("128974848", 128974848),
    ("129e6", 129 * 10**6), ("1E3", 1000), ("1e-3", Fraction(1, 1000)), ("100m", Fraction(1, 10)),
    ("1.5Gi", 3 * 2**29), ("0", 0), ("1.G", 10**9), (".5Ki", 512), ("+1k", 1000), ("-1k", -1000),
    ("1E", 10**18), ("2Ei", 2**61), ("5n", Fraction(5, 10**9)), ("192Mi", 192 * 2**20), ("0.5Gi", 2**29),
    ("1e9", 10**9),
])
def test_quantity_accepted(text: str, value: Fraction) -> None:
    assert k8svalid.quantity("--memory-limit", text) == value

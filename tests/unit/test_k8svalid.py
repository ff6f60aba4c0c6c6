"""k8svalid: the Kubernetes rules the generators apply, accepted and refused forms.

Expected values come from the upstream definitions (k8s.io/apimachinery
IsDNS1123Label and ParseQuantity, Go time.ParseDuration, distribution/reference),
not from this implementation.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from kms_appliance import k8svalid
from kms_appliance.errors import ConfigError


@pytest.mark.parametrize("name", ["kms-appliance", "a", "0", "a-b-1", "x" * 63, "kube-system"])
def test_dns_label_accepted(name: str) -> None:
    assert k8svalid.dns_label("--name", name) == name


@pytest.mark.parametrize("name", ["", "A_B", "Kms", "a_b", "-a", "a-", "a.b", "x" * 64, "a b", "é"])
def test_dns_label_refused(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        k8svalid.dns_label("--name", name)
    assert err.value.key == "--name"


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


@pytest.mark.parametrize("text", ["3s", "1m30s", "100ms", "1ns"])
def test_kms_timeout_accepted(text: str) -> None:
    assert k8svalid.kms_timeout("--timeout", text) == text


@pytest.mark.parametrize("text", ["abc", "0", "0s", "-1s", "0.1ns", "3"])
def test_kms_timeout_refused(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        k8svalid.kms_timeout("--timeout", text)
    assert err.value.key == "--timeout"


@pytest.mark.parametrize(("text", "value"), [
    ("384Mi", 384 * 2**20), ("1G", 10**9), ("500M", 5 * 10**8), ("1Gi", 2**30), ("128974848", 128974848),
    ("129e6", 129 * 10**6), ("1E3", 1000), ("1e-3", Fraction(1, 1000)), ("100m", Fraction(1, 10)),
    ("1.5Gi", 3 * 2**29), ("0", 0), ("1.G", 10**9), (".5Ki", 512), ("+1k", 1000), ("-1k", -1000),
    ("1E", 10**18), ("2Ei", 2**61), ("5n", Fraction(5, 10**9)),
])
def test_quantity_accepted(text: str, value: Fraction) -> None:
    assert k8svalid.quantity("--memory-limit", text) == value


@pytest.mark.parametrize("text", ["", "lots", "384MB", "384mi", "1 Gi", "1.5.5G", "1Ki3", "Gi1", "1e", "0x10",
                                  "1KI", "384Mi "])
def test_quantity_refused(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        k8svalid.quantity("--memory-limit", text)
    assert err.value.key == "--memory-limit"


@pytest.mark.parametrize("ref", [
    "kms-appliance", "localhost/kms-appliance:0.1.0", "registry.example:5000/kms-appliance:0.1.0",
    "ghcr.io/org/sub/kms_appliance:v1.2-rc.1", "[::1]:5000/kms:1",
    "registry.example/kms@sha256:" + "a" * 64, "registry.example/kms:1@sha256:" + "0" * 64,
    "a/" + "b" * 255,  # the 255 limit is on the path; "a" is the domain
])
def test_image_accepted(ref: str) -> None:
    assert k8svalid.image("--image", ref) == ref


@pytest.mark.parametrize("ref", [
    "", "Kms-Appliance", "registry.example/Kms:1", "kms:", "kms:-bad", "kms::1", " kms", "kms ",
    "kms@sha256:abc", "-kms", "kms//x", "kms:" + "t" * 129, "b" * 256,
    "registry.example/" + "b" * 256, "kms@sha256:" + "a" * 31,
])
def test_image_refused(ref: str) -> None:
    with pytest.raises(ConfigError) as err:
        k8svalid.image("--image", ref)
    assert err.value.key == "--image"


@pytest.mark.parametrize("path", ["/etc/kms-appliance/config.toml", "/", "/a/b..c/d", "/a/./b"])
def test_abs_path_accepted(path: str) -> None:
    assert k8svalid.abs_path("--config", path) == path


@pytest.mark.parametrize("path", ["", "config.toml", "./c", "/etc/../c", "/a/..", "/a\0b", "/a\nb"])
def test_abs_path_refused(path: str) -> None:
    with pytest.raises(ConfigError) as err:
        k8svalid.abs_path("--config", path)
    assert err.value.key == "--config"

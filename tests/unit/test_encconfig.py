"""`check --encryption-config` (kms_appliance/encconfig.py): the reader refuses (ConfigError naming
the line) rather than guess, and never crashes: the file is whatever an operator points it at."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from kms_appliance import config, encconfig, manifests
from kms_appliance.errors import MAX_SHOWN, ConfigError
from tests.unit.helpers import fifo_error

SOCKET = Path("/run/k/kms.sock")  # not the defaults: the generator must use what is configured
ENDPOINT = f"unix://{SOCKET}"
PROVIDER = "akl"


def _generated(kms_api: str = "v2", timeout: str = "3s") -> str:
    cfg = config.load(env={}, config_file=Path("/dev/null"),
                      flags={"server.backend": "local", "server.socket": str(SOCKET), "server.provider_name": PROVIDER})
    return manifests.encryption_config(cfg, kms_api=kms_api, timeout=timeout)


def _review(doc: Any) -> encconfig.Findings:
    return encconfig.review(doc, PROVIDER, SOCKET)


def _doc(**kms: Any) -> dict[str, Any]:
    """A v2 document in JSON form with our provider first; ``kms`` overrides its fields."""
    provider = {"apiVersion": "v2", "name": PROVIDER, "endpoint": ENDPOINT, "timeout": "3s", **kms}
    provider = {k: v for k, v in provider.items() if v is not None}
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{"resources": ["secrets"], "providers": [{"kms": provider}, {"identity": {}}]}]}


def _write(tmp_path: Path, text: str | bytes, name: str = "enc.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# ---- the generator's own output ------------------------------------------------


def test_generated_v2_parses_to_the_expected_document_and_reviews_clean() -> None:
    doc = encconfig.parse_yaml(_generated())
    assert doc == _doc()
    f = _review(doc)
    assert (f.problems, f.warnings) == ([], [])
    assert any("writes and reads with kms 'v2'" in n for n in f.notes), f.notes


def test_generated_v1_has_no_problem_only_the_deprecation_warning() -> None:
    doc = encconfig.parse_yaml(_generated("v1", "1m30s"))
    assert doc == _doc(apiVersion="v1", cachesize=1000, timeout="1m30s")
    f = _review(doc)
    assert f.problems == []
    assert len(f.warnings) == 1 and "kms v1 is deprecated" in f.warnings[0]


def test_json_input_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps(_doc(), indent=2), "enc.json")
    assert encconfig.load(path) == _doc()
    assert encconfig.check(path, PROVIDER, SOCKET)[0] == "pass"


# ---- each class of problem ---------------------------------------------------------


@pytest.mark.parametrize(("doc", "words"), [
    ({**_doc(), "apiVersion": "apiserver.config.k8s.io/v1beta1"}, "apiVersion/kind"),
    ({**_doc(), "kind": "EncryptionConfig"}, "apiVersion/kind"),
    ({**_doc(), "resources": []}, "no resources list"),
    ({**_doc(), "resources": [*_doc()["resources"], {"resources": ["configmaps"]}]}, "lacks resources or providers"),
    (_doc(name="someone-else"), f"no kms provider named '{PROVIDER}'"),
    (_doc(endpoint="unix:///tmp/akeyless_kms_plugin.sock"), f"this plugin serves '{ENDPOINT}'"),
    (_doc(endpoint=None), "endpoint is 'None'"),
    (_doc(timeout="abc"), "must be a Go duration"),
    (_doc(timeout="0s"), "positive duration"),
    (_doc(timeout="-1s"), "positive duration"),
    (_doc(cachesize=1000), "cachesize is not allowed with kms v2"),
    (_doc(apiVersion="v3"), "kms apiVersion must be v1 or v2"),
])
def test_each_problem_is_named(doc: dict[str, Any], words: str) -> None:
    f = _review(doc)
    assert any(words in p for p in f.problems), f.problems


def test_colon_in_a_v2_name_is_a_problem() -> None:
    f = encconfig.review(_doc(name="ak:eyless"), "ak:eyless", SOCKET)
    assert any("may not contain ':'" in p for p in f.problems), f.problems
    f = encconfig.review(_doc(name="ak:eyless", apiVersion="v1"), "ak:eyless", SOCKET)
    assert not any("':'" in p for p in f.problems), f.problems  # the v2 rule only


def test_identity_first_is_a_warning() -> None:
    doc = _doc()
    doc["resources"][0]["providers"].reverse()
    f = _review(doc)
    assert f.problems == []
    assert any("identity is first" in w and "plaintext" in w for w in f.warnings), f.warnings
    assert any("reads only" in n for n in f.notes), f.notes


def test_check_status_is_warn_with_identity_first(tmp_path: Path) -> None:
    """A problem makes it fail: tests/integration/test_check_serving.py::test_cli_check_with_encryption_config_json."""
    doc = _doc()
    doc["resources"][0]["providers"].reverse()
    status, detail = encconfig.check(_write(tmp_path, json.dumps(doc)), PROVIDER, SOCKET)
    assert status == "warn" and "identity is first" in detail


def test_another_provider_first_means_we_only_read() -> None:
    doc = _doc()
    doc["resources"][0]["providers"].insert(0, {"aescbc": {"keys": [{"name": "k", "secret": "x"}]}})
    f = _review(doc)
    assert (f.problems, f.warnings) == ([], [])
    assert any("reads only (an earlier provider writes)" in n for n in f.notes), f.notes
    assert any("new writes use 'aescbc'" in n for n in f.notes), f.notes


def test_no_identity_is_noted() -> None:
    doc = _doc()
    del doc["resources"][0]["providers"][1]
    assert any("no identity provider" in n for n in _review(doc).notes)


@pytest.mark.parametrize("doc", [None, [], "text", 3, {"resources": "secrets"},
                                 {"resources": [None, 1, {"providers": [None, 2, "x", {}]}]}])
def test_odd_shapes_are_problems_not_exceptions(doc: Any) -> None:
    assert _review(doc).problems


def test_long_values_are_never_echoed() -> None:
    long = "x" * 5000
    doc = _doc(endpoint=long, timeout=long, apiVersion=long)
    doc["resources"][0]["resources"] = [long]
    doc["resources"].append({"resources": [long], "providers": [{long: {}}, {"kms": {"name": PROVIDER, "apiVersion": long}}]})
    f = _review(doc)
    assert f.problems
    for text in f.problems + f.warnings + f.notes:
        assert "x" * (MAX_SHOWN + 1) not in text, text


# ---- what the reader refuses -------------------------------------------------------


@pytest.mark.parametrize(("text", "line"), [
    ("apiVersion: &a v1\nkind: *a\n", 1),                       # anchor
    ("kind: EncryptionConfiguration\nresources: |\n  x\n", 2),  # block scalar
    ("kind: 'EncryptionConfiguration'\n", 1),                   # single quotes
    ("kind: x\nresources:\n\t- a\n", 3),                        # tab indentation
    ("kind: x\n---\nkind: y\n", 2),                             # several documents
    ("kind: x\n...\n", 2),                                      # document end
    ("kind: !!str x\n", 1),                                     # tag
    ("kind: x # comment\n", 1),                                 # trailing comment
    ("kind: \"unterminated\n", 1),
    ("kind: x\nkind: y\n", 2),                                  # duplicate key
    ("kind: x\n   apiVersion: y\n", 2),                         # stray indentation
    ("kind: x\njust a line\n", 2),
    ("resources:\n  -\n", 2),                                   # empty list item
])
def test_yaml_beyond_the_subset_is_refused_with_its_line(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(ConfigError) as err:
        encconfig.load(_write(tmp_path, text))
    assert f"line {line}:" in err.value.message, err.value.message


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty"),
    (b"# only a comment\n\n", "empty"),
    (b"kind: \xff\xfe\n", "not UTF-8"),
    (b"{\"kind\": ", "not valid JSON"),
    (b"x" * (encconfig.MAX_BYTES + 1), "over 1 MiB"),
    (b"{\"a\": " * 100 + b"1" + b"}" * 100, "nested deeper"),
    (b"[" * 200_000 + b"]" * 200_000, "line 1:"),  # not JSON (no '{'): YAML refuses
    (b"{" + b"\"a\": [" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON"),  # RecursionError inside json
])
def test_bad_files_are_config_errors(tmp_path: Path, content: bytes, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        encconfig.load(_write(tmp_path, content))
    assert words in err.value.message, err.value.message


def test_deep_yaml_nesting_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    # 1400 levels: without the bound, two parser frames a level would exhaust the stack.
    deep = "".join(f"{' ' * i}k:\n" for i in range(1400)) + " " * 1400 + "v: 1\n"
    assert len(deep) < encconfig.MAX_BYTES
    with pytest.raises(ConfigError) as err:
        encconfig.load(_write(tmp_path, deep))
    assert f"nested deeper than {encconfig.MAX_DEPTH}" in err.value.message
    lists = "kind: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(ConfigError, match="nested deeper"):
        encconfig.load(_write(tmp_path, lists))


def test_huge_integers_stay_strings(tmp_path: Path) -> None:
    """int() of more than 4300 digits raises ValueError: a long digit run is kept as text."""
    assert encconfig.parse_yaml("n: " + "9" * 10_000 + "\n") == {"n": "9" * 10_000}
    assert encconfig.parse_yaml("n: ²\n") == {"n": "²"}  # isdigit(), but int() refuses it


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    error = fifo_error(tmp_path / "enc.fifo", lambda: encconfig.load(tmp_path / "enc.fifo"))
    assert isinstance(error, ConfigError) and "not a regular file" in error.message


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "/"])
def test_non_regular_files_are_refused(special: str) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        encconfig.load(Path(special))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*No such file"):
        encconfig.load(tmp_path / "absent.yaml")


# ---- light fuzzing -------------------------------------------------------------------

_ALPHABET = " -:#[]{},\"'&*!|>\t\n\\x0123456789abcdefghijklmnopqrstuvwxyz/.é\x00"


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(chars) + 1)
        if op == 0 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op == 1:
            chars.insert(pos, rng.choice(_ALPHABET))
        elif op == 2 and chars:  # duplicate a slice (deeper nesting, repeated keys)
            a = rng.randrange(len(chars))
            chars[pos:pos] = chars[a:a + rng.randint(1, 40)]
        else:
            lines = "".join(chars).split("\n")
            i = rng.randrange(len(lines))
            lines[i] = " " * rng.randint(0, 12) + lines[i].lstrip(" ")
            chars = list("\n".join(lines))
    return "".join(chars)


def test_fuzzed_generator_output_raises_only_config_errors() -> None:
    rng = random.Random(20261202)
    seeds = [_generated(), _generated("v1", "1m30s"), json.dumps(_doc(), indent=1)]
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(3000):
        text = _mutate(rng, rng.choice(seeds))
        try:
            doc = encconfig.parse(text)
        except ConfigError:
            outcomes["refused"] += 1
            continue
        outcomes["parsed"] += 1
        f = _review(doc)  # must not raise either
        for line in f.problems + f.warnings + f.notes:
            assert isinstance(line, str)
    # Both paths were exercised (else the fuzzing tested nothing).
    assert outcomes["parsed"] > 100 and outcomes["refused"] > 100, outcomes

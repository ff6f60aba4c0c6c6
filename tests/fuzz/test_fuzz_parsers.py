"""Fuzz every parser of ours: ciphertext header, keyring file, config file, annotations.

100,000 inputs per parser from the mutation engine, plus hypothesis for the keyring's JSON
structure (wrong types in every field, which byte mutations of a JSON text rarely reach). A
parser returns a value that satisfies its invariants or raises its own typed error quoting no
input secret; anything else is a crash.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kms_appliance import config, errors
from kms_appliance.backends import envelope, keyring
from kms_appliance.kms import validate
from tests.fuzz import engine
from tests.fuzz.harness import EXAMPLES, Tally, no_leak

HYP = int(os.environ.get("KMS_APPLIANCE_HYPOTHESIS_EXAMPLES", "300"))


# ---- ciphertext header --------------------------------------------------------------

HEADER_ERRORS = re.compile(r"^(ciphertext was not produced by kms-appliance|unsupported ciphertext format \d+|"
                           r"ciphertext belongs to the "
                           r"(local|akeyless|akeyless-envelope|unknown backend \d+) backend)$")


def _split_ok(data: bytes, backend: int, t: Tally) -> None:
    try:
        head, payload = t.timed(lambda: envelope.split(data, backend))
    except errors.CiphertextError as exc:
        assert HEADER_ERRORS.match(exc.message), exc.message
        t.count("refused")
        return
    assert head == envelope.header(backend) and head + payload == data and payload
    t.count("accepted")


def test_envelope_header_volume() -> None:
    t = Tally("parser: ciphertext header")
    corpus = [envelope.header(1) + os.urandom(40), envelope.header(2) + os.urandom(80), b"\x8aKA", b""]
    m = engine.Mutator(corpus, engine.SEED, 200)
    engine.campaign(t.target, EXAMPLES, lambda i: m.next(),
                    lambda d: _split_ok(d, 1 + (len(d) & 1), t))
    t.report(EXAMPLES)


# ---- keyring file -------------------------------------------------------------------

def _keyring_corpus() -> tuple[list[bytes], list[bytes]]:
    docs, materials = [], []
    for n in (1, 2, 3):
        keys = []
        for v in range(1, n + 1):
            mat = os.urandom(32)
            materials.append(mat)
            keys.append({"version": v, "created": "2026-01-01T00:00:00Z",
                         "key": base64.b64encode(mat).decode()})
        doc = {"format": keyring.FORMAT, "keyring_id": "abcdef0123456789", "keys": keys}
        docs.append(json.dumps(doc, indent=2 if n == 2 else None).encode())
    docs.append(b'{"format": "kms-appliance-keyring/1", "keyring_id": "x", "keys": []}')
    return docs, materials


def _keyring_ok(data: bytes, materials: list[bytes], t: Tally) -> None:
    try:
        ring = t.timed(lambda: keyring.parse(data))
    except errors.SetupError as exc:
        no_leak(exc.message, *materials, *(base64.b64encode(m) for m in materials))
        t.count("refused")
        return
    assert ring.entries and ring.keyring_id.isalnum() and 8 <= len(ring.keyring_id) <= 64
    versions = [e.version for e in ring.entries]
    assert len(set(versions)) == len(versions) and all(1 <= v < 2**31 for v in versions)
    assert all(len(e.material) == keyring.KEY_BYTES for e in ring.entries)
    assert ring.current.version == max(versions)
    assert ring.key_id(ring.current.version).startswith(f"local/{ring.keyring_id}/v")
    t.count("accepted")


def test_keyring_volume() -> None:
    t = Tally("parser: keyring file")
    docs, materials = _keyring_corpus()
    m = engine.Mutator(docs, engine.SEED + 1, 4096)
    engine.campaign(t.target, EXAMPLES, lambda i: m.next(), lambda d: _keyring_ok(d, materials, t))
    t.report(EXAMPLES)
    assert t.codes.get("accepted", 0) >= EXAMPLES // 500, "the campaign must also reach valid keyrings"


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                       lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                       max_leaves=12)


@settings(max_examples=HYP, deadline=None, database=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate, Phase.shrink])
@given(st.fixed_dictionaries({"format": st.one_of(st.just(keyring.FORMAT), JSONISH),
                              "keyring_id": st.one_of(st.just("abcdef0123456789"), JSONISH),
                              "keys": st.one_of(st.lists(st.fixed_dictionaries(
                                  {"version": JSONISH, "key": st.one_of(
                                      st.binary(min_size=32, max_size=32).map(
                                          lambda b: base64.b64encode(b).decode()), JSONISH)}),
                                  max_size=3), JSONISH)}))
def test_keyring_properties(doc: dict[str, object]) -> None:
    _keyring_ok(json.dumps(doc).encode(), [], Tally("hypothesis keyring"))


def test_keyring_deep_nesting_is_a_startup_error() -> None:
    with pytest.raises(errors.SetupError):
        keyring.parse(b"[" * 100_000)


# ---- config file ---------------------------------------------------------------------

SECRET_VALUE = "AKLS-SECRET-VALUE-0123456789abcdef"
CONFIG_CORPUS = [
    b'[server]\nsocket = "/run/kms/kms.sock"\nworkers = 8\nmax_connections = 64\ngrace_period = "5s"\n'
    b'allowed_uids = [0, 1000]\nbackend = "local"\n',
    b'[local]\nkeyring = "/var/lib/k.json"\nreload_interval = "500ms"\n[cache]\nenabled = true\nsize = 10\n',
    b'[akeyless]\nurl = "https://gw:8000/api/v2"\nkey_name = "k"\naccess_id = "p-abc"\n'
    b'access_key = "' + SECRET_VALUE.encode() + b'"\ntimeout = 3\n',
    b'[observability]\nhttp_listen = "127.0.0.1:8787"\nlog_level = "debug"\naudit_log = "-"\n',
    b'[server]\nsocket = "unix:///run/x.sock"\nsocket_group = "kms"\n',
]


def _config_ok(data: bytes, path: Path, t: Tally) -> None:
    path.write_bytes(data)
    try:
        cfg = t.timed(lambda: config.load(flags={}, env={}, config_file=path))
    except errors.ConfigError as exc:
        assert exc.key and exc.message
        no_leak(exc.message, SECRET_VALUE.encode())
        t.count("refused")
        return
    assert cfg.server.backend in ("local", "akeyless")
    assert cfg.server.socket.is_absolute()
    assert 1 <= cfg.server.workers <= 1024 and 1 <= cfg.server.max_connections <= 10_000
    t.count("accepted")


def test_config_file_volume(tmp_path: Path) -> None:
    t = Tally("parser: config file")
    m = engine.Mutator(CONFIG_CORPUS, engine.SEED + 2, 2048)
    path = tmp_path / "c.toml"
    # every other input is made valid UTF-8, so the campaign also gets past the decoder
    engine.campaign(t.target, EXAMPLES,
                    lambda i: m.next() if i % 2 else m.next().decode("utf-8", "replace").encode(),
                    lambda d: _config_ok(d, path, t))
    t.report(EXAMPLES)
    assert t.codes.get("accepted", 0) >= EXAMPLES // 500, "the campaign must also reach valid configs"


def test_config_env_volume() -> None:
    """Environment values go through the same parsers; arbitrary strings never crash them."""
    t = Tally("parser: config environment")
    names = [n for section, cls in config.SECTIONS.items() for f in dataclasses.fields(cls)
             for n in config.env_names(section, f.name, f.metadata)]
    values = engine.Mutator([b"1", b"true", b"3s", b"/run/x.sock", b"127.0.0.1:0", b"local", b"0,1000",
                             b"https://gw:8000", b"500ms", b"debug"], engine.SEED + 3, 200)
    rng = random.Random(engine.SEED)

    def check(_: bytes) -> None:
        env = {rng.choice(names): values.next().decode("utf-8", "replace").replace("\0", "")
               for _ in range(rng.randrange(1, 5))}
        try:
            t.timed(lambda: config.load(flags={}, env={**env, "KMS_APPLIANCE_CONFIG": "/dev/null"}))
            t.count("accepted")
        except errors.ConfigError:
            t.count("refused")

    engine.campaign(t.target, EXAMPLES, lambda i: b"", check)
    t.report(EXAMPLES)


@pytest.mark.parametrize("content", [b"a = " + b"[" * 5000 + b"]" * 5000, b"[server]\nsocket = \"\xe9\"\n"],
                         ids=["deep-nesting", "not-utf8"])
def test_config_bad_bytes_are_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(errors.ConfigError):
        config.load(flags={}, env={}, config_file=path)


# ---- annotations ---------------------------------------------------------------------

def _reference_fqdn(key: str) -> bool:
    """An independent reading of the rule (labels of [a-z0-9-], no edge hyphen, alpha TLD)."""
    if not 1 <= len(key) <= 253:
        return False
    labels = key.split(".")
    if len(labels) < 2:
        return False
    tld = labels[-1]
    if not (2 <= len(tld) <= 63 and all("a" <= c <= "z" for c in tld)):
        return False
    ok = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return all(1 <= len(x) <= 63 and set(x) <= ok and x[0] != "-" and x[-1] != "-" for x in labels[:-1])


def _annotations_ok(values: dict[str, bytes], t: Tally) -> None:
    total = sum(len(k.encode()) + len(v) for k, v in values.items())
    expect = all(_reference_fqdn(k) for k in values) and total <= validate.MAX_ANNOTATIONS
    try:
        t.timed(lambda: validate.annotation_map(values))
        got = True
    except errors.InvalidRequest as exc:
        for k in values:
            if len(k) >= 8:
                assert k not in exc.message
        got = False
    assert got == expect, f"validator says {got}, reference says {expect} for {list(values)[:3]}"
    t.count("accepted" if got else "refused")


def test_annotations_volume() -> None:
    t = Tally("parser: annotations")
    keys = engine.Mutator([b"version.kms-appliance.local", b"a.io", b"x-1.y-2.example.org", b"a" * 63 + b".com",
                           b"version.kms-appliance.akeyless.io", b"A.com", b"a..b.com"], engine.SEED + 4, 300)
    rng = random.Random(engine.SEED + 5)

    def check(_: bytes) -> None:
        values = {}
        for _ in range(rng.randrange(0, 4)):
            key = keys.next().decode("utf-8", "replace")
            values[key] = b"v" * rng.choice((0, 1, 100, 16_000, 32_700))
        _annotations_ok(values, t)

    engine.campaign(t.target, EXAMPLES, lambda i: b"", check)
    t.report(EXAMPLES)
    assert t.codes.get("accepted", 0) >= EXAMPLES // 100 and t.codes.get("refused", 0) >= EXAMPLES // 100

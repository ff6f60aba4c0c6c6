"""Audit records, metrics (process metrics and the KEK version's age from the keyring's own date,
unchanged by a restart, moved by a rotation), health endpoints, and the secret scan over all output."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import grpc
import pytest

from kms_appliance.backends import keyring
from tests.support import plugin as pm
from tests.support import secrets_scan
from tests.support.kmsclient import Client
from tests.support.procs import eventually

AUDIT_REQUIRED = {"ts", "schema", "event", "api", "uid", "key_id", "backend", "key_name",
                  "key_version", "outcome", "code", "duration_ms", "ct_fp"}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
OLD = "2020-01-02T03:04:05Z"
OLD_TS = 1577934245.0
CREATED = "kms_appliance_key_version_created_timestamp_seconds"


def test_calls_are_audited_counted_and_health_answers(plugin: pm.Plugin, client: Client) -> None:
    """Good and refused calls, then repeated Status: one schema-complete audit record per call
    (encrypt and decrypt join on ct_fp), the status change audited once, the calls in /metrics."""
    enc = client.encrypt(os.urandom(32), uid="enc-uid-1")
    client.decrypt(enc.ciphertext, enc.key_id, uid="dec-uid-1")
    with pytest.raises(grpc.RpcError):
        client.decrypt(b"\x8aKA\x01\x01\0\0\0\x01" + b"\0" * 40, enc.key_id, uid="dec-uid-bad")
    with pytest.raises(grpc.RpcError):
        client.encrypt(b"")
    for _ in range(5):
        client.status()
    # Calls are counted by the audit flusher, in the pass that writes their records.
    records = plugin.audit_until(lambda rs: sum(r["event"] in ("encrypt", "decrypt") for r in rs) >= 4
                                 and any(r["event"] == "status_change" for r in rs))
    calls = [r for r in records if r["event"] in ("encrypt", "decrypt")]
    assert len(calls) == 4
    for r in records:
        assert TS.match(str(r["ts"])) and r["schema"] == 1
    for r in calls:
        assert set(r) >= AUDIT_REQUIRED, AUDIT_REQUIRED - set(r)
    e, d, bad, invalid = calls
    assert (e["event"], e["api"], e["uid"], e["outcome"], e["code"]) == ("encrypt", "v2", "enc-uid-1", "ok", "OK")
    assert d["ct_fp"] == e["ct_fp"] and d["key_version"] == e["key_version"] == "1"
    assert (bad["outcome"], bad["code"]) == ("corrupt", "INVALID_ARGUMENT") and bad["error"]
    assert (invalid["event"], invalid["outcome"], invalid["code"]) == ("encrypt", "invalid", "INVALID_ARGUMENT")
    changes = [r for r in records if r["event"] == "status_change"]
    assert len(changes) == 1 and changes[0]["healthz"] == "ok"
    status, body = plugin.http("/metrics")
    text = body.decode()
    assert status == 200
    assert 'kms_appliance_calls_total{api="v2",method="encrypt",outcome="ok"} 1.0' in text
    assert 'kms_appliance_calls_total{api="v2",method="encrypt",outcome="invalid"} 1.0' in text
    assert 'kms_appliance_calls_total{api="v2",method="decrypt",outcome="ok"} 1.0' in text
    assert 'kms_appliance_calls_total{api="v2",method="decrypt",outcome="corrupt"} 1.0' in text
    assert "kms_appliance_call_duration_seconds_bucket" in text
    assert 'kms_appliance_key_version{backend="local"} 1.0' in text
    assert 'kms_appliance_backend_healthy{backend="local"} 1.0' in text
    assert "kms_appliance_build_info{" in text
    names = set(re.findall(r"^([a-z_]+)", text, re.M))
    assert all(n.startswith(("kms_appliance_", "python_", "process_")) for n in names), names
    for path in ("/livez", "/readyz", "/healthz"):
        code, raw = plugin.http(path)
        assert code == 200 and json.loads(raw)["status"] == "ok"
    assert plugin.http("/nope")[0] == 404


def test_no_secret_in_anything_the_process_wrote(tmp_path: Path) -> None:
    """Plaintexts, DEKs and KEK bytes never appear raw, hex or base64 in any output."""
    used: list[bytes] = []
    with pm.running(tmp_path / "s", ["--log-level", "debug"]) as p, Client(p.socket) as c:
        for _ in range(20):
            seed = os.urandom(32)
            used.append(seed)
            enc = c.encrypt(seed)
            c.decrypt(enc.ciphertext, enc.key_id)
            dek = os.urandom(32)
            used.append(dek)
            c.v1_decrypt(c.v1_encrypt(dek))
        for bad in (b"", b"x" * 600):
            with pytest.raises(grpc.RpcError) as info:
                c.encrypt(bad)
            p.extra_outputs.append(info.value.details().encode())
        p.http("/metrics")
        p.http("/healthz")
    used += [e.material for e in keyring.load(p.workdir / "keyring.json").entries]
    written = p.written()
    assert len(written) > 1000
    assert secrets_scan.find(written, used) == []
    # The scan itself must be able to find something: prove it on a planted copy.
    assert secrets_scan.find(written + used[0].hex().encode(), used)


def _old_keyring(path: Path) -> None:
    pm.keyring_init(path)
    doc = json.loads(path.read_text())
    doc["keys"][0]["created"] = OLD
    path.write_text(json.dumps(doc))


def test_key_age_survives_restart_and_follows_rotation(tmp_path: Path) -> None:
    """The KEK version's age across a restart; then keyring rotate + SIGHUP without a restart: new
    key_id, Encrypt agrees with Status, old v2 and v1 data readable, the rotation audited."""
    ring = tmp_path / "w" / "keyring.json"
    ring.parent.mkdir(mode=0o700)
    _old_keyring(ring)
    with pm.running(tmp_path / "w", keyring=ring) as p:
        first = p.metrics()
        assert first[f'{CREATED}{{backend="local"}}'] == OLD_TS
        for name in ("process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"):
            assert first[name] > 0, name
        assert first["process_start_time_seconds"] > OLD_TS
    assert p.proc.poll() is not None  # the old process is gone before the restart
    with pm.running(tmp_path / "w", keyring=ring) as p, Client(p.socket) as client:
        again = p.metrics()
        assert again[f'{CREATED}{{backend="local"}}'] == OLD_TS  # a restart does not reset the age
        assert again["process_start_time_seconds"] >= first["process_start_time_seconds"]
        old_seed = os.urandom(32)
        old = client.encrypt(old_seed)
        v1_old = client.v1_encrypt(b"v1-dek-" * 4)
        p.rotate_key()
        p.proc.send_signal(signal.SIGHUP)
        assert eventually(lambda: p.metrics()['kms_appliance_key_version{backend="local"}'] == 2, 10, 0.05)
        assert p.metrics()[f'{CREATED}{{backend="local"}}'] > time.time() - 600
        assert eventually(lambda: client.status().key_id != old.key_id, 10, 0.1)
        new_id = client.status().key_id
        assert client.encrypt(os.urandom(32)).key_id == new_id
        assert client.decrypt(old.ciphertext, old.key_id) == old_seed
        assert client.v1_decrypt(v1_old) == b"v1-dek-" * 4
        events = [r for r in p.audit_until(lambda rs: any(r["event"] == "key_rotation" for r in rs))
                  if r["event"] == "key_rotation"]
        assert events and events[-1]["key_id"] == new_id and events[-1]["previous_key_id"] == old.key_id

"""The fault matrix: every way Akeyless (or the path to it) fails, on the real plugin.

The plugin (Akeyless backend, decrypt cache off so every Decrypt goes remote, call budget 1 s,
health probe every 1 s) reaches the emulator as ``localhost`` through a switchable proxy
(tcpproxy.py) and a resolver that can be made to fail (dnsshim.py). Per fault: what
kube-apiserver sees (the gRPC code, never a wrong plaintext, never later than the budget), the
audit record, the metric, readiness, and recovery with no thread or descriptor growth.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from akeyless_emulator import Emulator
from tests.reliability.probes import metric
from tests.reliability.tcpproxy import SwitchProxy
from tests.support import figures, ledger, procinfo
from tests.support import plugin as pm
from tests.support.emulator import KEY, identity_env, record_secrets
from tests.support.kmsclient import Client
from tests.support.procs import wait_until

BUDGET = 1.0        # server.call_timeout and akeyless.timeout of the plugin under test
SLACK = 1.0         # scheduling slack on a shared 2-core machine
READY_WAIT = 20.0


@dataclass
class Rig:
    emu: Emulator
    other_ca: Emulator
    expired: Emulator
    proxy: SwitchProxy
    dns_flag: Path
    plugin: pm.Plugin
    client: Client
    sealed: list[tuple[bytes, Any]]          # (seed, EncryptResponse) made before any fault
    v1_sealed: tuple[bytes, bytes]
    baseline: dict[str, int]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    base = tmp_path_factory.mktemp("faults")
    with Emulator(tls=True) as emu, Emulator(tls=True) as other_ca, \
            Emulator(tls=True, state_dir=emu.state_dir, server_cert="expired") as expired:
        emu.create_key(KEY)
        proxy = SwitchProxy(("127.0.0.1", emu.port)).start()
        flag = base / "dns-broken"
        shim = pm.Command((sys.executable, "-m", "tests.reliability.dnsshim", str(flag)), pm.REPO)
        env = identity_env(emu, url=f"https://localhost:{proxy.port}", KMS_APPLIANCE_SERVER_CALL_TIMEOUT=f"{BUDGET}s",
                           KMS_APPLIANCE_AKEYLESS_TIMEOUT=f"{BUDGET}s", KMS_APPLIANCE_CACHE_ENABLED="false",
                           KMS_APPLIANCE_OBSERVABILITY_HEALTH_INTERVAL="1s")
        plugin = pm.start(base / "plugin", ["--log-level", "debug"], env, akeyless=True, command=shim)
        client = Client(plugin.socket, timeout=BUDGET + 5)
        try:
            sealed = []
            for _ in range(4):
                seed = ledger.new_secret()
                sealed.append((seed, client.encrypt(seed)))
            dek = ledger.new_secret()
            v1 = (dek, client.v1_encrypt(dek))
            _warm(client, sealed)
            pid = plugin.proc.pid
            baseline = {"threads": procinfo.threads(pid), "fds": procinfo.fds(pid)}
            figures.put("faults", "baseline threads/fds", baseline)
            yield Rig(emu, other_ca, expired, proxy, flag, plugin, client, sealed, v1, baseline)
        finally:
            client.close()
            plugin.stop()
            proxy.stop()
            record_secrets(emu)


def _warm(client: Client, sealed: list[tuple[bytes, Any]]) -> None:
    """Concurrent traffic first, so worker threads and pooled connections exist before the baseline."""
    def one(i: int) -> None:
        seed, enc = sealed[i % len(sealed)]
        assert client.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)) == seed
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(64)))


# ---- fault cells ------------------------------------------------------------------

Inject = Callable[[Rig], Any]


def _fault(endpoint: str, **kw: Any) -> Inject:
    return lambda r: r.emu.fault(endpoint, **kw)


def _clear_faults(r: Rig, _: Any) -> None:
    r.emu.clear_faults()


def _revoke(r: Rig) -> Any:
    with r.emu.core.lock:
        saved = dict(r.emu.core.identities)
        r.emu.core.identities.clear()
    r.emu.expire_tokens()
    return saved


def _unrevoke(r: Rig, saved: Any) -> None:
    with r.emu.core.lock:
        r.emu.core.identities.update(saved)


def _tls(which: str) -> Inject:
    return lambda r: r.proxy.switch(("127.0.0.1", getattr(r, which).port))


def _tls_clear(r: Rig, _: Any) -> None:
    r.proxy.switch(("127.0.0.1", r.emu.port))


def _dns(r: Rig) -> None:
    r.dns_flag.touch()
    r.proxy.drop_all()  # pooled connections would hide the resolver until they close


def _dns_clear(r: Rig, _: Any) -> None:
    r.dns_flag.unlink()


@dataclass(frozen=True)
class Cell:
    name: str
    inject: Inject
    code: str              # what Encrypt and Decrypt answer while the fault holds
    outcome: str           # audit outcome and metric label
    ready: bool            # /readyz while the fault holds
    clear: Callable[[Rig, Any], None] = _clear_faults
    decrypt_code: str = ""  # when Decrypt differs from Encrypt


CELLS = [
    Cell("latency beyond the deadline", _fault("*", kind="latency", delay=3 * BUDGET), "UNAVAILABLE",
         "unavailable", False),
    Cell("5xx (503)", _fault("*", status=503), "UNAVAILABLE", "unavailable", False),
    Cell("5xx (500)", _fault("*", status=500), "UNAVAILABLE", "unavailable", False),
    Cell("429 throttled", _fault("*", status=429, retry_after=1), "RESOURCE_EXHAUSTED", "throttled", True),
    Cell("expired token", lambda r: r.emu.expire_tokens(), "OK", "ok", True, clear=lambda r, _: None),
    Cell("revoked credentials", _revoke, "PERMISSION_DENIED", "user", False, clear=_unrevoke),
    Cell("connection reset", _fault("*", kind="reset"), "UNAVAILABLE", "unavailable", False),
    Cell("hang", _fault("*", kind="hang", delay=10.0), "UNAVAILABLE", "unavailable", False),
    Cell("malformed body", _fault("*", kind="malformed"), "INTERNAL", "corrupt", False),
    Cell("wrong plaintext length (short)", _fault("decrypt", kind="wrong_length"), "OK", "corrupt", False,
         decrypt_code="INTERNAL"),
    Cell("wrong plaintext length (long)", _fault("decrypt", kind="wrong_length", extra=True), "OK", "corrupt",
         False, decrypt_code="INTERNAL"),
    Cell("TLS: certificate from another CA", _tls("other_ca"), "UNAVAILABLE", "unavailable", False,
         clear=_tls_clear),
    Cell("TLS: expired certificate", _tls("expired"), "UNAVAILABLE", "unavailable", False, clear=_tls_clear),
    Cell("DNS failure", _dns, "UNAVAILABLE", "unavailable", False, clear=_dns_clear),
]


def _call(r: Rig, kind: str, i: int) -> tuple[str, str, float, bool]:
    """(method, code name, seconds, wrong_answer) for one call."""
    start = time.monotonic()
    wrong = False
    try:
        if kind == "encrypt":
            seed = ledger.new_secret()
            enc = r.client.encrypt(seed)
            wrong = not enc.ciphertext or not enc.key_id
        elif kind == "decrypt":
            seed, enc = r.sealed[i % len(r.sealed)]
            wrong = r.client.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)) != seed
        else:
            dek, cipher = r.v1_sealed
            wrong = r.client.v1_decrypt(cipher) != dek
        code = "OK"
    except grpc.RpcError as exc:
        code = exc.code().name
        ledger.text(exc.details() or "")
    return kind, code, time.monotonic() - start, wrong


def _calls(r: Rig) -> list[tuple[str, str, float, bool]]:
    plan = ["encrypt", "encrypt", "decrypt", "decrypt", "v1decrypt"]
    with ThreadPoolExecutor(len(plan)) as pool:
        return list(pool.map(lambda a: _call(r, *a), [(k, i) for i, k in enumerate(plan)]))


def _ready(r: Rig) -> int:
    return r.plugin.http("/readyz")[0]


def _wait_ready(r: Rig, want: int) -> float:
    return wait_until(lambda: _ready(r) == want, READY_WAIT, f"/readyz answering {want}")


def _metric(r: Rig, method: str, outcome: str) -> float:
    return metric(r.plugin, "kms_appliance_calls_total", f'api="v2",method="{method}",outcome="{outcome}"')


@pytest.mark.parametrize("cell", CELLS, ids=[c.name for c in CELLS])
def test_fault_cell(rig: Rig, cell: Cell) -> None:
    r = rig
    assert r.plugin.proc.poll() is None, "the plugin died during an earlier cell"
    assert _ready(r) == 200
    audit_before = len(r.plugin.audit_settled())
    codes = {"encrypt": cell.code, "decrypt": cell.decrypt_code or cell.code}
    outcomes = {m: _outcome_of(cell, m) for m in codes}
    before = {m: _metric(r, m, outcomes[m]) for m in codes}

    token = cell.inject(r)
    try:
        results = _calls(r)
        for method, code, seconds, wrong in results:
            assert not wrong, f"{method}: a WRONG answer under '{cell.name}'"
            want = codes.get(method, codes["decrypt"])  # v1 Decrypt answers as v2 Decrypt does
            assert code == want, f"{method}: {code} under '{cell.name}', expected {want}"
            assert seconds <= BUDGET + SLACK, f"{method} took {seconds:.2f}s, budget {BUDGET}s"
        records = _call_records(r, audit_before)  # polled: metrics are counted in the same pass
        for method, want in codes.items():
            assert _metric(r, method, outcomes[method]) >= before[method] + 2, method
            mine = [x for x in records if x["event"] == method and x.get("api") == "v2"]
            assert len(mine) >= 2, (method, audit_before, records[-6:])
            assert {x["code"] for x in mine} == {want}
            assert {x["outcome"] for x in mine} == {outcomes[method]}
            if want != "OK":
                assert all(x.get("error") for x in mine), "a failed call's audit record names the error"
        unready_after = None
        if cell.ready:
            for _ in range(4):  # several probe intervals: readiness must hold
                assert _ready(r) == 200, f"/readyz failed under '{cell.name}'"
                time.sleep(0.5)
        else:
            unready_after = round(_wait_ready(r, 503), 1)
            _, body = r.plugin.http("/readyz")
            assert json.loads(body)["status"] == "unavailable"
            assert r.plugin.http("/livez")[0] == 200, "a backend fault is never a liveness failure"
    finally:
        cell.clear(r, token)

    recovered = round(_wait_ready(r, 200), 1)
    start = time.monotonic()
    while True:
        results = _calls(r)
        if all(code == "OK" for _, code, _, _ in results):
            break
        assert time.monotonic() - start < READY_WAIT, f"no recovery after '{cell.name}': {results}"
        time.sleep(0.3)
    assert not any(wrong for *_, wrong in results)
    pid = r.plugin.proc.pid
    time.sleep(BUDGET)  # let hung attempts reach their read timeout
    threads, fds = procinfo.threads(pid), procinfo.fds(pid)
    during = "200" if cell.ready else f"503 after {unready_after}s"
    figures.put("faults", cell.name,
                f"encrypt={cell.code} decrypt={codes['decrypt']} outcome={cell.outcome} ready_during={during} "
                f"recovered_in={recovered}s threads={threads} fds={fds}")
    assert threads <= r.baseline["threads"] + 4, (threads, r.baseline)
    assert fds <= r.baseline["fds"] + 8, (fds, r.baseline)


def _call_records(r: Rig, skip: int) -> list[dict[str, Any]]:
    """Encrypt/Decrypt audit records after the first ``skip`` lines (polled briefly)."""
    def calls(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [x for x in records[skip:] if x.get("event") in ("encrypt", "decrypt")]

    return calls(r.plugin.audit_until(lambda records: len(calls(records)) >= 5, timeout=3))


def _outcome_of(cell: Cell, method: str) -> str:
    if method == "encrypt" and cell.decrypt_code and cell.code == "OK":
        return "ok"
    return cell.outcome


def test_startup_with_unresolvable_host_fails_fast_and_cleanly(emu: Emulator, tmp_path: Path) -> None:
    """DNS failure at start: exit 1 with a message naming the step, within the call budget."""
    env = identity_env(emu, url="https://akeyless.invalid", KMS_APPLIANCE_SERVER_CALL_TIMEOUT="2s")
    start = time.monotonic()
    p = pm.start(tmp_path / "dns", ["--log-level", "debug"], env, wait=False, akeyless=True)
    assert p.proc.wait(30) == 1
    assert time.monotonic() - start < 20
    err = p.stderr.read_text()
    assert "refusing to start" in err and "Traceback" not in err
    assert not p.socket.exists()


@pytest.mark.parametrize("which", ["other_ca", "expired"])
def test_startup_with_bad_tls_refuses(emu: Emulator, tmp_path: Path, which: str) -> None:
    """TLS failure at start: refused (exit 1), no socket, nothing about the certificate bypassed."""
    kw: dict[str, Any] = {"server_cert": "expired", "state_dir": emu.state_dir} if which == "expired" else {}
    with Emulator(tls=True, **kw) as bad:
        if which != "expired":
            bad.create_key(KEY)
        env = identity_env(emu, url=bad.url)
        if which != "expired":
            with bad.core.lock:
                bad.core.identities.update(emu.core.identities)
        p = pm.start(tmp_path / which, ["--log-level", "debug"], env, wait=False, akeyless=True)
        assert p.proc.wait(30) == 1
        assert "refusing to start" in p.stderr.read_text()
        assert bad.handshake_failures >= 1
        assert bad.calls.total() == 0, "no API call may pass an untrusted TLS session"

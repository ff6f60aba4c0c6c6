"""Both KMS services over the real socket with the local backend; stop signals with calls in flight,
clean exit and socket removal."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from tests.support.kmsclient import Callers, Client
from tests.support.plugin import Plugin, running, start
from tests.support.procs import eventually


def code_of(fn, *args) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        fn(*args)
    return info.value.code()


class TestV2:
    """Status/Encrypt/Decrypt as kube-apiserver calls them, and KMS v1beta1 on the same socket."""

    def test_status_and_round_trips_agree_on_the_key_id(self, client: Client) -> None:
        st = client.status()
        assert (st.version, st.healthz) == ("v2", "ok")
        assert 0 < len(st.key_id.encode()) <= 1024
        seed = os.urandom(32)
        enc = client.encrypt(seed)
        assert enc.key_id == st.key_id
        assert 0 < len(enc.ciphertext) <= 1024
        assert client.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)) == seed
        dek = os.urandom(32)
        assert client.decrypt(client.v1_encrypt(dek), st.key_id) == dek  # v1 and v2 share keys

    def test_refusals_each_with_its_code(self, client: Client) -> None:
        """Bad plaintexts (the reason in the details); tampered, truncated or foreign ciphertexts, a
        wrong key_id, fields out of bounds; v1 calls naming another API version; then an oversized
        message, after which the plugin still serves."""
        for plaintext, text in ((b"", "must not be empty"), (b"x" * 513, "at most 512")):
            with pytest.raises(grpc.RpcError) as info:
                client.encrypt(plaintext)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert text in info.value.details()
        enc = client.encrypt(os.urandom(32))
        tampered = enc.ciphertext[:-1] + bytes([enc.ciphertext[-1] ^ 1])
        cases = [
            (tampered, enc.key_id, {}),
            (enc.ciphertext[:20], enc.key_id, {}),
            (b"\x8aKA\x01\x02" + os.urandom(60), enc.key_id, {}),
            (os.urandom(70), enc.key_id, {}),
            (enc.ciphertext, "local/other/v1", {}),
            (b"", enc.key_id, {}),
            (b"x" * 1025, enc.key_id, {}),
            (enc.ciphertext, "", {}),
            (enc.ciphertext, "k" * 1025, {}),
            (enc.ciphertext, enc.key_id, {"notfqdn": b"1"}),
            (enc.ciphertext, enc.key_id, {"a.example.com": b"x" * 40000}),
        ]
        for ct, kid, ann in cases:
            assert code_of(client.decrypt, ct, kid, ann) == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(client.v1_encrypt, b"k" * 32, "v2") == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(client.v1_decrypt, b"", "v1beta1") == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(client.v1_decrypt, os.urandom(100)) == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(client.encrypt, b"x" * 200_000) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.status().healthz == "ok"

    def test_200_concurrent_callers(self, plugin: Plugin) -> None:
        def five_round_trips(c: Client) -> bool:
            seeds = [os.urandom(32) for _ in range(5)]
            return all(c.decrypt((enc := c.encrypt(s)).ciphertext, enc.key_id) == s for s in seeds)

        assert Callers(plugin.socket, 200, five_round_trips).join() == [True] * 200


def test_rotation_by_file_watch_alone_with_http_disabled(tmp_path: Path) -> None:
    """No SIGHUP: the keyring's file watch picks the rotation up. The plugin runs without its HTTP
    endpoint, which it says, and serves all the same."""
    with (running(tmp_path / "w", ["--http-listen", ""], env={"KMS_APPLIANCE_LOCAL_RELOAD_INTERVAL": "200ms"}) as p,
          Client(p.socket) as c):
        before = c.status().key_id
        assert c.status().healthz == "ok"
        p.rotate_key()
        assert eventually(lambda: c.status().key_id != before, 10, 0.1)
        assert "HTTP endpoint disabled" in p.stderr.read_text()


@pytest.mark.parametrize("method", ["/v2.KeyManagementService/Status",
                                    "/v1beta1.KeyManagementService/Version"])
def test_malformed_status_and_version_are_refused(plugin: Plugin, client: Client, method: str) -> None:
    """They read no field, so only their decoder knows: INVALID_ARGUMENT like a bad Encrypt,
    counted; a valid request still answers."""
    call = client.channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    for garbage in (b"\xff\xff\xff\xff\xff", b"\x0a\x7f\x00"):  # truncated varint; overlong field
        assert code_of(call, garbage) == grpc.StatusCode.INVALID_ARGUMENT
    assert call(b"")  # a valid (empty) request: a non-empty answer
    _, body = plugin.http("/metrics")
    api, name = method.split(".KeyManagementService/")
    line = f'kms_appliance_malformed_requests_total{{api="{api[1:]}",method="{name.lower()}"}} 2.0'
    assert line in body.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_exits_0_and_removes_socket(tmp_path: Path, sig: signal.Signals) -> None:
    p = start(tmp_path / "t")
    assert p.stop(sig) == 0
    assert not p.socket.exists()
    events = [r["event"] for r in p.audit_records()]
    assert events[0] == "startup" and events[-1] == "shutdown"


def test_sigterm_under_load_lets_calls_finish(tmp_path: Path) -> None:
    """Callers hammering the socket see only OK answers or a clean UNAVAILABLE, never a wrong answer."""
    p = start(tmp_path / "t")
    ok, wrong = [0], []
    stop = threading.Event()

    def caller(c: Client) -> None:
        while not stop.is_set():
            seed = os.urandom(32)
            enc = c.encrypt(seed)
            if c.decrypt(enc.ciphertext, enc.key_id) != seed:
                wrong.append(1)
            ok[0] += 1

    callers = Callers(p.socket, 8, caller)
    time.sleep(1.0)
    assert p.stop(signal.SIGTERM) == 0
    stop.set()
    failures = [r.code().name if hasattr(r, "code") else repr(r) for r in callers.join(30) if r is not None]
    assert ok[0] > 0 and not wrong
    assert set(failures) <= {"UNAVAILABLE", "CANCELLED"}
    assert not p.socket.exists()

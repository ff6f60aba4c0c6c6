"""A test client built from the project's own protos, as kube-apiserver dials."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from kms_appliance.kms import v1beta1_pb2, v1beta1_pb2_grpc, v2_pb2, v2_pb2_grpc


class Client:
    def __init__(self, socket: Path, timeout: float = 5.0) -> None:
        self.channel = grpc.insecure_channel(f"unix:{socket}", options=[("grpc.default_authority", "localhost")])
        self.timeout = timeout
        self.v2: Any = v2_pb2_grpc.KeyManagementServiceStub(self.channel)
        self.v1: Any = v1beta1_pb2_grpc.KeyManagementServiceStub(self.channel)

    def status(self) -> Any:
        return self.v2.Status(v2_pb2.StatusRequest(), timeout=self.timeout)

    def encrypt(self, plaintext: bytes, uid: str = "uid-1") -> Any:
        return self.v2.Encrypt(v2_pb2.EncryptRequest(plaintext=plaintext, uid=uid), timeout=self.timeout)

    def decrypt(self, ciphertext: bytes, key_id: str, annotations: dict[str, bytes] | None = None,
                uid: str = "uid-2") -> bytes:
        req = v2_pb2.DecryptRequest(ciphertext=ciphertext, key_id=key_id, annotations=annotations or {}, uid=uid)
        return bytes(self.v2.Decrypt(req, timeout=self.timeout).plaintext)

    def version(self) -> Any:
        return self.v1.Version(v1beta1_pb2.VersionRequest(version="v1beta1"), timeout=self.timeout)

    def v1_encrypt(self, plain: bytes, version: str = "v1beta1") -> bytes:
        req = v1beta1_pb2.EncryptRequest(version=version, plain=plain)
        return bytes(self.v1.Encrypt(req, timeout=self.timeout).cipher)

    def v1_decrypt(self, cipher: bytes, version: str = "v1beta1") -> bytes:
        req = v1beta1_pb2.DecryptRequest(version=version, cipher=cipher)
        return bytes(self.v1.Decrypt(req, timeout=self.timeout).plain)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Callers:
    """``count`` threads, started at once, each running ``call`` with a client of its own (as
    many apiserver connections would); what each returned or raised is kept, so a test can act
    while the calls are in flight and then look at every outcome."""

    def __init__(self, socket: Path, count: int, call: Callable[[Client], object], timeout: float = 5.0) -> None:
        self.results: list[object] = []

        def one() -> None:
            with Client(socket, timeout) as c:
                try:
                    self.results.append(call(c))
                except BaseException as exc:
                    self.results.append(exc)

        self.threads = [threading.Thread(target=one) for _ in range(count)]
        for t in self.threads:
            t.start()

    def join(self, timeout: float = 60) -> list[object]:
        """Every call's outcome (a thread still running after ``timeout`` has none)."""
        for t in self.threads:
            t.join(timeout)
        return self.results


def round_trip(sock: Path, dek: bytes = b"round-trip-dek-0123456789abcdef", timeout: float = 5.0) -> str:
    """Status ok, then a KMS v2 and a v1 round trip as kube-apiserver makes them; returns the key_id."""
    with Client(sock, timeout=timeout) as client:
        status = client.status()
        assert status.healthz == "ok" and status.key_id, status
        enc = client.encrypt(dek)
        assert enc.key_id == status.key_id and dek not in enc.ciphertext
        assert client.decrypt(enc.ciphertext, enc.key_id, dict(enc.annotations)) == dek
        assert client.version().runtime_name
        cipher = client.v1_encrypt(b"v1 secret payload")
        assert b"v1 secret payload" not in cipher
        assert client.v1_decrypt(cipher) == b"v1 secret payload"
        return str(status.key_id)

"""A minimal client that speaks to the plugin the way kube-apiserver does.

Used by ``demo``; tests and benchmarks build their own from the same protos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from .kms import v1beta1_pb2, v1beta1_pb2_grpc, v2_pb2, v2_pb2_grpc


class KmsClient:
    """v2 and v1beta1 stubs over one channel to the UNIX socket."""

    def __init__(self, socket: Path, timeout: float = 3.0) -> None:
        self._channel = grpc.insecure_channel(f"unix:{socket}",
                                              options=[("grpc.default_authority", "localhost")])
        self._timeout = timeout
        self.v2: Any = v2_pb2_grpc.KeyManagementServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.v1: Any = v1beta1_pb2_grpc.KeyManagementServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def status(self) -> v2_pb2.StatusResponse:
        resp: v2_pb2.StatusResponse = self.v2.Status(v2_pb2.StatusRequest(), timeout=self._timeout)
        return resp

    def encrypt(self, plaintext: bytes, uid: str = "") -> v2_pb2.EncryptResponse:
        req = v2_pb2.EncryptRequest(plaintext=plaintext, uid=uid)
        resp: v2_pb2.EncryptResponse = self.v2.Encrypt(req, timeout=self._timeout)
        return resp

    def decrypt(self, resp: v2_pb2.EncryptResponse, uid: str = "") -> bytes:
        req = v2_pb2.DecryptRequest(ciphertext=resp.ciphertext, key_id=resp.key_id,
                                    annotations=dict(resp.annotations), uid=uid)
        return bytes(self.v2.Decrypt(req, timeout=self._timeout).plaintext)

    def runtime(self) -> tuple[str, str]:
        """(runtime_name, runtime_version) from the v1beta1 Version call: which program serves."""
        resp = self.v1.Version(v1beta1_pb2.VersionRequest(version="v1beta1"), timeout=self._timeout)
        return str(resp.runtime_name), str(resp.runtime_version)

    def v1_roundtrip(self, plain: bytes) -> bytes:
        cipher = self.v1.Encrypt(v1beta1_pb2.EncryptRequest(version="v1beta1", plain=plain),
                                 timeout=self._timeout).cipher
        req = v1beta1_pb2.DecryptRequest(version="v1beta1", cipher=cipher)
        return bytes(self.v1.Decrypt(req, timeout=self._timeout).plain)

    def close(self) -> None:
        self._channel.close()

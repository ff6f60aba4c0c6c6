"""The Python floor: a bare grpcio servicer doing the appliance's AES-GCM wrap.

Same protos, same server shape (ThreadPoolExecutor, one UNIX socket), same
crypto (AES-256-GCM, fresh 12-byte nonce, key_id as associated data), but no
validation, audit, metrics, envelope header or socket model. The benchmark
runs it beside the plugin in the same run, so the plugin's ratio to it is
what the appliance's own per-call work costs.

Run: ``python -m bench.bare_servicer --socket PATH``; it serves until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms_appliance.kms import v1beta1_pb2 as pb1
from kms_appliance.kms import v1beta1_pb2_grpc, v2_pb2_grpc
from kms_appliance.kms import v2_pb2 as pb2

Ctx = grpc.ServicerContext

KEY_ID = "bare/v1"
_AAD = KEY_ID.encode()
_NONCE = 12
WORKERS = 32  # the plugin's default thread pool size


class _Crypto:
    """One AES-GCM key object, reused for every call (as the plugin does)."""

    def __init__(self) -> None:
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def wrap(self, plain: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plain, _AAD)

    def unwrap(self, sealed: bytes) -> bytes:
        return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], _AAD)


class BareV2(v2_pb2_grpc.KeyManagementServiceServicer):
    def __init__(self, crypto: _Crypto) -> None:
        self._c = crypto

    def Status(self, request: pb2.StatusRequest, context: Ctx) -> pb2.StatusResponse:  # noqa: N802
        return pb2.StatusResponse(version="v2", healthz="ok", key_id=KEY_ID)

    def Encrypt(self, request: pb2.EncryptRequest, context: Ctx) -> pb2.EncryptResponse:  # noqa: N802
        return pb2.EncryptResponse(ciphertext=self._c.wrap(request.plaintext), key_id=KEY_ID)

    def Decrypt(self, request: pb2.DecryptRequest, context: Ctx) -> pb2.DecryptResponse:  # noqa: N802
        return pb2.DecryptResponse(plaintext=self._c.unwrap(request.ciphertext))


class BareV1(v1beta1_pb2_grpc.KeyManagementServiceServicer):
    def __init__(self, crypto: _Crypto) -> None:
        self._c = crypto

    def Version(self, request: pb1.VersionRequest, context: Ctx) -> pb1.VersionResponse:  # noqa: N802
        return pb1.VersionResponse(version="v1beta1", runtime_name="bare", runtime_version="0")

    def Encrypt(self, request: pb1.EncryptRequest, context: Ctx) -> pb1.EncryptResponse:  # noqa: N802
        return pb1.EncryptResponse(cipher=self._c.wrap(request.plain))

    def Decrypt(self, request: pb1.DecryptRequest, context: Ctx) -> pb1.DecryptResponse:  # noqa: N802
        return pb1.DecryptResponse(plain=self._c.unwrap(request.cipher))


def serve(socket: Path) -> None:
    """Serve until SIGTERM/SIGINT; the socket is removed on the way out."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS))
    crypto = _Crypto()
    v2_pb2_grpc.add_KeyManagementServiceServicer_to_server(BareV2(crypto), server)
    v1beta1_pb2_grpc.add_KeyManagementServiceServicer_to_server(BareV1(crypto), server)
    socket.unlink(missing_ok=True)
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(1).wait(2)
    socket.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    serve(parser.parse_args().socket)


if __name__ == "__main__":
    main()

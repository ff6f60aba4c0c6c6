"""A throwaway KMS v2 plugin: test scaffolding for the e2e harness only.

Why it exists: it lets the harness prove, against a real kube-apiserver, the
whole path apiserver -> UNIX socket -> plugin -> etcd before the project's own
plugin (``kms_appliance``) is runnable, and it stays as a reference point when
a scenario fails with the real plugin. It is deliberately not the product: no
hardening, no backend, no metrics.

Wire contract (kube-apiserver's KMS v2 API, package ``v2``): gRPC service
``v2.KeyManagementService`` with Status/Encrypt/Decrypt, served with grpc
generic handlers and the hand-written codec in ``protowire``.

Crypto: AES-256-GCM, nonce || ciphertext, with the key_id as associated data
(as the upstream mock plugin does). Keys live in a JSON keyring file
``{"current": "<key id>", "keys": {"<key id>": "<64 hex chars>"}}`` re-read
when its mtime changes, so a scenario can rotate keys by rewriting the file.

Run (from the repository root): ``python -m tests.e2e.fake_kms_plugin --socket PATH --keyring PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.support.kube import protowire as pw

SERVICE = "v2.KeyManagementService"
ANNOTATION = "version.fake-kms.e2e.example.com"
NONCE_SIZE = 12


class Keyring:
    """Keys from the JSON keyring file, reloaded when the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._current = ""
        self._keys: dict[str, bytes] = {}
        self.refresh()

    def refresh(self) -> None:
        """Reload the file if it changed; cheap enough for every Status call."""
        mtime = self._path.stat().st_mtime
        with self._lock:
            if mtime == self._mtime:
                return
            doc = json.loads(self._path.read_text())
            self._keys = {k: bytes.fromhex(v) for k, v in doc["keys"].items()}
            self._current = doc["current"]
            self._mtime = mtime

    def current(self) -> tuple[str, bytes]:
        with self._lock:
            return self._current, self._keys[self._current]

    def get(self, key_id: str) -> bytes | None:
        with self._lock:
            return self._keys.get(key_id)


def _fields(buf: bytes) -> dict[int, bytes]:
    """Length-delimited fields of a request (map entries are not needed here)."""
    return {n: v for n, _, v in pw.iter_fields(buf) if isinstance(v, bytes)}


def _log(method: str, detail: str = "") -> None:
    """One line per call, for the harness's log tails. Never data or keys."""
    print(f"fake-kms: {method} {detail}".rstrip(), file=sys.stderr, flush=True)


class FakeKms:
    """The three KMS v2 methods over raw request bytes."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def status(self, _request: bytes, _context: grpc.ServicerContext) -> bytes:
        self._keyring.refresh()
        key_id, _ = self._keyring.current()
        _log("Status", f"key_id={key_id}")
        return (
            pw.encode_bytes_field(1, b"v2")
            + pw.encode_bytes_field(2, b"ok")
            + pw.encode_bytes_field(3, key_id.encode())
        )

    def encrypt(self, request: bytes, _context: grpc.ServicerContext) -> bytes:
        plaintext = _fields(request).get(1, b"")
        key_id, key = self._keyring.current()
        nonce = os.urandom(NONCE_SIZE)
        sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, key_id.encode())
        _log("Encrypt", f"key_id={key_id}")
        return (
            pw.encode_bytes_field(1, sealed)
            + pw.encode_bytes_field(2, key_id.encode())
            + pw.encode_map_entry(3, ANNOTATION, b"1")
        )

    def decrypt(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        fields = _fields(request)
        sealed = fields.get(1, b"")
        key_id = fields.get(3, b"").decode()
        key = self._keyring.get(key_id)
        _log("Decrypt", f"key_id={key_id}")
        if key is None or len(sealed) <= NONCE_SIZE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown key or bad ciphertext")
        try:
            plain = AESGCM(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], key_id.encode())
        except Exception:  # InvalidTag carries no detail, by design
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "decryption failed")
        return pw.encode_bytes_field(1, plain)


def _handler(fn: Any) -> grpc.RpcMethodHandler[bytes, bytes]:
    def identity(b: bytes) -> bytes:
        return b

    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=identity, response_serializer=identity
    )


def serve(socket_path: Path, keyring_path: Path) -> None:
    """Serve until SIGTERM/SIGINT, then stop with a short grace."""
    if socket_path.exists() or socket_path.is_symlink():
        socket_path.unlink()  # stale socket from a killed run
    kms = FakeKms(Keyring(keyring_path))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Status": _handler(kms.status),
                    "Encrypt": _handler(kms.encrypt),
                    "Decrypt": _handler(kms.decrypt),
                },
            ),
        )
    )
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    _log("listening", str(socket_path))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    _log("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--keyring", type=Path, required=True)
    args = parser.parse_args()
    serve(args.socket, args.keyring)


if __name__ == "__main__":
    main()

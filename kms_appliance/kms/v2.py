"""KMS v2 servicer: translate protobuf <-> backend types, nothing else."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc

from ..audit import Site
from ..backends.base import KeyBackend
from ..inline import NeedsWorker
from . import v2_pb2 as pb
from . import v2_pb2_grpc as pb_grpc
from . import validate, wire
from .calls import Calls

# Where each call came in, for its metrics and audit record.
_DECRYPT = Site("v2", "decrypt")
_ENCRYPT = Site("v2", "encrypt")
_STATUS = Site("v2", "status")

ChangeSink = Callable[[str, str, str], None]


class StatusWatcher:
    """Reports a Status answer only when it differs from the previous one.

    Status is polled constantly; one audit record per poll would drown the
    log, one record per change is what an operator needs.
    """

    def __init__(self, sink: ChangeSink) -> None:
        self._last: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._sink = sink

    def observe(self, healthz: str, key_id: str, key_version: str) -> None:
        now = (healthz, key_id)
        if now == self._last:
            return
        with self._lock:
            if now == self._last:
                return
            self._last = now
        self._sink(healthz, key_id, key_version)


class V2Servicer(pb_grpc.KeyManagementServiceServicer):
    """Status answers from held state; Encrypt/Decrypt go through the backend."""

    def __init__(self, backend: KeyBackend, calls: Calls, watcher: StatusWatcher) -> None:
        self._backend = backend
        self._calls = calls
        self._watcher = watcher

    def decoders(self) -> dict[str, wire.Parse]:
        """Request parsers per method that never raise (see :mod:`.wire`)."""
        de = self._calls.malformed.decoder
        return {m: de("v2", m.lower(), f"{m}Request", getattr(pb, f"{m}Request").FromString)
                for m in ("Status", "Encrypt", "Decrypt")}

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:  # noqa: N802
        if isinstance(request, wire.Malformed):  # it reads no field: refuse like a bad Encrypt
            self._calls.failed(context, time.perf_counter(), _STATUS, request.error())
            return pb.StatusResponse()
        st = self._backend.status()
        healthz = "ok" if st.healthy else f"unhealthy: {st.reason}"
        self._watcher.observe(healthz, st.key_id, st.key_version)
        return pb.StatusResponse(version="v2", healthz=healthz, key_id=st.key_id)

    def Encrypt(self, request: pb.EncryptRequest, context: grpc.ServicerContext) -> pb.EncryptResponse:  # noqa: N802
        start = time.perf_counter()
        uid = ""
        try:  # a request that did not parse raises InvalidRequest on its first field read
            uid, plaintext = request.uid, request.plaintext  # each field access builds a new object
            validate.uid(uid)
            validate.sized("plaintext", plaintext, validate.MAX_V2_PLAINTEXT)
            wrapped = self._backend.wrap(plaintext)
            out = pb.EncryptResponse(ciphertext=wrapped.ciphertext, key_id=wrapped.key_id)
            if wrapped.annotations:  # an empty map argument alone costs more than the AES wrap
                out.annotations.update(wrapped.annotations)
        except NeedsWorker:  # served again in a worker, from the start
            raise
        except Exception as exc:
            self._calls.failed(context, start, _ENCRYPT, exc, uid=uid)
            return pb.EncryptResponse()
        self._calls.ok(start, _ENCRYPT, uid=uid, key_id=wrapped.key_id,
                       key_version=wrapped.key_version, ciphertext=wrapped.ciphertext)
        return out

    def Decrypt(self, request: pb.DecryptRequest, context: grpc.ServicerContext) -> pb.DecryptResponse:  # noqa: N802
        start = time.perf_counter()
        uid = ""
        try:  # a request that did not parse raises InvalidRequest on its first field read
            uid, ciphertext, key_id = request.uid, request.ciphertext, request.key_id
            validate.uid(uid)
            validate.sized("ciphertext", ciphertext, validate.MAX_V2_CIPHERTEXT)
            validate.sized("key_id", key_id, validate.MAX_KEY_ID)
            annotations = request.annotations
            if annotations:  # usually empty: this plugin writes none
                validate.annotation_map(annotations)
        except Exception as exc:
            self._calls.failed(context, start, _DECRYPT, exc, uid=uid)
            return pb.DecryptResponse()
        try:  # from here the record names the key and the ciphertext asked about
            out = self._backend.unwrap(ciphertext, key_id, annotations)
            resp = pb.DecryptResponse(plaintext=out.plaintext)
        except NeedsWorker:  # served again in a worker, from the start
            raise
        except Exception as exc:
            self._calls.failed(context, start, _DECRYPT, exc, uid=uid, key_id=key_id,
                               ciphertext=ciphertext)
            return pb.DecryptResponse()
        self._calls.ok(start, _DECRYPT, uid=uid, key_id=key_id, key_version=out.key_version,
                       ciphertext=ciphertext, cached=out.cached)
        return resp

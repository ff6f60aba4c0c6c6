"""KMS v1beta1 servicer, for clusters that still run KMS v1.

v1 has no key_id on the wire: the ciphertext alone says which key version
it needs (our envelope header carries it), so rotation works the same way.
"""

from __future__ import annotations

import time

import grpc

from .. import version
from ..audit import Site
from ..backends.base import KeyBackend
from ..inline import NeedsWorker
from . import v1beta1_pb2 as pb
from . import v1beta1_pb2_grpc as pb_grpc
from . import validate, wire
from .calls import Calls

# Where each call came in, for its metrics and audit record.
_DECRYPT = Site("v1beta1", "decrypt")
_ENCRYPT = Site("v1beta1", "encrypt")
_VERSION = Site("v1beta1", "version")


class V1Servicer(pb_grpc.KeyManagementServiceServicer):
    """Version, Encrypt and Decrypt of KMS v1beta1."""

    def __init__(self, backend: KeyBackend, calls: Calls) -> None:
        self._backend = backend
        self._calls = calls

    def decoders(self) -> dict[str, wire.Parse]:
        """Request parsers per method that never raise (see :mod:`.wire`)."""
        de = self._calls.malformed.decoder
        return {m: de("v1beta1", m.lower(), f"{m}Request", getattr(pb, f"{m}Request").FromString)
                for m in ("Version", "Encrypt", "Decrypt")}

    def Version(self, request: pb.VersionRequest, context: grpc.ServicerContext) -> pb.VersionResponse:  # noqa: N802
        if isinstance(request, wire.Malformed):  # it reads no field: refuse like a bad Encrypt
            self._calls.failed(context, time.perf_counter(), _VERSION, request.error())
            return pb.VersionResponse()
        return pb.VersionResponse(version="v1beta1", runtime_name="kms-appliance",
                                  runtime_version=version.__version__)

    def Encrypt(self, request: pb.EncryptRequest, context: grpc.ServicerContext) -> pb.EncryptResponse:  # noqa: N802
        start = time.perf_counter()
        try:  # a request that did not parse raises InvalidRequest on its first field read
            plain = request.plain  # each field access builds a new object
            validate.v1_version(request.version)
            validate.sized("plain", plain, validate.MAX_V1_PLAINTEXT)
            wrapped = self._backend.wrap(plain)
            out = pb.EncryptResponse(cipher=wrapped.ciphertext)
        except NeedsWorker:  # served again in a worker, from the start
            raise
        except Exception as exc:
            self._calls.failed(context, start, _ENCRYPT, exc)
            return pb.EncryptResponse()
        self._calls.ok(start, _ENCRYPT, key_id=wrapped.key_id, key_version=wrapped.key_version,
                       ciphertext=wrapped.ciphertext)
        return out

    def Decrypt(self, request: pb.DecryptRequest, context: grpc.ServicerContext) -> pb.DecryptResponse:  # noqa: N802
        start = time.perf_counter()
        try:  # a request that did not parse raises InvalidRequest on its first field read
            cipher = request.cipher
            validate.v1_version(request.version)
            validate.sized("cipher", cipher, validate.MAX_V1_CIPHERTEXT)
        except Exception as exc:
            self._calls.failed(context, start, _DECRYPT, exc)
            return pb.DecryptResponse()
        try:  # from here the record carries the ciphertext's fingerprint
            out = self._backend.unwrap(cipher, None, {})
            resp = pb.DecryptResponse(plain=out.plaintext)
        except NeedsWorker:  # served again in a worker, from the start
            raise
        except Exception as exc:
            self._calls.failed(context, start, _DECRYPT, exc, ciphertext=cipher)
            return pb.DecryptResponse()
        self._calls.ok(start, _DECRYPT, key_id=out.key_id, key_version=out.key_version,
                       ciphertext=cipher, cached=out.cached)
        return resp

"""The KMS v2 servicer translates protobuf to the backend's plain types and back, nothing else:
proven against a fake backend whose answers and failures the test sets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kms_appliance import errors
from kms_appliance.kms import v2_pb2 as pb
from kms_appliance.kms.v2 import V2Servicer
from tests.support.fakes import FakeBackend, FakeContext, servicers


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(annotations={"version.kms.example.com": b"7"})


@pytest.fixture
def v2(backend: FakeBackend, tmp_path: Path) -> Iterator[V2Servicer]:
    with servicers(backend, tmp_path / "audit.log") as svc:
        yield svc.v2


class TestStatus:
    """Status answers from the backend's held state."""

    def test_healthy(self, v2: V2Servicer) -> None:
        out = v2.Status(pb.StatusRequest(), FakeContext())
        assert (out.version, out.healthz, out.key_id) == ("v2", "ok", "fake:1")

    def test_unhealthy_names_the_reason(self, v2: V2Servicer, backend: FakeBackend) -> None:
        backend.healthy, backend.reason = False, "backend unreachable"
        assert v2.Status(pb.StatusRequest(), FakeContext()).healthz == "unhealthy: backend unreachable"


class TestEncrypt:
    """The plaintext goes to the backend as is; its ciphertext, key_id and annotations come back."""

    def test_wrap(self, v2: V2Servicer, backend: FakeBackend) -> None:
        ctx = FakeContext()
        out = v2.Encrypt(pb.EncryptRequest(plaintext=b"seed", uid="u1"), ctx)
        assert ctx.code == grpc.StatusCode.OK
        assert (out.ciphertext, out.key_id) == (b"fake:1|seed", "fake:1")
        assert dict(out.annotations) == {"version.kms.example.com": b"7"}
        assert backend.calls == [("wrap", b"seed", None, {})]

    def test_invalid_request_never_reaches_the_backend(self, v2: V2Servicer, backend: FakeBackend) -> None:
        ctx = FakeContext()
        assert v2.Encrypt(pb.EncryptRequest(plaintext=b"", uid="u1"), ctx) == pb.EncryptResponse()
        assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
        assert backend.calls == []

    @pytest.mark.parametrize(("exc", "code"), [
        (errors.BackendUnavailable("Akeyless unreachable"), grpc.StatusCode.UNAVAILABLE),
        (errors.Throttled("slow down"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ])
    def test_backend_errors_become_status_codes(self, v2: V2Servicer, backend: FakeBackend,
                                                exc: Exception, code: grpc.StatusCode) -> None:
        backend.fail = exc
        ctx = FakeContext()
        assert v2.Encrypt(pb.EncryptRequest(plaintext=b"seed", uid="u1"), ctx) == pb.EncryptResponse()
        assert (ctx.code, ctx.details) == (code, str(exc))


class TestDecrypt:
    """Ciphertext, key_id and annotations reach the backend as sent; its plaintext comes back."""

    def test_unwrap(self, v2: V2Servicer, backend: FakeBackend) -> None:
        req = pb.DecryptRequest(ciphertext=b"fake:1|seed", key_id="fake:1", uid="u2",
                                annotations={"version.kms.example.com": b"7"})
        ctx = FakeContext()
        assert v2.Decrypt(req, ctx).plaintext == b"seed"
        assert ctx.code == grpc.StatusCode.OK
        assert backend.calls == [("unwrap", b"fake:1|seed", "fake:1", {"version.kms.example.com": b"7"})]

    def test_unknown_key_is_failed_precondition(self, v2: V2Servicer, backend: FakeBackend) -> None:
        backend.fail = errors.KeyUnavailable("key version 3 is disabled")
        ctx = FakeContext()
        req = pb.DecryptRequest(ciphertext=b"x", key_id="fake:3", uid="u2")
        assert v2.Decrypt(req, ctx) == pb.DecryptResponse()
        assert (ctx.code, ctx.details) == (grpc.StatusCode.FAILED_PRECONDITION, "key version 3 is disabled")

    def test_unexpected_failure_says_nothing(self, v2: V2Servicer, backend: FakeBackend) -> None:
        backend.fail = KeyError("secret-looking detail")
        ctx = FakeContext()
        v2.Decrypt(pb.DecryptRequest(ciphertext=b"x", key_id="fake:1", uid="u2"), ctx)
        assert (ctx.code, ctx.details) == (grpc.StatusCode.INTERNAL, "internal error")

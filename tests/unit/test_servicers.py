"""The KMS v2 and v1beta1 servicers translate protobuf to the backend's plain types and back, nothing
else: proven against a fake backend whose answers and failures the test sets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kms_appliance import errors, version
from kms_appliance.kms import v1beta1_pb2 as pb1
from kms_appliance.kms import v2_pb2 as pb
from kms_appliance.service import Servicers
from tests.support.fakes import FakeBackend, FakeContext, servicers


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(annotations={"version.kms.example.com": b"7"})


@pytest.fixture
def svc(backend: FakeBackend, tmp_path: Path) -> Iterator[Servicers]:
    with servicers(backend, tmp_path / "audit.log") as s:
        yield s


class TestStatus:
    """Status answers from the backend's held state."""

    def test_unhealthy_names_the_reason(self, svc: Servicers, backend: FakeBackend) -> None:
        backend.healthy, backend.reason = False, "backend unreachable"
        assert svc.v2.Status(pb.StatusRequest(), FakeContext()).healthz == "unhealthy: backend unreachable"


class TestEncrypt:
    """The plaintext goes to the backend as is; its ciphertext, key_id and annotations come back."""

    def test_wrap(self, svc: Servicers, backend: FakeBackend) -> None:
        ctx = FakeContext()
        out = svc.v2.Encrypt(pb.EncryptRequest(plaintext=b"seed", uid="u1"), ctx)
        assert ctx.code == grpc.StatusCode.OK
        assert (out.ciphertext, out.key_id) == (b"fake:1|seed", "fake:1")
        assert dict(out.annotations) == {"version.kms.example.com": b"7"}
        assert backend.calls == [("wrap", b"seed", None, {})]

    def test_invalid_request_never_reaches_the_backend(self, svc: Servicers, backend: FakeBackend) -> None:
        ctx = FakeContext()
        assert svc.v2.Encrypt(pb.EncryptRequest(plaintext=b"", uid="u1"), ctx) == pb.EncryptResponse()
        assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
        assert backend.calls == []


class TestDecrypt:
    """Ciphertext, key_id and annotations reach the backend as sent; its plaintext comes back."""

    def test_unwrap(self, svc: Servicers, backend: FakeBackend) -> None:
        req = pb.DecryptRequest(ciphertext=b"fake:1|seed", key_id="fake:1", uid="u2",
                                annotations={"version.kms.example.com": b"7"})
        ctx = FakeContext()
        assert svc.v2.Decrypt(req, ctx).plaintext == b"seed"
        assert ctx.code == grpc.StatusCode.OK
        assert backend.calls == [("unwrap", b"fake:1|seed", "fake:1", {"version.kms.example.com": b"7"})]

    def test_unknown_key_is_failed_precondition(self, svc: Servicers, backend: FakeBackend) -> None:
        backend.fail = errors.KeyUnavailable("key version 3 is disabled")
        ctx = FakeContext()
        req = pb.DecryptRequest(ciphertext=b"x", key_id="fake:3", uid="u2")
        assert svc.v2.Decrypt(req, ctx) == pb.DecryptResponse()
        assert (ctx.code, ctx.details) == (grpc.StatusCode.FAILED_PRECONDITION, "key version 3 is disabled")

    def test_unexpected_failure_says_nothing(self, svc: Servicers, backend: FakeBackend, tmp_path: Path) -> None:
        backend.fail = KeyError("secret-looking detail")
        ctx = FakeContext()
        svc.v2.Decrypt(pb.DecryptRequest(ciphertext=b"x", key_id="fake:1", uid="u2"), ctx)
        assert (ctx.code, ctx.details) == (grpc.StatusCode.INTERNAL, "internal error")
        record = json.loads((tmp_path / "audit.log").read_text())
        assert (record["outcome"], record["error"]) == ("internal", "internal error")


class TestV1:
    """KMS v1beta1: the same translation, and the API version checked before the backend."""

    def test_version_names_the_runtime(self, svc: Servicers) -> None:
        out = svc.v1.Version(pb1.VersionRequest(version="v1beta1"), FakeContext())
        assert (out.version, out.runtime_name, out.runtime_version) == ("v1beta1", "kms-appliance",
                                                                        version.__version__)

    def test_encrypt_and_decrypt_go_through_the_backend(self, svc: Servicers, backend: FakeBackend) -> None:
        ctx = FakeContext()
        cipher = svc.v1.Encrypt(pb1.EncryptRequest(version="v1beta1", plain=b"dek"), ctx).cipher
        assert svc.v1.Decrypt(pb1.DecryptRequest(version="v1beta1", cipher=cipher), ctx).plain == b"dek"
        assert ctx.code == grpc.StatusCode.OK
        assert backend.calls == [("wrap", b"dek", None, {}), ("unwrap", b"fake:1|dek", None, {})]

    def test_other_api_version_is_refused_before_the_backend(self, svc: Servicers, backend: FakeBackend) -> None:
        ctx = FakeContext()
        assert svc.v1.Encrypt(pb1.EncryptRequest(version="v2", plain=b"dek"), ctx) == pb1.EncryptResponse()
        assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
        assert backend.calls == []

"""The KMS v1beta1 servicer translates protobuf to the backend's plain types and back: proven
against a fake backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kms_appliance import errors, version
from kms_appliance.kms import v1beta1_pb2 as pb
from kms_appliance.kms.v1 import V1Servicer
from tests.support.fakes import FakeBackend, FakeContext, servicers


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def v1(backend: FakeBackend, tmp_path: Path) -> Iterator[V1Servicer]:
    with servicers(backend, tmp_path / "audit.log") as svc:
        yield svc.v1


def test_version_names_the_runtime(v1: V1Servicer) -> None:
    out = v1.Version(pb.VersionRequest(version="v1beta1"), FakeContext())
    assert (out.version, out.runtime_name, out.runtime_version) == ("v1beta1", "kms-appliance",
                                                                    version.__version__)


def test_encrypt_and_decrypt_go_through_the_backend(v1: V1Servicer, backend: FakeBackend) -> None:
    ctx = FakeContext()
    cipher = v1.Encrypt(pb.EncryptRequest(version="v1beta1", plain=b"dek"), ctx).cipher
    assert v1.Decrypt(pb.DecryptRequest(version="v1beta1", cipher=cipher), ctx).plain == b"dek"
    assert ctx.code == grpc.StatusCode.OK
    assert backend.calls == [("wrap", b"dek", None, {}), ("unwrap", b"fake:1|dek", None, {})]


def test_other_api_version_is_refused_before_the_backend(v1: V1Servicer, backend: FakeBackend) -> None:
    ctx = FakeContext()
    assert v1.Encrypt(pb.EncryptRequest(version="v2", plain=b"dek"), ctx) == pb.EncryptResponse()
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
    assert backend.calls == []


def test_backend_errors_become_status_codes(v1: V1Servicer, backend: FakeBackend) -> None:
    backend.fail = errors.CiphertextError("not a ciphertext of this plugin")
    ctx = FakeContext()
    assert v1.Decrypt(pb.DecryptRequest(version="v1beta1", cipher=b"junk"), ctx) == pb.DecryptResponse()
    assert (ctx.code, ctx.details) == (grpc.StatusCode.INVALID_ARGUMENT, "not a ciphertext of this plugin")

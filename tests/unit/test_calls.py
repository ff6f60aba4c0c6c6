"""The single error -> gRPC status mapping, and request validation."""

from __future__ import annotations

import grpc
import pytest

from kms_appliance import errors
from kms_appliance.kms import validate
from kms_appliance.kms.calls import grpc_code


@pytest.mark.parametrize(("exc", "code", "outcome"), [
    (errors.InvalidRequest("x"), grpc.StatusCode.INVALID_ARGUMENT, "invalid"),
    (errors.CiphertextError("x"), grpc.StatusCode.INVALID_ARGUMENT, "corrupt"),
    (errors.KeyUnavailable("x"), grpc.StatusCode.FAILED_PRECONDITION, "user"),
    (errors.AccessDenied("x"), grpc.StatusCode.PERMISSION_DENIED, "user"),
    (errors.Throttled("x"), grpc.StatusCode.RESOURCE_EXHAUSTED, "throttled"),
    (errors.Overloaded("x"), grpc.StatusCode.RESOURCE_EXHAUSTED, "overload"),
    (errors.BackendUnavailable("x"), grpc.StatusCode.UNAVAILABLE, "unavailable"),
    (errors.BackendCorruption("x"), grpc.StatusCode.INTERNAL, "corrupt"),
])
def test_typed_errors_map_to_codes(exc: errors.KmsError, code: grpc.StatusCode, outcome: str) -> None:
    assert grpc_code(exc) == (code, "x", outcome)


def test_unknown_exceptions_become_detail_free_internal() -> None:
    code, message, outcome = grpc_code(KeyError("secret-looking detail"))
    assert (code, message, outcome) == (grpc.StatusCode.INTERNAL, "internal error", "internal")


class TestValidate:
    """Limits mirror what kube-apiserver enforces."""

    def test_sized(self) -> None:
        validate.sized("f", b"a" * 10, 10)
        with pytest.raises(errors.InvalidRequest, match="must not be empty"):
            validate.sized("f", b"", 10)
        with pytest.raises(errors.InvalidRequest, match="11 bytes; at most 10"):
            validate.sized("f", b"a" * 11, 10)
        with pytest.raises(errors.InvalidRequest, match="at most 3"):
            validate.sized("f", "éé", 3)

    @pytest.mark.parametrize("key", ["version.kms.example.com", "a.io", "x-1.y-2.example.org"])
    def test_fqdn_annotations_accepted(self, key: str) -> None:
        validate.annotation_map({key: b"1"})

    @pytest.mark.parametrize("key", ["version", "Version.Example.com", "-a.example.com", "a..b.com",
                                     "a.b.c1", "", "x" * 64 + ".com"])
    def test_non_fqdn_annotations_refused(self, key: str) -> None:
        with pytest.raises(errors.InvalidRequest, match="fully qualified"):
            validate.annotation_map({key: b"1"})

    def test_annotation_total_size(self) -> None:
        validate.annotation_map({"a.example.com": b"x" * (32 * 1024 - 13)})
        with pytest.raises(errors.InvalidRequest, match="at most 32768"):
            validate.annotation_map({"a.example.com": b"x" * (32 * 1024 - 12)})

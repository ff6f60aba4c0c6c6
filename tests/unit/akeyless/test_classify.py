"""Sorting SDK and transport failures into the project's typed errors."""

from __future__ import annotations

import errno
import socket

import pytest

from kms_appliance.backends.akeyless import classify, sdk
from kms_appliance.errors import (
    AccessDenied,
    BackendCorruption,
    BackendUnavailable,
    KeyUnavailable,
    KmsError,
)


class TestClassify:
    """HTTP statuses sort into the error classes; messages carry no body. (400, 429 and 500 on decrypt
    and 503 on encrypt through the real SDK: tests/integration/akeyless/test_akeyless_backend.py::
    TestFaults::test_decrypt_fault, tests/reliability/test_faults.py::test_fault_cell.)"""

    @pytest.mark.parametrize(("status", "op", "cls"), [
        (400, "encrypt", KeyUnavailable), (400, "auth", AccessDenied), (401, "auth", AccessDenied),
        (401, "decrypt", classify.TokenRejected), (403, "encrypt", AccessDenied),
        (404, "describe-item", KeyUnavailable), (0, "auth", BackendUnavailable), (418, "decrypt", BackendUnavailable),
    ])
    def test_status(self, status, op, cls):
        err = classify.from_status(status, op, "/k")
        assert isinstance(err, cls)

    def test_sdk_exception_text_never_copied(self):
        s = sdk.load()
        exc = s.ApiException(status=403, reason="Forbidden")
        exc.body = '{"error": "token t-SECRET"}'
        err = classify.classify(exc, "encrypt", "/k", s)
        assert "SECRET" not in str(err) and isinstance(err, AccessDenied)
        assert isinstance(classify.classify(ValueError("x"), "decrypt", "/k", s), BackendCorruption)


class TestRootCause:
    """A secondary SDK failure while handling a transport error is still a transport error."""

    def test_attribute_error_while_handling_tls_failure(self):
        s = sdk.load()
        try:
            try:
                raise s.ApiException(status=0, reason="SSLError\\nhandshake failed")
            except s.ApiException as exc:
                exc.body.decode("utf-8")  # what the SDK's handler does with body=None
        except AttributeError as secondary:
            err = classify.classify(secondary, "auth", "/k", s)
        assert isinstance(err, BackendUnavailable)
        assert "handshake" not in err.message


class TestRefusedByThisHost:
    """A connect() refused by this host (the unit's IPAddressDeny=, a firewall: EPERM) or an
    unresolvable name is named as such, through urllib3's real exception chain."""

    @staticmethod
    def _classified(monkeypatch, error: OSError) -> KmsError:
        """How a connect() failing with ``error`` inside urllib3 is classified."""
        s = sdk.load()

        def refuse(*_args, **_kw):
            raise error

        monkeypatch.setattr(s.urllib3.util.connection, "create_connection", refuse)
        pool = s.urllib3.PoolManager(retries=s.urllib3.Retry(total=0))
        with pytest.raises(s.urllib3.exceptions.HTTPError) as info:
            pool.request("POST", "https://api.akeyless.io/auth")
        return classify.classify(info.value, "auth", "/k", s)

    def test_eperm_names_the_egress_filter(self, monkeypatch):
        err = self._classified(monkeypatch, PermissionError(errno.EPERM, "Operation not permitted"))
        assert isinstance(err, BackendUnavailable)
        assert "IPAddressDeny=" in err.message and "EPERM" in err.message

    def test_name_resolution_failure(self, monkeypatch):
        err = self._classified(monkeypatch, socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))
        assert "does not resolve" in err.message and "IPAddressDeny" not in err.message

    def test_other_connection_failures_stay_plain(self, monkeypatch):
        err = self._classified(monkeypatch, ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
        assert err.message == "Akeyless auth: connection failed"

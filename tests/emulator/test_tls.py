"""HTTPS details: CA pinning, mTLS, and the certificate failures a client must catch."""

from __future__ import annotations

from pathlib import Path

import akeyless
import pytest
import urllib3

from akeyless_emulator import Emulator, TestCA

from .conftest import KEY, login, make_api


def _auth_fails_with_ssl_error(emu: Emulator, **cfg: object) -> None:
    api = make_api(emu, **cfg)
    with pytest.raises(urllib3.exceptions.MaxRetryError) as info:
        api.auth(akeyless.Auth(access_id="p-x", access_key="k"), _request_timeout=(3, 3))
    assert isinstance(info.value.reason, urllib3.exceptions.SSLError)


class TestServerCertificate:
    """The client must verify the server; the emulator can present bad certificates."""

    def test_other_ca_is_rejected(self, tmp_path: Path) -> None:
        """Pinning a different CA fails even with a valid server certificate."""
        with Emulator(tls=True) as emu:
            _auth_fails_with_ssl_error(emu, ssl_ca_cert=TestCA(tmp_path).ca_file)

    def test_state_dir_keeps_the_ca(self, tmp_path: Path) -> None:
        """Restarting on the same state dir keeps the CA (clients stay pinned)."""
        with Emulator(tls=True, state_dir=str(tmp_path)) as first:
            ca = Path(first.ca_file).read_bytes()
        with Emulator(tls=True, state_dir=str(tmp_path)) as second:
            assert Path(second.ca_file).read_bytes() == ca
            second.create_key("/k2")
            assert login(second).encrypt(b"x", key="/k2")


class TestMutualTls:
    """client_auth='required': no client certificate, no connection."""

    def test_required_client_certificate(self) -> None:
        with Emulator(tls=True, client_auth="required") as emu:
            emu.create_key(KEY)
            _auth_fails_with_ssl_error(emu)
            files = emu.mint_client_cert()
            api = make_api(emu, cert_file=files.cert_file, key_file=files.key_file)
            assert login(emu, api=api).encrypt(b"x")

    def test_client_certificate_from_other_ca_is_refused(self, tmp_path: Path) -> None:
        rogue = TestCA(tmp_path).client_cert()
        with Emulator(tls=True, client_auth="required") as emu:
            api = make_api(emu, cert_file=rogue.cert_file, key_file=rogue.key_file)
            with pytest.raises((urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError)):
                api.auth(akeyless.Auth(access_id="p-x", access_key="k"), _request_timeout=(3, 3))
            assert emu.calls["auth"] == 0

    def test_client_auth_needs_tls(self) -> None:
        with pytest.raises(ValueError, match="tls"):
            Emulator(client_auth="required")


class TestGatewayBasePath:
    """A Gateway-like base path (/api/v2) works with the SDK."""

    def test_base_path(self) -> None:
        with Emulator(base_path="/api/v2") as emu:
            emu.create_key(KEY)
            assert emu.url.endswith("/api/v2")
            c = login(emu)
            assert c.decrypt(c.encrypt(b"x")) == b"x"

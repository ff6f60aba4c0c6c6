"""HTTPS details: the CA clients pin survives a restart; mTLS refuses what it must."""

from __future__ import annotations

from pathlib import Path

import akeyless
import pytest
import urllib3

from akeyless_emulator import Emulator, TestCA

from .conftest import login, make_api


class TestServerCertificate:
    """Clients pin the emulator's CA."""

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

    def test_client_certificate_from_other_ca_is_refused(self, tmp_path: Path) -> None:
        rogue = TestCA(tmp_path).client_cert()
        with Emulator(tls=True, client_auth="required") as emu:
            api = make_api(emu, cert_file=rogue.cert_file, key_file=rogue.key_file)
            with pytest.raises((urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError)):
                api.auth(akeyless.Auth(access_id="p-x", access_key="k"), _request_timeout=(3, 3))
            assert emu.calls["auth"] == 0


"""mTLS refuses a client certificate from another CA (the CA surviving a restart: test_control.py)."""

from __future__ import annotations

from pathlib import Path

import akeyless
import pytest
import urllib3

from akeyless_emulator import Emulator, TestCA

from .conftest import make_api


class TestMutualTls:
    """client_auth='required': no client certificate, no connection."""

    def test_client_certificate_from_other_ca_is_refused(self, tmp_path: Path) -> None:
        rogue = TestCA(tmp_path).client_cert()
        with Emulator(tls=True, client_auth="required") as emu:
            api = make_api(emu, cert_file=rogue.cert_file, key_file=rogue.key_file)
            with pytest.raises((urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError)):
                api.auth(akeyless.Auth(access_id="p-x", access_key="k"), _request_timeout=(3, 3))
            assert emu.calls["auth"] == 0


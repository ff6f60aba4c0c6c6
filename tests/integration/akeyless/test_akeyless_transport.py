"""Transport settings: Gateway URL form, plain http to loopback, CA file, mTLS."""

from __future__ import annotations

import os

import pytest

from akeyless_emulator import Emulator
from kms_appliance.errors import SetupError
from tests.integration.akeyless.metadata import ConnectProxy
from tests.support.emulator import KEY, identity_env


def _env_without_ca(emu: Emulator) -> dict[str, str]:
    """The settings of a new identity, trusting only the system's CAs."""
    return {k: v for k, v in identity_env(emu).items() if k != "KMS_APPLIANCE_AKEYLESS_CA_FILE"}


def _round_trip(b) -> None:
    w = b.wrap(os.urandom(32))
    assert b.unwrap(w.ciphertext, w.key_id, {}).plaintext


class TestTransport:
    """The client reaches SaaS- and Gateway-shaped URLs over the right transport."""

    def test_gateway_url_with_trailing_slash(self, make_backend):
        with Emulator(tls=True, base_path="/api/v2") as emu:
            emu.create_key(KEY)
            env = identity_env(emu, url=emu.url + "/")
            assert emu.url.endswith("/api/v2")
            _round_trip(make_backend(env))
            assert emu.calls["encrypt"] == emu.calls["decrypt"] == 1

    def test_plain_http_to_loopback(self, make_backend):
        with Emulator(tls=False) as emu:
            emu.create_key(KEY)
            assert emu.url.startswith("http://127.0.0.1")
            _round_trip(make_backend(_env_without_ca(emu)))

    def test_untrusted_server_certificate_is_a_transport_failure(self, make_backend):
        with Emulator(tls=True) as emu:
            emu.create_key(KEY)
            with pytest.raises(SetupError, match="TLS or transport"):
                make_backend(_env_without_ca(emu))  # the test CA is not trusted

    def test_mutual_tls(self, make_backend):
        with Emulator(tls=True, client_auth="required") as emu:
            emu.create_key(KEY)
            files = emu.mint_client_cert()
            env = identity_env(emu)
            with pytest.raises(SetupError):
                make_backend(env)
            _round_trip(make_backend({**env, "KMS_APPLIANCE_AKEYLESS_CERT_FILE": files.cert_file,
                                      "KMS_APPLIANCE_AKEYLESS_KEY_FILE": files.key_file}))

    def test_https_through_a_proxy(self, make_backend):
        with Emulator(tls=True) as emu, ConnectProxy() as proxy:
            emu.create_key(KEY)
            _round_trip(make_backend(identity_env(emu, KMS_APPLIANCE_AKEYLESS_PROXY=proxy.base)))
            assert proxy.tunnels and all(t.endswith(f":{emu.port}") for t in proxy.tunnels)

"""Each fault kind, as the real SDK observes it, plus call counting."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import akeyless
import pytest
import urllib3

from akeyless_emulator import Emulator

from .conftest import KEY, Client, api_error, login


class TestStatusFaults:
    """Injected HTTP errors reach the SDK as ApiException with that status."""

    def test_429_carries_retry_after(self, plain_emu: Emulator, plain_client: Client) -> None:
        plain_emu.fault("encrypt", status=429, retry_after=7, times=1)
        err = api_error(lambda: plain_client.encrypt(b"x"))
        assert err.status == 429
        assert err.headers["Retry-After"] == "7"
        assert "TooManyRequests" in err.body

    def test_401_looks_like_expired_token(self, plain_emu: Emulator, plain_client: Client) -> None:
        """An injected 401 says 'token expired' though the token is still valid."""
        plain_emu.fault("encrypt", status=401, times=1)
        err = api_error(lambda: plain_client.encrypt(b"x"))
        assert err.status == 401
        assert "expired" in err.body
        assert plain_client.encrypt(b"x")


class TestTransportFaults:
    """Resets, hangs and latency as the SDK's urllib3 sees them."""

    def test_stop_releases_a_hung_request(self) -> None:
        """stop() does not wait for a hang's bound: the client is disconnected at once."""
        emu = Emulator().start()
        emu.create_key(KEY)
        client = login(emu)
        emu.fault("encrypt", "hang", delay=60.0)
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(client.encrypt, b"x")
            assert emu.wait_for("encrypt", in_flight=1, timeout=5)
            started = time.monotonic()
            emu.close()
            error = call.exception(timeout=10)  # TimeoutError if the call is still hung
        assert time.monotonic() - started < 5.0
        assert isinstance(error, urllib3.exceptions.HTTPError)


class TestWrongAnswers:
    """200 answers that are wrong: the client must validate them."""

    def test_invalid_fault_definitions_are_refused(self, plain_emu: Emulator) -> None:
        with pytest.raises(ValueError, match="kind"):
            plain_emu.fault("encrypt", "explode")
        with pytest.raises(ValueError, match="times"):
            plain_emu.fault("encrypt", status=503, times=0)
        with pytest.raises(ValueError, match="delay"):
            plain_emu.fault("encrypt", delay=10_000)


class TestAccounting:
    """Call counts and records let tests prove caching and single-flight."""

    def test_records_carry_item_version_never_secrets(self, emu: Emulator, client: Client) -> None:
        """Records hold endpoint, status and version, never bodies or tokens; Nagle is off."""
        emu.reset_calls()
        client.encrypt(b"x")
        (rec,) = emu.requests
        assert (rec.endpoint, rec.status, rec.item_version) == ("encrypt", 200, 1)
        assert rec.nodelay is True
        assert client.token not in repr(rec)

    def test_in_flight_and_wait_for(self, plain_emu: Emulator, plain_client: Client) -> None:
        """A slow call is visible in flight before it is counted as done."""
        ciphertext = plain_client.encrypt(b"x")
        plain_emu.reset_calls()
        plain_emu.fault("decrypt", delay=1.0, times=1)
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(plain_client.decrypt, ciphertext)
            assert plain_emu.wait_for("decrypt", in_flight=1, timeout=5)
            assert plain_emu.calls["decrypt"] == 0
            assert plain_emu.wait_for("decrypt", calls=1, timeout=5)
        assert call.result() == b"x"
        assert not plain_emu.wait_for("decrypt", in_flight=1, timeout=0.05)  # no longer in flight
        assert not plain_emu.wait_for("decrypt", calls=2, timeout=0.05)

    def test_unknown_operation_is_404(self, plain_emu: Emulator, plain_client: Client) -> None:
        """A double slash (host with trailing '/') reaches no operation: 404."""
        conf = akeyless.Configuration(host=plain_emu.url + "/")
        api = akeyless.V2Api(akeyless.ApiClient(conf))
        err = api_error(lambda: api.encrypt(akeyless.Encrypt(key_name="/k", plaintext="x", token=plain_client.token)))
        assert err.status == 404
        assert plain_emu.calls["<unknown>"] == 1

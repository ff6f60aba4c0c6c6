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

    def test_503_for_next_two_calls_then_recovers(self, emu: Emulator, client: Client) -> None:
        """times=2: exactly two failures, then normal answers; the SDK does not retry."""
        ciphertext = client.encrypt(b"dek")
        emu.reset_calls()
        emu.fault("decrypt", status=503, times=2)
        assert api_error(lambda: client.decrypt(ciphertext)).status == 503
        assert api_error(lambda: client.decrypt(ciphertext)).status == 503
        assert client.decrypt(ciphertext) == b"dek"
        assert emu.calls["decrypt"] == 3
        assert [r.status for r in emu.requests] == [503, 503, 200]

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

    def test_permanent_fault_until_cleared(self, plain_emu: Emulator, plain_client: Client) -> None:
        plain_emu.fault("encrypt", status=500)
        for _ in range(3):
            assert api_error(lambda: plain_client.encrypt(b"x")).status == 500
        assert plain_emu.clear_faults() == 1
        assert plain_client.encrypt(b"x")

    def test_wildcard_fault_hits_every_endpoint(self, plain_emu: Emulator, plain_client: Client) -> None:
        """endpoint='*' applies to all operations, other endpoints' faults untouched."""
        plain_emu.fault("*", status=502, times=2)
        assert api_error(lambda: plain_client.encrypt(b"x")).status == 502
        assert api_error(plain_client.describe).status == 502
        assert plain_client.encrypt(b"x")

    def test_fault_on_other_endpoint_does_not_apply(self, plain_emu: Emulator, plain_client: Client) -> None:
        plain_emu.fault("decrypt", status=503, times=1)
        ciphertext = plain_client.encrypt(b"x")
        assert len(plain_emu.faults.active()) == 1
        assert api_error(lambda: plain_client.decrypt(ciphertext)).status == 503


class TestTransportFaults:
    """Resets, hangs and latency as the SDK's urllib3 sees them."""

    def test_connection_reset(self, emu: Emulator, client: Client) -> None:
        """The SDK gets a urllib3 ProtocolError and does not retry the POST."""
        emu.reset_calls()
        emu.fault("encrypt", "reset", times=1)
        with pytest.raises(urllib3.exceptions.ProtocolError):
            client.encrypt(b"x")
        assert emu.calls["encrypt"] == 1
        assert client.encrypt(b"x")

    def test_hang_hits_the_read_timeout(self, emu: Emulator, client: Client) -> None:
        emu.fault("encrypt", "hang", delay=5.0, times=1)
        body = akeyless.Encrypt(key_name=KEY, plaintext="eA==", input_format="base64", token=client.token)
        started = time.monotonic()
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            client.api.encrypt(body, _request_timeout=(2, 0.3))
        assert time.monotonic() - started < 4.0
        assert client.encrypt(b"x")

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

    def test_latency_delays_but_answers(self, plain_emu: Emulator, plain_client: Client) -> None:
        plain_emu.fault("encrypt", delay=0.3, times=1)
        started = time.monotonic()
        assert plain_client.encrypt(b"x")
        assert time.monotonic() - started >= 0.3

    def test_latency_combined_with_status(self, plain_emu: Emulator, plain_client: Client) -> None:
        """delay also applies before an injected error (slow 504)."""
        plain_emu.fault("encrypt", status=504, delay=0.2, times=1)
        started = time.monotonic()
        assert api_error(lambda: plain_client.encrypt(b"x")).status == 504
        assert time.monotonic() - started >= 0.2


class TestWrongAnswers:
    """200 answers that are wrong: the client must validate them."""

    def test_malformed_json_yields_no_result(self, emu: Emulator, client: Client) -> None:
        """The SDK swallows broken JSON: the model's result is None."""
        ciphertext = client.encrypt(b"x")
        emu.fault("decrypt", "malformed", times=1)
        out = client.api.decrypt(akeyless.Decrypt(key_name=KEY, ciphertext=ciphertext, token=client.token))
        assert out.result is None

    def test_wrong_length_plaintext(self, emu: Emulator, client: Client) -> None:
        """A 32-byte DEK comes back as 31 bytes (or 33 with extra=True)."""
        ciphertext = client.encrypt(bytes(32))
        emu.fault("decrypt", "wrong_length", times=1)
        assert len(client.decrypt(ciphertext)) == 31
        emu.fault("decrypt", "wrong_length", extra=True, times=1)
        assert len(client.decrypt(ciphertext)) == 33
        assert len(client.decrypt(ciphertext)) == 32

    def test_invalid_fault_definitions_are_refused(self, plain_emu: Emulator) -> None:
        with pytest.raises(ValueError, match="kind"):
            plain_emu.fault("encrypt", "explode")
        with pytest.raises(ValueError, match="times"):
            plain_emu.fault("encrypt", status=503, times=0)
        with pytest.raises(ValueError, match="delay"):
            plain_emu.fault("encrypt", delay=10_000)


class TestAccounting:
    """Call counts and records let tests prove caching and single-flight."""

    def test_counts_are_exact_and_ready_when_the_call_returns(self, plain_emu: Emulator, plain_client: Client) -> None:
        """The count is updated before the answer leaves: no race with the test."""
        plain_emu.reset_calls()
        for n in range(1, 21):
            plain_client.encrypt(b"x")
            assert plain_emu.calls["encrypt"] == n
        assert plain_emu.calls["decrypt"] == 0

    def test_records_carry_identity_item_version_and_headers(self, emu: Emulator, client: Client) -> None:
        """Records hold access id, item, version and SDK headers, never bodies; Nagle is off."""
        emu.reset_calls()
        client.encrypt(b"x")
        (rec,) = emu.requests
        assert (rec.endpoint, rec.status, rec.access_id, rec.item, rec.item_version) == (
            "encrypt", 200, client.access_id, KEY, 1)
        assert rec.headers["User-Agent"].startswith("OpenAPI-Generator/")
        assert "X-Forwarded-For" in rec.headers
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
            assert plain_emu.in_flight["decrypt"] == 1
            assert plain_emu.calls["decrypt"] == 0
            assert plain_emu.wait_for("decrypt", calls=1, timeout=5)
        assert call.result() == b"x"
        assert plain_emu.in_flight["decrypt"] == 0
        assert not plain_emu.wait_for("decrypt", calls=2, timeout=0.05)

    def test_concurrent_callers_on_one_client(self, emu: Emulator, client: Client) -> None:
        emu.reset_calls()
        dek = bytes(range(32))

        def work() -> bool:
            return all(client.decrypt(client.encrypt(dek)) == dek for _ in range(5))

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda _: work(), range(16)))
        assert all(results)
        assert emu.calls["encrypt"] == 80
        assert emu.calls["decrypt"] == 80

    def test_unknown_operation_is_404(self, plain_emu: Emulator, plain_client: Client) -> None:
        """A double slash (host with trailing '/') reaches no operation: 404."""
        conf = akeyless.Configuration(host=plain_emu.url + "/")
        api = akeyless.V2Api(akeyless.ApiClient(conf))
        err = api_error(lambda: api.encrypt(akeyless.Encrypt(key_name="/k", plaintext="x", token=plain_client.token)))
        assert err.status == 404
        assert plain_emu.calls["<unknown>"] == 1

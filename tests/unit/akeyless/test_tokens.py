"""Auth tokens: expirations in either format, renewal (the token file: test_atomicfile.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from kms_appliance.backends.akeyless import tokens


class TestExpiration:
    """Token expirations in either plausible format."""

    now = 1_800_000_000.0

    @pytest.mark.parametrize("text", ["2027-01-15T08:00:00Z", "2027-01-15 08:00:00 +0000 UTC",
                                      "2027-01-15T08:00:00+00:00",
                                      "2027-01-15 08:00:00.123456 +0000 UTC"])
    def test_formats(self, text):
        want = dt.datetime(2027, 1, 15, 8, tzinfo=dt.UTC).timestamp()
        assert tokens.parse_expiration(text, None, self.now) == want

    def test_fallbacks(self):
        assert tokens.parse_expiration("garbage", 1_900_000_000, self.now) == 1_900_000_000
        assert tokens.parse_expiration(None, None, self.now) == self.now + tokens.DEFAULT_LIFETIME

    def test_renewal_point(self):
        long = tokens.Token("t", expires_at=3600.0, issued_at=0.0)
        short = tokens.Token("t", expires_at=8.0, issued_at=0.0)
        assert long.renew_at == 3300.0 and short.renew_at == 6.0
        assert "secret" not in repr(tokens.Token("t-secret", 1.0, 0.0))

    def test_skewed_clock_does_not_mean_login_per_call(self):
        tok = tokens.Token("t", expires_at=100.0, issued_at=160.0)  # "expired" a minute ago
        assert tok.skewed and tok.valid_until == 160.0 + tokens.DEFAULT_LIFETIME
        assert tok.renew_at > 160.0

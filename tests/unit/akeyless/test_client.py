"""The Akeyless client's URL rules."""

from __future__ import annotations

import pytest

from kms_appliance.backends.akeyless import client
from kms_appliance.errors import ConfigError


class TestUrl:
    """TLS is required except to loopback."""

    @pytest.mark.parametrize("url", ["https://api.akeyless.io/", "http://127.0.0.1:8080",
                                     "http://localhost:8000/api/v2", "http://[::1]:1"])
    def test_allowed(self, url):
        assert not client.check_url(url).endswith("/")

    @pytest.mark.parametrize("url", ["http://gw.example.com:8000", "ftp://x", "gw:8000"])
    def test_refused(self, url):
        with pytest.raises(ConfigError):
            client.check_url(url)

"""Pure parts of the Akeyless backend: SDK loading, error sorting, tokens, key state."""

from __future__ import annotations

import datetime as dt
import errno
import importlib.util
import os
import re
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

from kms_appliance.backends.akeyless import classify, client, keystate, sdk, tokens
from kms_appliance.backends.akeyless.health import HealthTracker
from kms_appliance.errors import (
    AccessDenied,
    BackendCorruption,
    BackendUnavailable,
    CiphertextError,
    ConfigError,
    KeyUnavailable,
    Throttled,
)


def _models_source() -> str:
    spec = importlib.util.find_spec("akeyless")
    assert spec is not None and spec.submodule_search_locations
    return (Path(spec.submodule_search_locations[0]) / "models" / "__init__.py").read_text()


class TestLazySdk:
    """The lazy loader finds every model and matches the generated V2Api calls."""

    def test_every_model_module_name_is_derived_correctly(self):
        pairs = re.findall(r"^from akeyless\.models\.(\w+) import (\w+)$", _models_source(), re.M)
        assert len(pairs) > 1000
        assert [c for m, c in pairs if sdk.model_module(c) != m] == []

    def test_load_does_not_run_the_package_init(self):
        code = ("import sys; from kms_appliance.backends.akeyless import sdk; s = sdk.load();"
                "s.models.Item; n = sum(m.startswith('akeyless.models.') for m in sys.modules);"
                "print(n, 'V2Api' in vars(sys.modules['akeyless']))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[3]).stdout.split()
        assert int(out[0]) < 20 and out[1] == "False"

    def test_other_code_reaching_for_akeyless_attributes_still_works(self):
        code = ("import sys; from kms_appliance.backends.akeyless import sdk; s = sdk.load();"
                "import akeyless; print(akeyless.ApiClient is s.ApiClient,"
                " akeyless.V2Api.__name__, akeyless.models.Item.__name__)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[3]).stdout.split()
        assert out == ["True", "V2Api", "Item"]

    def test_unknown_model_deserialises_as_raw_json(self):
        code = ("from kms_appliance.backends.akeyless import sdk; s = sdk.load();"
                "import akeyless.api_client as ac; c = ac.ApiClient(s.Configuration());"
                "print(c._ApiClient__deserialize({'a': 1}, 'NotAModelAnywhere'))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[3]).stdout
        assert out.strip() == "{'a': 1}"

    def test_operations_match_the_generated_v2api(self):
        """Call each real V2Api method with a recording api_client; compare path and types."""
        import akeyless.api.v2_api as v2

        seen: dict[str, str] = {}

        class Recorder:
            client_side_validation = False

            def select_header_accept(self, accepts):
                return accepts[0]

            def select_header_content_type(self, types_):
                return types_[0]

            def call_api(self, path, method, *args, **kwargs):
                assert method == "POST"
                seen[path.lstrip("/")] = kwargs["response_type"]

        api = v2.V2Api(Recorder())
        for op in client.OPERATIONS:
            getattr(api, op.replace("-", "_"))(object())
        assert seen == {op: resp for op, (_, resp) in client.OPERATIONS.items()}


class TestSdkLogging:
    """The SDK's debug logs (whole bodies: DEKs, tokens) stay off even if re-enabled."""

    def test_debug_records_dropped_after_level_lowered(self, caplog):
        import logging

        sdk.load()
        rest = logging.getLogger("akeyless.rest")
        rest.setLevel(logging.DEBUG)
        with caplog.at_level(logging.DEBUG):
            rest.debug("response body: %s", "t-SECRET")
            rest.warning("kept")
        assert "t-SECRET" not in caplog.text and "kept" in caplog.text
        sdk.quiet_sdk_logging()


class TestClassify:
    """HTTP statuses sort into the error classes; messages carry no body."""

    @pytest.mark.parametrize(("status", "op", "cls"), [
        (400, "decrypt", CiphertextError), (400, "encrypt", KeyUnavailable),
        (400, "auth", AccessDenied), (401, "auth", AccessDenied),
        (401, "decrypt", classify.TokenRejected), (403, "encrypt", AccessDenied),
        (404, "describe-item", KeyUnavailable), (429, "decrypt", Throttled),
        (500, "decrypt", BackendUnavailable), (503, "encrypt", BackendUnavailable),
        (0, "auth", BackendUnavailable), (418, "decrypt", BackendUnavailable),
    ])
    def test_status(self, status, op, cls):
        err = classify.from_status(status, op, "/k")
        assert isinstance(err, cls)

    def test_rejected_ciphertext_is_user_induced(self):
        assert classify.from_status(400, "decrypt", "/k").outcome == "user"

    def test_sdk_exception_text_never_copied(self):
        s = sdk.load()
        exc = s.ApiException(status=403, reason="Forbidden")
        exc.body = '{"error": "token t-SECRET"}'
        err = classify.classify(exc, "encrypt", "/k", s)
        assert "SECRET" not in str(err) and isinstance(err, AccessDenied)
        assert isinstance(classify.classify(ValueError("x"), "decrypt", "/k", s), BackendCorruption)


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


class TestTokenFile:
    """The UID token is written atomically with mode 0600."""

    def test_write_replaces_with_0600(self, tmp_path: Path):
        path = tmp_path / "uid"
        path.write_text("u-old\n")
        path.chmod(0o644)
        old_umask = os.umask(0)
        try:
            tokens.write_token_file(path, "u-new")
        finally:
            os.umask(old_umask)
        assert path.read_text() == "u-new\n"
        assert path.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in tmp_path.iterdir()] == ["uid"]


class TestKeyState:
    """Start-up rules and key_id."""

    def _item(self, **kw):
        base = {"item_id": 7, "last_version": 2, "item_type": "AES256GCM", "is_enabled": True,
                "item_state": "Enabled", "item_name": "/k", "item_versions": [
                    types.SimpleNamespace(version=1, item_version_state="Disabled"),
                    types.SimpleNamespace(version=2, item_version_state="Enabled")]}
        return types.SimpleNamespace(**{**base, **kw})

    def test_usable_key(self):
        st = keystate.from_item(self._item(), "/k")
        assert st.problem() is None and st.key_id == "akeyless:7:2"
        assert st.version_state(1) == "Disabled"

    @pytest.mark.parametrize(("kw", "words"), [({"item_type": "RSA2048"}, "not an AES key"),
                                               ({"is_enabled": False}, "disabled"),
                                               ({"last_version": 1}, "version 1 Disabled")])
    def test_problems(self, kw, words):
        assert words in keystate.from_item(self._item(**kw), "/k").problem()

    def test_impossible_answer_is_corruption(self):
        with pytest.raises(BackendCorruption):
            keystate.from_item(self._item(last_version=None), "/k")


class TestHealth:
    """Only sustained unavailability makes the backend unhealthy."""

    def test_streak_and_grace(self):
        h = HealthTracker(failures=3, grace=0.0)
        for _ in range(2):
            h.failure(BackendUnavailable("x"))
        assert h.verdict()[0] is True
        h.failure(Throttled("x"))
        h.failure(AccessDenied("x"))
        assert h.verdict()[0] is True
        h.failure(BackendUnavailable("x"))
        assert h.verdict() == (False, "akeyless unavailable")
        h.success()
        assert h.verdict()[0] is True


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
    def _failure(monkeypatch, error: OSError) -> BaseException:
        s = sdk.load()

        def refuse(*_args, **_kw):
            raise error

        monkeypatch.setattr(s.urllib3.util.connection, "create_connection", refuse)
        pool = s.urllib3.PoolManager(retries=s.urllib3.Retry(total=0))
        with pytest.raises(s.urllib3.exceptions.HTTPError) as info:
            pool.request("POST", "https://api.akeyless.io/auth")
        return info.value

    def test_eperm_names_the_egress_filter(self, monkeypatch):
        exc = self._failure(monkeypatch, PermissionError(errno.EPERM, "Operation not permitted"))
        err = classify.classify(exc, "auth", "/k", sdk.load())
        assert isinstance(err, BackendUnavailable)
        assert "IPAddressDeny=" in err.message and "EPERM" in err.message

    def test_name_resolution_failure(self, monkeypatch):
        exc = self._failure(monkeypatch, socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))
        err = classify.classify(exc, "auth", "/k", sdk.load())
        assert "does not resolve" in err.message and "IPAddressDeny" not in err.message

    def test_other_connection_failures_stay_plain(self, monkeypatch):
        exc = self._failure(monkeypatch, ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
        err = classify.classify(exc, "auth", "/k", sdk.load())
        assert err.message == "Akeyless auth: connection failed"

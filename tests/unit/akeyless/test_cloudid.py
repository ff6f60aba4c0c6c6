"""Our cloud ids are byte-for-byte what the akeyless-cloud-id package produces. The package imports
boto3 / azure-identity / google-auth only for credentials: minimal stand-ins hand both sides the
same ones, and the encoding and signing compared is the package's own."""

from __future__ import annotations

import datetime as dt
import sys
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_appliance.backends.akeyless import cloudid


def _stand_in(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: object) -> types.ModuleType:
    """A module ``name`` holding ``attributes``, in sys.modules for the test."""
    module = types.ModuleType(name)
    vars(module).update(attributes)
    monkeypatch.setitem(sys.modules, name, module)
    return module


@pytest.fixture
def package(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    _stand_in(monkeypatch, "boto3")
    import akeyless_cloud_id.cloud_id as mod

    return mod


def _freeze(monkeypatch: pytest.MonkeyPatch, mod: types.ModuleType, at: dt.datetime) -> None:
    class Frozen(dt.datetime):
        @classmethod
        def utcnow(cls) -> dt.datetime:  # type: ignore[override]
            return at

    monkeypatch.setattr(mod, "datetime", types.SimpleNamespace(datetime=Frozen))


_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60)


class TestAws:
    """SigV4 STS document."""

    def test_known_vector_equal(self, package, monkeypatch):
        at = dt.datetime(2026, 11, 28, 20, 1, 2)
        _freeze(monkeypatch, package, at)
        theirs = package.CloudId().generate("AKIAEXAMPLE", "secret/KEY+x", "session==tok")
        ours = cloudid.aws_cloud_id(cloudid.AwsCredentials("AKIAEXAMPLE", "secret/KEY+x", "session==tok"), at)
        assert ours == theirs

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(key_id=_text, secret=_text, token=_text,
           at=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1)))
    def test_property_equal(self, package, key_id, secret, token, at):
        at = at.replace(microsecond=0)
        with pytest.MonkeyPatch.context() as mp:
            _freeze(mp, package, at)
            theirs = package.CloudId().generate(key_id, secret, token)
        assert cloudid.aws_cloud_id(cloudid.AwsCredentials(key_id, secret, token), at) == theirs

    def test_static_keys_omit_the_token_header(self):
        doc = cloudid.aws_cloud_id(cloudid.AwsCredentials("AKIA", "s"), dt.datetime(2026, 1, 1))
        assert b"Security-Token" not in __import__("base64").b64decode(doc)

    def test_credentials_from_environment(self):
        creds = cloudid.aws_credentials({"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S",
                                         "AWS_SESSION_TOKEN": "T"})
        assert creds == cloudid.AwsCredentials("A", "S", "T")
        assert "S" not in repr(creds)


class TestTokens:
    """Azure and GCP ids are base64 of the token, as the package makes them."""

    def test_azure_equal(self, package, monkeypatch):
        token = "eyJhbGciOi.eyJhdWQiOiJ.sig-azure"

        class Cred:
            def get_token(self, scope: str) -> types.SimpleNamespace:
                assert scope == "https://management.azure.com/.default"
                return types.SimpleNamespace(token=token)

        identity = _stand_in(monkeypatch, "azure.identity", DefaultAzureCredential=Cred)
        _stand_in(monkeypatch, "azure", identity=identity)
        assert cloudid.encode_token(token) == package.CloudId().generateAzure()

    def test_gcp_equal(self, package, monkeypatch):
        token = "eyJhbGciOi.eyJhdWQiOiJha2V5bGVzcy5pbyJ9.sig-gcp"
        requests = _stand_in(monkeypatch, "google.auth.transport.requests", Request=object)
        transport = _stand_in(monkeypatch, "google.auth.transport", requests=requests)
        auth = _stand_in(monkeypatch, "google.auth", transport=transport)
        id_token = _stand_in(monkeypatch, "google.oauth2.id_token", fetch_id_token=lambda req, aud: token)
        oauth2 = _stand_in(monkeypatch, "google.oauth2", id_token=id_token)
        _stand_in(monkeypatch, "google", auth=auth, oauth2=oauth2)
        assert cloudid.encode_token(token) == package.CloudId().generateGcp("akeyless.io")

    def test_unreachable_metadata_names_the_step(self):
        with pytest.raises(cloudid.CloudIdentityError, match="not reachable"):
            cloudid.gcp_cloud_id({"GCE_METADATA_HOST": "127.0.0.1:9"}, timeout=0.5)

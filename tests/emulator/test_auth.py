"""Every emulated /auth access type, the mTLS in front of it and the tokens it issues (expiry,
validation, UID rotation), driven through the real SDK."""

from __future__ import annotations

import base64
import sys
import time
import types
from pathlib import Path
from typing import Any

import akeyless
import pytest
import urllib3

from akeyless_emulator import CertFiles, Emulator, TestCA, make_jwt

from .conftest import KEY, Client, api_error, make_api

AWS_KEY_ID = "AKIAEMULATOR0000TEST"
AWS_SECRET = "emulator/secret/key/for/tests/only00000000"


def b64(text: str | bytes) -> str:
    """Base64 of text or bytes, as the SDK fields expect."""
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def auth(api: Any, **fields: Any) -> Any:
    """POST /auth with the given Auth model fields."""
    return api.auth(akeyless.Auth(**fields), _request_timeout=(5, 10))


def refused(api: Any, **fields: Any) -> Any:
    """POST /auth that must fail: the SDK's ApiException (status, body)."""
    return api_error(lambda: auth(api, **fields))


class TestAccessKey:
    """access_key: id + key, constant-time compared."""

    def test_valid_credentials_issue_a_usable_token(self, emu: Emulator) -> None:
        ident = emu.add_access_key()
        api = make_api(emu)
        out = auth(api, access_id=ident.access_id, access_key=ident.access_key)
        assert out.token.startswith("t-")
        assert out.expiration.endswith("Z")
        assert out.creds.access_id == ident.access_id
        assert Client(api, out.token, "").encrypt(b"probe")  # a real token: an operation accepts it
        assert emu.calls["encrypt"] == 1

    def test_generated_access_id_shape(self, emu: Emulator) -> None:
        """Generated access ids look like the real ones (p- + 12 alnum)."""
        ident = emu.add_access_key()
        assert ident.access_id.startswith("p-")
        assert len(ident.access_id) == 14

    def test_wrong_key_is_401(self, emu: Emulator) -> None:
        ident = emu.add_access_key()
        err = refused(make_api(emu), access_id=ident.access_id, access_key="wrong-secret")
        assert err.status == 401
        assert "wrong-secret" not in err.body

    def test_missing_access_id_is_400_with_real_message(self, emu: Emulator) -> None:
        """The real API's InvalidParam body for a missing AccessId."""
        err = refused(make_api(emu), access_key="x")
        assert err.status == 400
        assert "Missing required parameter - AccessId" in err.body

    def test_unsupported_access_type_is_400(self, emu: Emulator) -> None:
        """ldap and friends are not emulated."""
        assert refused(make_api(emu), access_id="p-x", access_type="ldap").status == 400

    def test_method_mismatch_is_401(self, emu: Emulator) -> None:
        ident = emu.add_access_key()
        assert refused(make_api(emu), access_id=ident.access_id, access_type="aws_iam", cloud_id="eA==").status == 401


class TestUniversalIdentity:
    """universal_identity: only a valid u- token authenticates."""

    def test_bad_uid_token_is_401(self, emu: Emulator) -> None:
        assert refused(make_api(emu), access_type="universal_identity", uid_token="u-nope").status == 401


@pytest.fixture
def boto3_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    """akeyless-cloud-id imports boto3 (not a project dependency) even with explicit credentials
    and never uses it on that path: an empty module satisfies the import."""
    if "boto3" not in sys.modules:
        monkeypatch.setitem(sys.modules, "boto3", types.ModuleType("boto3"))


def aws_cloud_id(key_id: str = AWS_KEY_ID, secret: str = AWS_SECRET) -> str:
    """The cloud-id the real akeyless-cloud-id package produces."""
    from akeyless_cloud_id import CloudId

    return str(CloudId().generate(key_id, secret, "session-token-for-tests"))


@pytest.mark.usefixtures("boto3_placeholder")
class TestAwsIam:
    """aws_iam: the STS request from akeyless-cloud-id is checked and its SigV4 verified."""

    @pytest.mark.parametrize(("key_id", "secret"), [("AKIAOTHER00000000000", AWS_SECRET), (AWS_KEY_ID, "other")],
                             ids=["other-key-id", "same-key-id-other-secret"])
    def test_request_signed_by_another_key_is_401(self, plain_emu: Emulator, key_id: str, secret: str) -> None:
        ident = plain_emu.add_aws_iam(None, AWS_KEY_ID, AWS_SECRET)
        assert refused(make_api(plain_emu), access_id=ident.access_id, access_type="aws_iam",
                       cloud_id=aws_cloud_id(key_id, secret)).status == 401

    def test_malformed_cloud_id_is_401(self, plain_emu: Emulator) -> None:
        """Garbage instead of the base64 JSON document."""
        ident = plain_emu.add_aws_iam(None, AWS_KEY_ID, AWS_SECRET)
        assert refused(make_api(plain_emu), access_id=ident.access_id, access_type="aws_iam",
                       cloud_id=b64("{}")).status == 401


class TestAzureGcpK8s:
    """JWT-carrying methods: the token must be registered, fresh and for the right audience."""

    def test_azure_unregistered_token_is_401(self, plain_emu: Emulator) -> None:
        """A well-formed token for the right audience, but not the one registered."""
        ident, _ = plain_emu.add_azure_ad()
        other = make_jwt({"aud": "https://management.azure.com/"})
        assert refused(make_api(plain_emu), access_id=ident.access_id, access_type="azure_ad",
                       cloud_id=b64(other)).status == 401

    def test_azure_wrong_audience(self, plain_emu: Emulator) -> None:
        ident, token = plain_emu.add_azure_ad(claims={"aud": "https://vault.azure.net"})
        assert refused(make_api(plain_emu), access_id=ident.access_id, access_type="azure_ad",
                       cloud_id=b64(token)).status == 401

    def test_gcp_audience_mismatch(self, plain_emu: Emulator) -> None:
        ident, token = plain_emu.add_gcp()
        assert refused(make_api(plain_emu), access_id=ident.access_id, access_type="gcp",
                       cloud_id=b64(token), gcp_audience="x.io").status == 401

    def test_expired_registered_jwt_is_401(self, plain_emu: Emulator) -> None:
        """Even a registered token is refused after its exp."""
        ident, token = plain_emu.add_gcp(claims={"exp": 1})
        assert refused(make_api(plain_emu), access_id=ident.access_id, access_type="gcp",
                       cloud_id=b64(token)).status == 401

    def test_k8s_other_config_name_is_401(self, plain_emu: Emulator) -> None:
        ident, sa = plain_emu.add_k8s(config_name="cluster-a")
        assert refused(make_api(plain_emu), access_id=ident.access_id, access_type="k8s",
                       k8s_auth_config_name="cluster-b", k8s_service_account_token=b64(sa)).status == 401


def _cert_fields(access_id: str, cert: CertFiles, key: CertFiles | None = None) -> dict[str, str]:
    """cert auth fields: the certificate and, as proof, the private key of `key` (default: its own)."""
    return {"access_id": access_id, "access_type": "cert", "cert_data": b64(Path(cert.cert_file).read_bytes()),
            "key_data": b64(Path((key or cert).key_file).read_bytes())}


class TestCert:
    """cert: a certificate from a registered CA plus its own private key (key-data)."""

    def test_certificate_from_unregistered_ca_is_401(self, plain_emu: Emulator, tmp_path: Path) -> None:
        """Its matching private key does not help a certificate from another CA."""
        ident = plain_emu.add_cert()
        rogue = TestCA(tmp_path / "rogue").client_cert("rogue")
        assert refused(make_api(plain_emu), **_cert_fields(ident.access_id, rogue)).status == 401

    def test_key_data_of_another_key_is_401(self, plain_emu: Emulator) -> None:
        """Possession of the certificate alone is not enough."""
        ident = plain_emu.add_cert()
        mine, other = plain_emu.mint_client_cert("mine"), plain_emu.mint_client_cert("other")
        assert refused(make_api(plain_emu), **_cert_fields(ident.access_id, mine, key=other)).status == 401


class TestMutualTls:
    """client_auth='required': a client certificate from another CA gets no connection."""

    def test_client_certificate_from_other_ca_is_refused(self, tmp_path: Path) -> None:
        rogue = TestCA(tmp_path).client_cert()
        with Emulator(tls=True, client_auth="required") as emu:
            api = make_api(emu, cert_file=rogue.cert_file, key_file=rogue.key_file)
            with pytest.raises((urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError)):
                api.auth(akeyless.Auth(access_id="p-x", access_key="k"), _request_timeout=(3, 3))
            assert emu.calls["auth"] == 0


def uid_encrypt(api: object, uid: str) -> str:
    """Encrypt using a u- token directly in the `uid-token` field."""
    body = akeyless.Encrypt(key_name=KEY, plaintext="eA==", input_format="base64", uid_token=uid)
    out = api.encrypt(body)  # type: ignore[attr-defined]
    return str(out.result)


class TestTokenRequired:
    """Every operation needs a token."""

    def test_missing_token_is_401(self, plain_emu: Emulator) -> None:
        api = make_api(plain_emu)
        err = api_error(lambda: api.encrypt(akeyless.Encrypt(key_name=KEY, plaintext="eA==", input_format="base64")))
        assert err.status == 401


class TestUniversalIdentityRotation:
    """uid-rotate-token replaces the token; the old one dies at once."""

    def test_rotation_kills_old_token_and_renews_the_ttl(self, emu: Emulator) -> None:
        """The old token is refused at once and validate-token says why (200); the new one is valid,
        for a full TTL counted from the rotation."""
        uid = emu.add_universal_identity(ttl=600)
        api = make_api(emu)
        uid_encrypt(api, uid)
        time.sleep(0.3)
        new = api.uid_rotate_token(akeyless.UidRotateToken(uid_token=uid)).token
        tokens = emu.core.tokens.tokens
        assert tokens[new].expires_at - tokens[uid].expires_at >= 0.3
        assert tokens[new].ttl == 600
        assert new.startswith("u-")
        assert new != uid
        assert api_error(lambda: uid_encrypt(api, uid)).status == 401
        assert uid_encrypt(api, new)
        assert api_error(lambda: api.uid_rotate_token(akeyless.UidRotateToken(uid_token=uid))).status == 401
        valid = api.validate_token(akeyless.ValidateToken(token=new))
        assert valid.is_valid is True
        assert 500 <= valid.ttl <= 600
        assert valid.expiration.endswith("Z")
        old = api.validate_token(akeyless.ValidateToken(token=uid))
        assert old.is_valid is False
        assert old.reason
        assert api.validate_token(akeyless.ValidateToken(token="t-unknown")).is_valid is False

    def test_uid_token_expires(self, plain_emu: Emulator) -> None:
        uid = plain_emu.add_universal_identity(ttl=0.5)
        api = make_api(plain_emu)
        time.sleep(0.7)
        assert api_error(lambda: uid_encrypt(api, uid)).status == 401

"""Token lifetimes: expiry, validation and UID rotation."""

from __future__ import annotations

import time

import akeyless

from akeyless_emulator import Emulator

from .conftest import KEY, api_error, make_api


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

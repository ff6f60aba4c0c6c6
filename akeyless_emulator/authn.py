"""Verification of each `/auth` access type against registered identities.

Why: one function per method keeps each rule small and testable; `/auth`
only picks the function by `access-type`. Every failure is a 401 whose
message names the problem, never the secret.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from akeyless_emulator import aws
from akeyless_emulator.errors import bad_request, unauthorized
from akeyless_emulator.identity import Identity, TokenStore
from akeyless_emulator.jwt import audiences, jwt_claims

AZURE_AUDIENCES = ("https://management.azure.com/", "https://management.azure.com",
                   "https://management.core.windows.net/")


@dataclass
class AuthContext:
    """What a verifier may look at besides the request body."""

    identities: dict[str, Identity]
    tokens: TokenStore


def _field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value else None


def _identity(ctx: AuthContext, body: dict[str, Any], method: str) -> Identity:
    access_id = _field(body, "access-id")
    if access_id is None:
        raise bad_request("Missing required parameter - AccessId")
    ident = ctx.identities.get(access_id)
    if ident is None or ident.method != method:
        raise unauthorized("access denied")
    return ident


def _b64_text(value: str | None, what: str) -> str:
    if value is None:
        raise bad_request(f"Missing required parameter - {what}")
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        raise unauthorized(f"{what} is not valid base64") from None


def access_key(ctx: AuthContext, body: dict[str, Any]) -> Identity:
    """Access id + access key, compared in constant time."""
    ident = _identity(ctx, body, "access_key")
    given = _field(body, "access-key") or ""
    if not hmac.compare_digest(given.encode(), (ident.access_key or "").encode()):
        raise unauthorized("access denied")
    return ident


def universal_identity(ctx: AuthContext, body: dict[str, Any]) -> Identity:
    """A valid `u-` token authenticates as its identity (access-id optional)."""
    token = ctx.tokens.resolve(body.get("uid-token"), kinds=("u",))
    access_id = _field(body, "access-id")
    if access_id is not None and access_id != token.access_id:
        raise unauthorized("access denied")
    return ctx.identities[token.access_id]


def aws_iam(ctx: AuthContext, body: dict[str, Any]) -> Identity:
    """The STS document must be SigV4-signed with the registered AWS key id and secret."""
    ident = _identity(ctx, body, "aws_iam")
    cloud_id = _field(body, "cloud-id")
    if cloud_id is None:
        raise bad_request("Missing required parameter - CloudId")
    now = dt.datetime.now(dt.UTC)
    aws.verify(cloud_id, ident.aws_access_key_id or "", ident.aws_secret_access_key or "", now)
    return ident


def _registered_jwt(ident: Identity, token: str) -> dict[str, Any]:
    if not any(hmac.compare_digest(token.encode(), known.encode()) for known in ident.jwts):
        raise unauthorized("identity token is not registered")
    return jwt_claims(token)


def azure_ad(ctx: AuthContext, body: dict[str, Any]) -> Identity:
    """base64 of a registered JWT for the Azure management audience."""
    ident = _identity(ctx, body, "azure_ad")
    claims = _registered_jwt(ident, _b64_text(_field(body, "cloud-id"), "CloudId"))
    if not set(audiences(claims)) & set(AZURE_AUDIENCES):
        raise unauthorized("azure token has the wrong audience")
    return ident


def gcp(ctx: AuthContext, body: dict[str, Any]) -> Identity:
    """base64 of a registered JWT whose `aud` is the requested gcp-audience."""
    ident = _identity(ctx, body, "gcp")
    claims = _registered_jwt(ident, _b64_text(_field(body, "cloud-id"), "CloudId"))
    audience = _field(body, "gcp-audience") or "akeyless.io"
    if audience not in audiences(claims):
        raise unauthorized("gcp token has the wrong audience")
    return ident


def k8s(ctx: AuthContext, body: dict[str, Any]) -> Identity:
    """base64 service-account JWT registered for this k8s auth config name."""
    ident = _identity(ctx, body, "k8s")
    config = _field(body, "k8s-auth-config-name")
    if config is None:
        raise bad_request("Missing required parameter - K8SAuthConfigName")
    if config != ident.k8s_config_name:
        raise unauthorized("unknown k8s auth config")
    _registered_jwt(ident, _b64_text(_field(body, "k8s-service-account-token"), "K8SServiceAccountToken"))
    return ident


def _chains_to(cert: x509.Certificate, ca_pems: list[bytes]) -> bool:
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return False
    for pem in ca_pems:
        try:
            cert.verify_directly_issued_by(x509.load_pem_x509_certificate(pem))
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert(ctx: AuthContext, body: dict[str, Any]) -> Identity:
    """A certificate from a registered CA, with `key-data` (its private key) as proof."""
    ident = _identity(ctx, body, "cert")
    cert_data = _field(body, "cert-data")
    if cert_data is None:
        raise bad_request("Missing required parameter - CertData")
    try:  # PEM: the plugin sends its certificate file as it is (no test sends DER)
        certificate = x509.load_pem_x509_certificate(base64.b64decode(cert_data, validate=True))
    except ValueError:  # binascii.Error is one
        raise unauthorized("cert-data is not a base64 PEM certificate") from None
    if not _chains_to(certificate, ident.ca_pems):
        raise unauthorized("certificate is not trusted")
    key_data = _field(body, "key-data")
    if key_data is None:
        raise bad_request("Missing required parameter - KeyData")
    try:
        key = serialization.load_pem_private_key(base64.b64decode(key_data), None)
    except (ValueError, TypeError, binascii.Error):
        raise unauthorized("key-data cannot be parsed") from None
    if key.public_key().public_bytes(*_SPKI) != certificate.public_key().public_bytes(*_SPKI):
        raise unauthorized("key-data does not match the certificate")
    return ident


VERIFIERS: dict[str, Callable[[AuthContext, dict[str, Any]], Identity]] = {
    "access_key": access_key,
    "universal_identity": universal_identity,
    "aws_iam": aws_iam,
    "azure_ad": azure_ad,
    "gcp": gcp,
    "k8s": k8s,
    "cert": cert,
}

"""Verification of the `aws_iam` cloud-id produced by `akeyless-cloud-id`.

Why: the real service replays the presigned STS GetCallerIdentity request to learn
who the caller is. The emulator cannot reach AWS, so it checks the request and its
SigV4 signature offline (what exactly: docs/emulator.md, "Auth methods").
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from akeyless_emulator.errors import unauthorized

MAX_SKEW = dt.timedelta(minutes=15)
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class StsRequest:
    """The decoded pieces of an aws_iam cloud-id."""

    method: str
    url: str
    body: str
    headers: dict[str, list[str]]


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise unauthorized("malformed aws_iam cloud-id")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise unauthorized("malformed aws_iam cloud-id") from None


def decode_cloud_id(cloud_id: str) -> StsRequest:
    """Decode the base64 JSON document (all parts but the method base64)."""
    try:
        doc = json.loads(_b64(cloud_id))
        headers = json.loads(_b64(doc["sts_request_headers"]))
        req = StsRequest(
            method=str(doc["sts_request_method"]),
            url=_b64(doc["sts_request_url"]).decode(),
            body=_b64(doc["sts_request_body"]).decode(),
            headers={str(k): [str(x) for x in v] for k, v in headers.items()},
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        raise unauthorized("malformed aws_iam cloud-id") from None
    return req


def _header(req: StsRequest, name: str) -> str:
    for key, values in req.headers.items():
        if key.lower() == name and values:
            return values[0]
    if name == "host":
        return urlsplit(req.url).netloc
    raise unauthorized("aws_iam request lacks a signed header")


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def expected_signature(req: StsRequest, secret: str, signed: str, scope: str, amz_date: str) -> str:
    """SigV4 signature of the request, as STS computes it."""
    names = signed.split(";")
    canonical_headers = "".join(f"{n}:{_header(req, n).strip()}\n" for n in names)
    parts = urlsplit(req.url)
    body_hash = hashlib.sha256(req.body.encode()).hexdigest()
    canonical = "\n".join([req.method, parts.path or "/", parts.query, canonical_headers, signed, body_hash])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    date, region, service, _ = scope.split("/")
    return hmac.new(_signing_key(secret, date, region, service), to_sign.encode(), hashlib.sha256).hexdigest()


def verify(cloud_id: str, access_key_id: str, secret: str, now: dt.datetime) -> None:
    """Raise 401 unless the cloud-id is a fresh STS call signed with `access_key_id` and `secret`."""
    req = decode_cloud_id(cloud_id)
    host = urlsplit(req.url).hostname or ""
    if req.method != "POST" or not re.fullmatch(r"sts(\.[a-z0-9-]+)?\.amazonaws\.com", host):
        raise unauthorized("aws_iam cloud-id is not an STS request")
    if "Action=GetCallerIdentity" not in req.body:
        raise unauthorized("aws_iam cloud-id is not GetCallerIdentity")
    match = _AUTH_RE.match(_header(req, "authorization").strip())
    if match is None:
        raise unauthorized("aws_iam request is not SigV4-signed")
    cred = match["cred"].split("/", 1)
    if len(cred) != 2 or len(cred[1].split("/")) != 4 or not hmac.compare_digest(cred[0], access_key_id):
        raise unauthorized("aws_iam identity is not allowed")
    amz_date = _header(req, "x-amz-date")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise unauthorized("aws_iam request has a bad X-Amz-Date") from None
    if abs(now - signed_at) > MAX_SKEW:
        raise unauthorized("aws_iam request signature is stale")
    want = expected_signature(req, secret, match["signed"], cred[1], amz_date)
    if not hmac.compare_digest(want, match["sig"]):
        raise unauthorized("aws_iam request signature does not match")

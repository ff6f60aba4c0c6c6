"""Cloud identities (aws_iam, azure_ad, gcp) without the cloud SDKs.

Why not ``akeyless-cloud-id`` itself: its AWS, Azure and GCP paths import
boto3, azure-identity and google-auth (tens of MB and hundreds of modules in
the frozen binary) only to read credentials from the instance metadata
service. This module reads them with the standard library and produces the
same bytes: ``aws_cloud_id`` is the package's SigV4 document, and the Azure
and GCP ids are base64 of the metadata service's token, as the package
makes them. tests/unit/akeyless/test_cloudid.py proves byte equality
against the installed package for the same inputs.

Metadata endpoints honour the same override variables as the official
SDKs (``AWS_EC2_METADATA_SERVICE_ENDPOINT``, ``GCE_METADATA_HOST``,
``AZURE_POD_IDENTITY_AUTHORITY_HOST``); metadata requests never use a proxy.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from ...errors import AccessDenied

AWS_METADATA = "http://169.254.169.254"
AZURE_METADATA = "http://169.254.169.254"
GCP_METADATA = "metadata.google.internal"
AZURE_RESOURCE = "https://management.azure.com/"
PROBE_TIMEOUT = 1.0
_MAX_BODY = 65_536
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CloudIdentityError(AccessDenied):
    """No identity could be obtained from this cloud (message says which step)."""


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """AWS credentials (secret) used only to sign the STS request locally."""

    access_key_id: str
    secret_access_key: str
    session_token: str = ""

    def __repr__(self) -> str:
        return f"AwsCredentials(access_key_id={self.access_key_id!r}, ...)"


# ---- AWS -----------------------------------------------------------------------------

_STS_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
_STS_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def aws_cloud_id(creds: AwsCredentials, now: dt.datetime) -> str:
    """base64 JSON of a SigV4-signed, unsent STS GetCallerIdentity request.

    Field order, header order, JSON spacing and the double space before
    ``SignedHeaders`` are the package's, so the output is byte-identical.
    Without a session token the package would sign the literal "None"; we
    leave the header out instead (what STS accepts for static keys).
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    datestamp = now.strftime("%Y%m%d")
    scope = f"{datestamp}/us-east-1/sts/aws4_request"
    token = creds.session_token
    names = ["content-length", "content-type", "host", "x-amz-date"]
    values = [str(len(_STS_BODY)), _STS_CONTENT_TYPE, "sts.amazonaws.com", amz_date]
    if token:
        names.append("x-amz-security-token")
        values.append(token)
    signed = ";".join(names)
    canonical_headers = "".join(f"{n}:{v}\n" for n, v in zip(names, values, strict=True))
    body_digest = hashlib.sha256(_STS_BODY.encode()).hexdigest()
    canonical = f"POST\n/\n\n{canonical_headers}\n{signed}\n{body_digest}"
    to_sign = ("AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n"
               + hashlib.sha256(canonical.encode()).hexdigest())
    key = _hmac(("AWS4" + creds.secret_access_key).encode(), datestamp)
    for part in ("us-east-1", "sts", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = (f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope},  "
            f"SignedHeaders={signed}, Signature={signature}")
    headers = {"Authorization": [auth], "Content-Length": [str(len(_STS_BODY))],
               "Content-Type": [_STS_CONTENT_TYPE], "User-Agent": ["aws-sdk-python"],
               "X-Amz-Date": [amz_date]}
    if token:
        headers["X-Amz-Security-Token"] = [token]
    doc = {"sts_request_method": "POST",
           "sts_request_url": _b64(b"https://sts.amazonaws.com/"),
           "sts_request_body": _b64(_STS_BODY.encode()),
           "sts_request_headers": _b64(json.dumps(headers).encode())}
    return _b64(json.dumps(doc).encode())


def aws_credentials(env: Mapping[str, str], timeout: float = PROBE_TIMEOUT) -> AwsCredentials:
    """Environment variables first, then the ECS/EKS container endpoint, then IMDSv2."""
    key_id, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if key_id and secret:
        return AwsCredentials(key_id, secret, env.get("AWS_SESSION_TOKEN", ""))
    full = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
    relative = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
    if full or relative:
        url = full or "http://169.254.170.2" + relative
        headers = {}
        token = _container_auth_token(env)
        if token:
            headers["Authorization"] = token
        return _parse_aws_creds(_get(url, headers, timeout, "aws container credentials"))
    base = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", AWS_METADATA).rstrip("/")
    imds_token = _fetch(base + "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"},
                        timeout, "aws metadata token", method="PUT")
    hdr = {"X-aws-ec2-metadata-token": imds_token}
    role = _get(base + "/latest/meta-data/iam/security-credentials/", hdr, timeout,
                "aws instance role").strip().splitlines()
    if not role or not role[0].strip():
        raise CloudIdentityError("aws: the instance has no IAM role")
    doc = _get(base + "/latest/meta-data/iam/security-credentials/" + role[0].strip(), hdr,
               timeout, "aws instance credentials")
    return _parse_aws_creds(doc)


def _container_auth_token(env: Mapping[str, str]) -> str:
    path = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError:
            raise CloudIdentityError("aws: cannot read the container authorization token file") from None
    return env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")


def _parse_aws_creds(text: str) -> AwsCredentials:
    try:
        doc = json.loads(text)
        creds = AwsCredentials(str(doc["AccessKeyId"]), str(doc["SecretAccessKey"]),
                               str(doc.get("Token") or ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CloudIdentityError("aws: malformed credentials document") from None
    if not creds.access_key_id or not creds.secret_access_key:
        raise CloudIdentityError("aws: empty credentials")
    return creds


# ---- Azure and GCP ---------------------------------------------------------------------


def azure_cloud_id(env: Mapping[str, str], object_id: str = "",
                   timeout: float = PROBE_TIMEOUT) -> str:
    """base64 of a managed-identity access token for the Azure management API."""
    base = env.get("AZURE_POD_IDENTITY_AUTHORITY_HOST", AZURE_METADATA).rstrip("/")
    query = {"api-version": "2018-02-01", "resource": AZURE_RESOURCE}
    if object_id:
        query["object_id"] = object_id
    url = base + "/metadata/identity/oauth2/token?" + urllib.parse.urlencode(query)
    text = _get(url, {"Metadata": "true"}, timeout, "azure managed identity")
    try:
        token = str(json.loads(text)["access_token"])
    except (ValueError, KeyError, TypeError):
        raise CloudIdentityError("azure: malformed token answer") from None
    return encode_token(token)


def gcp_cloud_id(env: Mapping[str, str], audience: str = "akeyless.io",
                 timeout: float = PROBE_TIMEOUT) -> str:
    """base64 of the metadata server's identity token for ``audience``."""
    host = env.get("GCE_METADATA_HOST", GCP_METADATA)
    query = urllib.parse.urlencode({"audience": audience, "format": "full"})
    url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/identity?{query}"
    token = _get(url, {"Metadata-Flavor": "Google"}, timeout, "gcp identity token").strip()
    if token.count(".") != 2:
        raise CloudIdentityError("gcp: the metadata server did not return a JWT")
    return encode_token(token)


def encode_token(token: str) -> str:
    """The package's encoding of a cloud token: base64 of its UTF-8 bytes."""
    return _b64(token.encode())


# ---- helpers -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _get(url: str, headers: Mapping[str, str], timeout: float, what: str) -> str:
    return _fetch(url, headers, timeout, what, method="GET")


def _fetch(url: str, headers: Mapping[str, str], timeout: float, what: str, method: str) -> str:
    """One metadata request; errors name the step, never the answer."""
    req = urllib.request.Request(url, headers=dict(headers), method=method)  # noqa: S310 - fixed/env URL
    try:
        with _NO_PROXY.open(req, timeout=timeout) as resp:
            return str(resp.read(_MAX_BODY).decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise CloudIdentityError(f"{what}: metadata service answered {exc.code}") from None
    except (urllib.error.URLError, OSError, UnicodeError):
        raise CloudIdentityError(f"{what}: metadata service not reachable") from None


def utcnow() -> dt.datetime:
    """Naive UTC now, like the package's ``datetime.utcnow()``."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


"""Auth methods: where each credential comes from, detection, /auth fields.

Why separate from the token lifecycle: these are pure functions of the
settings and the environment (plus metadata requests for cloud ids), easy
to test on their own, while :mod:`.auth` owns threads and state.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...config import AkeylessSettings
from ...errors import KmsError, SetupError, shown
from . import cloudid

CLOUD_METHODS = ("aws_iam", "azure_ad", "gcp")


# ---- secrets from settings ---------------------------------------------------------------


def read_secret_file(path: Path, what: str) -> str:
    """A secret file's first line; errors name the file, never the content."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        name = shown(str(path), limit=160)
        raise SetupError(f"cannot read the {what} file {name}: {exc.strerror}") from None


def access_key(s: AkeylessSettings) -> str:
    """The access key from the setting or its file ('' if neither)."""
    if s.access_key:
        return s.access_key.strip()
    if s.access_key_file is not None:
        return read_secret_file(s.access_key_file, "access key")
    return ""


def initial_uid_token(s: AkeylessSettings) -> str:
    """The rotated token file wins over the initial token (it is newer)."""
    if s.uid_token_file is not None and s.uid_token_file.exists():
        token = read_secret_file(s.uid_token_file, "Universal Identity token")
        if token:
            return token
    return s.uid_token.strip()


# ---- detection -----------------------------------------------------------------------


def detect(s: AkeylessSettings, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """The auth method to use and what was tried to find it.

    Order: access_type if set; an access key; a UID token; a k8s auth config
    name; then the machine's cloud identity (AWS, Azure, GCP metadata, each
    probed with a short timeout). Nothing found is a SetupError listing
    every step.
    """
    if s.access_type:
        return s.access_type, [f"access_type={s.access_type} (configured)"]
    tried: list[str] = []
    if access_key(s):
        return "access_key", ["access key present"]
    tried.append("access_key: no access key")
    if initial_uid_token(s):
        return "universal_identity", [*tried, "UID token present"]
    tried.append("universal_identity: no UID token")
    if s.k8s_auth_config_name:
        return "k8s", [*tried, "k8s_auth_config_name set"]
    tried.append("k8s: no k8s_auth_config_name")
    for method in CLOUD_METHODS:
        try:
            cloud_id(method, s, env)
        except KmsError as exc:
            tried.append(f"{method}: {exc.message}")
            continue
        return method, [*tried, f"{method}: identity obtained"]
    raise SetupError("no Akeyless auth method found; tried " + "; ".join(tried))


def cloud_id(method: str, s: AkeylessSettings, env: Mapping[str, str]) -> str:
    """The cloud-id proving this machine's identity for ``method``."""
    if method == "aws_iam":
        return cloudid.aws_cloud_id(cloudid.aws_credentials(env), cloudid.utcnow())
    if method == "azure_ad":
        return cloudid.azure_cloud_id(env, s.azure_object_id)
    return cloudid.gcp_cloud_id(env, s.gcp_audience or "akeyless.io")


def _b64_file(path: Path | None, what: str) -> str:
    if path is None:
        raise SetupError(f"cert auth needs akeyless.{what}")
    try:
        return base64.b64encode(path.read_bytes()).decode()
    except OSError as exc:
        raise SetupError(f"cannot read {shown(str(path), limit=160)}: {exc.strerror}") from None


def auth_fields(method: str, s: AkeylessSettings, uid_token: str,
                env: Mapping[str, str]) -> dict[str, Any]:
    """The /auth request fields (SDK model names) for ``method``."""
    fields: dict[str, Any] = {"access_id": s.access_id, "access_type": method}
    if method == "access_key":
        fields["access_key"] = access_key(s)
    elif method == "universal_identity":
        fields["uid_token"] = uid_token
    elif method in CLOUD_METHODS:
        fields["cloud_id"] = cloud_id(method, s, env)
        if method == "gcp":
            fields["gcp_audience"] = s.gcp_audience or "akeyless.io"
    elif method == "k8s":
        fields["k8s_auth_config_name"] = s.k8s_auth_config_name
        token = read_secret_file(s.k8s_token_file, "service-account token")
        fields["k8s_service_account_token"] = base64.b64encode(token.encode()).decode()
    elif method == "cert":
        fields["cert_data"] = _b64_file(s.cert_file, "cert_file")
        fields["key_data"] = _b64_file(s.key_file, "key_file")
    return fields

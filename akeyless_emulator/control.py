"""The HTTP control plane under `/__emulator/<action>`.

Why: the e2e harness and scripts run the emulator in another process and
still need to rotate keys, inject faults and read call counts. Each action
maps onto one `Emulator` method; bodies accept hyphenated or snake_case
keys. It is unauthenticated test infrastructure: bind it to loopback only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from akeyless_emulator.errors import ApiError
from akeyless_emulator.tls import CLIENT_CN

if TYPE_CHECKING:
    from akeyless_emulator.emulator import Emulator

# An action answers its JSON body; one that returns None answers {}.
Action = Callable[["Emulator", dict[str, Any]], dict[str, Any] | None]


def _opts(body: dict[str, Any]) -> dict[str, Any]:
    """Identity options common to every add-* action."""
    out: dict[str, Any] = {}
    if "capabilities" in body:
        out["capabilities"] = frozenset(body["capabilities"])
    if "items" in body:
        out["items"] = tuple(body["items"])
    if "token_ttl" in body:
        out["token_ttl"] = float(body["token_ttl"])
    return out


def _state(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    with emu.core.lock:
        return {"keys": [k.describe(True) for k in emu.core.keys.values()],
                "identities": [i.public() for i in emu.core.identities.values()],
                "faults": [f.public() for f in emu.faults.active()], "token_ttl": emu.core.settings.token_ttl}


def _fault(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    fault = emu.fault(body["endpoint"], body.get("kind"), status=body.get("status"),
                      delay=float(body.get("delay", 0.0)), times=body.get("times"), body=body.get("body"),
                      retry_after=body.get("retry_after"), extra=bool(body.get("extra", False)))
    return {"fault": fault.public()}


def _add_aws(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    ident = emu.add_aws_iam(body.get("access_id"), body["aws_access_key_id"],
                            body.get("aws_secret_access_key"), **_opts(body))
    return {"access_id": ident.access_id}


def _with_token(pair: tuple[Any, str]) -> dict[str, Any]:
    return {"access_id": pair[0].access_id, "token": pair[1]}


def _add_access_key(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    ident = emu.add_access_key(body.get("access_id"), body.get("access_key"), **_opts(body))
    return {"access_id": ident.access_id, "access_key": ident.access_key}


def _add_uid(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    ttl = float(body.get("ttl", 3600.0))
    return {"token": emu.add_universal_identity(body.get("access_id"), ttl, **_opts(body))}


def _add_cert(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    ca = body["ca_pem"].encode() if body.get("ca_pem") else None
    return {"access_id": emu.add_cert(body.get("access_id"), ca, **_opts(body)).access_id}


def _add_gcp(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    audience = body.get("audience", "akeyless.io")
    return _with_token(emu.add_gcp(body.get("access_id"), audience, body.get("claims"), **_opts(body)))


def _add_k8s(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    config = body.get("config_name", "k8s-conf")
    return _with_token(emu.add_k8s(body.get("access_id"), config, **_opts(body)))


def _version_state(emu: Emulator, body: dict[str, Any]) -> None:
    emu.core.set_version_state(body["name"], int(body["version"]), body["state"])


def _key_enabled(emu: Emulator, body: dict[str, Any]) -> None:
    emu.core.set_key_enabled(body["name"], bool(body["enabled"]))


def _key_settings(emu: Emulator, body: dict[str, Any]) -> None:
    """Set delete_protection / auto_rotate / rotation_interval (days) as describe-item shows them."""
    key = emu.key(body["name"])
    for name in ("delete_protection", "auto_rotate"):
        if name in body:
            setattr(key, name, bool(body[name]))
    if "rotation_interval" in body:
        key.rotation_interval = int(body["rotation_interval"])


def _token_ttl(emu: Emulator, body: dict[str, Any]) -> None:
    emu.set_token_ttl(float(body["seconds"]), body.get("access_id"))


def _reset_calls(emu: Emulator, body: dict[str, Any]) -> None:
    emu.reset_calls()


def _delete_key(emu: Emulator, body: dict[str, Any]) -> None:
    emu.delete_key(body["name"])


ACTIONS: dict[str, Action] = {
    "calls": lambda e, b: {"calls": dict(e.calls), "in_flight": dict(e.in_flight)},
    "requests": lambda e, b: {"requests": [asdict(r) for r in e.requests]},
    "encrypt-versions": lambda e, b: {"encrypt_versions": e.encrypt_versions()},
    "reset-calls": _reset_calls,
    "state": _state,
    "create-key": lambda e, b: {"item_id": e.create_key(b["name"]).item_id},
    "rotate-key": lambda e, b: {"new_item_version": e.rotate_key(b["name"])},
    "version-state": _version_state,
    "key-enabled": _key_enabled,
    "key-settings": _key_settings,
    "delete-key": _delete_key,
    "add-access-key": _add_access_key,
    "add-universal-identity": _add_uid,
    "add-aws-iam": _add_aws,
    "add-azure-ad": lambda e, b: _with_token(e.add_azure_ad(b.get("access_id"), b.get("claims"), **_opts(b))),
    "add-gcp": _add_gcp,
    "add-k8s": _add_k8s,
    "add-cert": _add_cert,
    "mint-client-cert": lambda e, b: asdict(e.mint_client_cert(b.get("common_name", CLIENT_CN))),
    "token-ttl": _token_ttl,
    "expire-tokens": lambda e, b: {"expired": e.expire_tokens()},
    "revoke-token": lambda e, b: {"revoked": e.revoke_token(b["token"])},
    "fault": _fault,
    "clear-faults": lambda e, b: {"cleared": e.clear_faults(b.get("endpoint"))},
    "faults": lambda e, b: {"faults": [f.public() for f in e.faults.active()]},
}

READ_ONLY = frozenset({"calls", "requests", "encrypt-versions", "state", "faults"})


def dispatch(emu: Emulator, action: str, body: dict[str, Any], method: str) -> tuple[int, dict[str, Any]]:
    """Run a control action; returns (status, JSON body)."""
    fn = ACTIONS.get(action.strip("/"))
    if fn is None:
        return 404, {"error": "NotFound", "message": f"unknown control action {action!r}",
                     "actions": sorted(ACTIONS)}
    if method == "GET" and action.strip("/") not in READ_ONLY:
        return 405, {"error": "MethodNotAllowed", "message": "use POST for actions that change state"}
    norm = {k.replace("-", "_"): v for k, v in body.items()}
    try:
        return 200, fn(emu, norm) or {}
    except ApiError as err:
        return err.status, err.body()
    except KeyError as err:
        return 400, {"error": "InvalidParam", "message": f"missing field {err.args[0]!r}"}
    except (ValueError, TypeError) as err:
        return 400, {"error": "InvalidParam", "message": str(err)}

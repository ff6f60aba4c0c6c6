"""The HTTP control plane under `POST /__emulator/<action>`.

Why: the e2e harness, the bench and `kms-appliance check`'s tests run the emulator in another
process (or change it as an operator would) and still need to rotate keys, inject faults and
read call counts. Each action maps onto one `Emulator` method; bodies accept hyphenated or
snake_case keys. It is unauthenticated test infrastructure: bind it to loopback only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from akeyless_emulator.errors import ApiError, bad_request, not_found

if TYPE_CHECKING:
    from akeyless_emulator.emulator import Emulator

# An action answers its JSON body; one that returns None answers {}.
Action = Callable[["Emulator", dict[str, Any]], dict[str, Any] | None]


def _fault(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    fault = emu.fault(body["endpoint"], body.get("kind"), status=body.get("status"),
                      delay=float(body.get("delay", 0.0)), times=body.get("times"),
                      retry_after=body.get("retry_after"), extra=bool(body.get("extra", False)))
    return {"fault": asdict(fault)}


def _add_access_key(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    ident = emu.add_access_key(body.get("access_id"), body.get("access_key"))
    return {"access_id": ident.access_id, "access_key": ident.access_key}


def _key_settings(emu: Emulator, body: dict[str, Any]) -> None:
    """Set delete_protection / auto_rotate / rotation_interval (days) as describe-item shows them."""
    key = emu.key(body["name"])
    for name in ("delete_protection", "auto_rotate"):
        if name in body:
            setattr(key, name, bool(body[name]))
    if "rotation_interval" in body:
        key.rotation_interval = int(body["rotation_interval"])


ACTIONS: dict[str, Action] = {
    "calls": lambda e, b: {"calls": dict(e.calls)},
    "rotate-key": lambda e, b: {"new_item_version": e.rotate_key(b["name"])},
    "version-state": lambda e, b: e.set_version_state(b["name"], int(b["version"]), b["state"]),
    "key-enabled": lambda e, b: e.set_key_enabled(b["name"], bool(b["enabled"])),
    "key-settings": _key_settings,
    "add-access-key": _add_access_key,
    "token-ttl": lambda e, b: e.set_token_ttl(float(b["seconds"])),
    "expire-tokens": lambda e, b: {"expired": e.expire_tokens()},
    "fault": _fault,
    "clear-faults": lambda e, b: {"cleared": e.clear_faults()},
}


def dispatch(emu: Emulator, action: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Run a control action; returns (status, JSON body)."""
    fn = ACTIONS.get(action.strip("/"))
    if fn is None:
        return 404, {**not_found(f"unknown control action {action!r}").body(), "actions": sorted(ACTIONS)}
    norm = {k.replace("-", "_"): v for k, v in body.items()}
    try:
        return 200, fn(emu, norm) or {}
    except ApiError as err:
        return err.status, err.body()
    except KeyError as err:
        return 400, bad_request(f"missing field {err.args[0]!r}").body()
    except (ValueError, TypeError) as err:
        return 400, bad_request(str(err)).body()

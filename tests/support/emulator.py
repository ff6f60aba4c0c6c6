"""The Akeyless API emulator as a process, and the environment that points the plugin at it.

Why a process (not the in-process ``akeyless_emulator.Emulator``): a scenario
makes an outage by stopping it and ends it by starting it again (same port,
same state dir: same keys and identity), and a frozen binary in a sandbox
reaches it over loopback like any Akeyless. The emulator is test code and
always runs from the source tree with this interpreter.
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import ledger
from .procs import REPO, ManagedProcess, ProcessRegistry, free_port, wait_until

if TYPE_CHECKING:
    from akeyless_emulator import Emulator

KEY = "/k8s-kek"
E = TypeVar("E", bound="EmulatorProcess")
READY_TIMEOUT_S = 30.0
CONTROL_TIMEOUT_S = 10.0
# Cloud metadata endpoints pointed at a dead loopback port: no auth detection may leave the machine.
NO_CLOUD = {
    "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9",
    "GCE_METADATA_HOST": "127.0.0.1:9",
}
# Every class of Akeyless failure the plugin sorts: each HTTP status the SDK raises on, and each
# broken answer (a reset connection, a body that is not JSON, a key of the wrong length).
FAULT_CLASSES: tuple[dict[str, Any], ...] = (
    *({"status": s} for s in (400, 401, 403, 404, 429, 500, 503)),
    *({"kind": k} for k in ("reset", "malformed", "wrong_length")))


def each_fault(emu: Emulator, none_first: bool = False) -> Iterator[dict[str, Any] | None]:
    """Each fault class in turn on encrypt, decrypt and auth of an in-process emulator
    (``none_first``: a round without one first); after each round the faults are cleared and
    every token is expired, so the next round authenticates again (the paths that handle a secret)."""
    for fault in ((None,) if none_first else ()) + FAULT_CLASSES:
        for endpoint in ("encrypt", "decrypt", "auth") if fault else ():
            emu.fault(endpoint, **fault)
        yield fault
        emu.clear_faults()
        emu.expire_tokens()


def akeyless_env(url: str, access_id: str, access_key: str, ca_file: str | Path,
                 key: str = KEY, **settings: str) -> dict[str, str]:
    """The plugin's Akeyless settings (an access-key identity; the key travels in the
    environment, as a Secret would, never in argv); ``settings``: more KMS_APPLIANCE_*."""
    return {"AKEYLESS_URL": url, "AKEYLESS_KEY_ENCRYPTION_KEY": "/" + key.lstrip("/"),
            "AKEYLESS_ACCESS_ID": access_id, "AKEYLESS_ACCESS_KEY": access_key,
            "KMS_APPLIANCE_AKEYLESS_CA_FILE": str(ca_file), **NO_CLOUD, **settings}


def identity_env(emu: Emulator, key: str = KEY, url: str | None = None, **settings: str) -> dict[str, str]:
    """``akeyless_env`` for a new access-key identity on an in-process emulator (its key goes
    to the secret ledger); ``url`` reaches the emulator another way (a proxy, a bad name)."""
    ident = emu.add_access_key()
    ledger.secret(ident.access_key)
    return akeyless_env(url or emu.url, ident.access_id, ident.access_key, emu.ca_file, key, **settings)


def record_secrets(emu: Emulator) -> None:
    """Every token an in-process emulator issued and every key version's bytes, into the ledger."""
    with emu.core.lock:
        ledger.secrets(list(emu.core.tokens.tokens))
        for key in emu.core.keys.values():
            ledger.secrets(bytes(v.material) for v in getattr(key, "versions", {}).values())


def _ready_line(log_path: Path, start_no: int) -> dict[str, Any]:
    """The emulator's JSON ready line printed after the ``start_no``-th start."""
    section = log_path.read_text(errors="replace").split("===== start #")[start_no]
    for line in section.splitlines():
        if line.startswith("{") and '"url"' in line:
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise LookupError("no ready line yet")


def control(base: str, action: str, body: dict[str, Any] | None = None, ca: str | None = None,
            timeout: float = CONTROL_TIMEOUT_S) -> Any:
    """POST (or GET when body is None) to the control plane; returns (status, JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}/{action}", data=data, headers={"Content-Type": "application/json"})
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


class EmulatorProcess(ManagedProcess):
    """``python -m akeyless_emulator`` on a fixed loopback port; ``ready`` holds URL, CA
    file and credentials (the access key goes to the secret ledger)."""

    ready: dict[str, Any]
    state_dir: Path  # --state-dir: keys in clear (test material)
    key: str

    def start(self) -> None:
        super().start()
        wait_until(lambda: bool(_ready_line(self.log_path, self.starts)), READY_TIMEOUT_S,
                   self.name, interval_s=0.05, alive=self.check_alive)
        self.ready = _ready_line(self.log_path, self.starts)
        ledger.secret(self.ready["access_key"])

    @property
    def url(self) -> str:
        return str(self.ready["url"])

    @property
    def ca_file(self) -> Path:
        return Path(self.ready["ca_file"])

    def plugin_env(self, **settings: str) -> dict[str, str]:
        """``akeyless_env`` for this emulator's identity and key."""
        r = self.ready
        return akeyless_env(r["url"], r["access_id"], r["access_key"], r["ca_file"], self.key, **settings)

    def control(self, action: str, body: dict[str, Any] | None = None, attempts: int = 1) -> Any:
        """POST to the control plane (rotate-key, fault, clear-faults, expire-tokens, ...) and
        return its answer; an error status raises, a dropped connection (a busy emulator) is
        tried again up to ``attempts`` times."""
        for attempt in range(attempts):
            try:
                status, answer = control(self.ready["control_url"], action, body or {}, self.ready["ca_file"])
            except (OSError, http.client.HTTPException):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2)
                continue
            if status != 200:
                raise RuntimeError(f"emulator control {action}: HTTP {status} {answer}")
            return answer
        return None

    def rotate_key(self) -> None:
        self.control("rotate-key", {"name": self.key})


def start_emulator(workdir: Path, name: str = "akeyless-emulator", key: str = KEY,
                   access_id: str = "p-emulator0001", registry: ProcessRegistry | None = None,
                   world_readable: bool = False, kind: type[E] = EmulatorProcess) -> E:
    """Start an emulator holding ``key`` and the identity ``access_id``; its state and log live
    in ``workdir``. ``world_readable``: the CA may be read by another user (a sandboxed plugin)."""
    state = workdir / f"{name}-state"
    state.mkdir(mode=0o755 if world_readable else 0o700, parents=True)
    argv = [sys.executable, "-m", "akeyless_emulator", "--host", "127.0.0.1",
            "--port", str(free_port()), "--tls", "--state-dir", str(state),
            "--create-key", key, "--access-id", access_id]
    emulator = kind(name=name, argv=argv, log_path=workdir / "logs" / f"{name}.log", cwd=REPO)
    emulator.state_dir, emulator.key = state, "/" + key.lstrip("/")
    if registry is not None:
        registry.add(emulator)
    emulator.start()
    if world_readable:
        emulator.ca_file.chmod(0o644)
    return emulator

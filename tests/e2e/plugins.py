"""KMS plugins the harness can put behind kube-apiserver, behind one interface.

Why pluggable: the harness must prove itself before the project's plugin is
runnable, and later run every scenario against the real plugin (or a frozen
binary, or an operator's release candidate) unchanged. A *launcher* turns
(workdir, provider name) into a running ``KmsPlugin`` whose ``socket_path``
goes into the EncryptionConfiguration; the handle can stop, kill -9, restart
and ask Status over the socket, which is all the scenarios need.

Launchers (pick with ``E2E_KMS_PLUGIN``, comma-separated for several):
- ``appliance`` (default): ``kms-appliance serve --backend local`` with a
  fresh keyring; the command is ``E2E_APPLIANCE_CMD`` (default
  ``<python> -m kms_appliance`` from this checkout; set it to a frozen
  binary's path to test that instead).
- ``fake``: ``fake_kms_plugin.py``, the throwaway reference plugin: when a
  scenario fails with the appliance, running it with ``fake`` tells a plugin
  bug from a harness or apiserver one.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.support.procs import ManagedProcess, ProcessRegistry, free_port, wait_until

from . import protowire as pw

HERE = Path(__file__).resolve().parent
PLUGIN_READY_TIMEOUT_S = 30.0
KEYRING_TIMEOUT_S = 60.0
STATUS_METHOD = "/v2.KeyManagementService/Status"


@dataclass(frozen=True)
class PluginStatus:
    """A decoded KMS v2 StatusResponse."""

    version: str
    healthz: str
    key_id: str


def kms_v2_status(socket_path: Path, timeout_s: float = 3.0) -> PluginStatus:
    """Call Status over the socket the way the apiserver does (authority localhost)."""
    with grpc.insecure_channel(
        f"unix:{socket_path}", options=[("grpc.default_authority", "localhost")]
    ) as channel:
        call = channel.unary_unary(
            STATUS_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        raw: bytes = call(b"", timeout=timeout_s)
    fields = {n: v for n, _, v in pw.iter_fields(raw) if isinstance(v, bytes)}
    return PluginStatus(
        version=fields.get(1, b"").decode(),
        healthz=fields.get(2, b"").decode(),
        key_id=fields.get(3, b"").decode(),
    )


@dataclass
class KmsPlugin:
    """A running plugin: its socket, its process, and how to rotate its key."""

    name: str
    socket_path: Path
    process: ManagedProcess
    rotate_key: Callable[[], None]
    http_port: int | None = None  # the plugin's own health/metrics listener, if any
    api_versions: tuple[str, ...] = ("v2",)  # KMS APIs served on the socket
    backend: ManagedProcess | None = None  # a remote KMS stand-in: stop it for an outage

    def start(self) -> float:
        """Start and wait until Status answers ``ok``; return seconds waited."""
        self.process.start()
        return wait_until(
            lambda: self.status().healthz == "ok",
            PLUGIN_READY_TIMEOUT_S,
            f"KMS plugin {self.name}",
            alive=self.process.check_alive,
        )

    def status(self) -> PluginStatus:
        return kms_v2_status(self.socket_path)

    def stop(self) -> int | None:
        return self.process.stop()

    def kill(self) -> int | None:
        return self.process.kill()

    def restart(self, sig: int = signal.SIGTERM) -> float:
        """Stop with ``sig`` (SIGTERM graceful, SIGKILL crash), then start again."""
        if sig == signal.SIGKILL:
            self.kill()
        else:
            self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Remove the socket's private directory (after the process stopped)."""
        shutil.rmtree(self.socket_path.parent, ignore_errors=True)


Launcher = Callable[[Path, str, ProcessRegistry], KmsPlugin]


def socket_path_for(name: str) -> Path:
    """Short socket path: sun_path is limited to 107 bytes, pytest tmp paths are long.
    ``KmsPlugin.cleanup`` removes the directory."""
    return Path(tempfile.mkdtemp(prefix=f"e2e-kms-{name}-")) / "kms.sock"


def _fake_keyring(path: Path, key_ids: list[str]) -> None:
    keys = {k: secrets.token_hex(32) for k in key_ids}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"current": key_ids[-1], "keys": keys}))
    tmp.replace(path)


def fake_launcher(workdir: Path, name: str, registry: ProcessRegistry) -> KmsPlugin:
    """The throwaway Python plugin in this directory."""
    keyring = workdir / f"{name}-fake-keyring.json"
    _fake_keyring(keyring, ["fake-key-1"])
    socket_path = socket_path_for(name)

    def rotate() -> None:
        doc = json.loads(keyring.read_text())
        new_id = f"fake-key-{len(doc['keys']) + 1}"
        doc["keys"][new_id] = secrets.token_hex(32)
        doc["current"] = new_id
        tmp = keyring.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(keyring)

    process = registry.add(
        ManagedProcess(
            name=f"kms-plugin-{name}",
            argv=[
                sys.executable,
                str(HERE / "fake_kms_plugin.py"),
                f"--socket={socket_path}",
                f"--keyring={keyring}",
            ],
            log_path=workdir / "logs" / f"kms-plugin-{name}.log",
        )
    )
    return KmsPlugin(name, socket_path, process, rotate)


def appliance_command() -> tuple[list[str], Path | None]:
    """The kms-appliance command line prefix and the cwd to run it in.

    Default: this checkout run as a module (cwd = repo root, since the package
    is not necessarily installed in the venv). ``E2E_APPLIANCE_CMD`` names an
    installed command or a frozen binary instead.
    """
    explicit = os.environ.get("E2E_APPLIANCE_CMD")
    if explicit:
        return shlex.split(explicit), None
    return [sys.executable, "-m", "kms_appliance"], HERE.parent.parent


def appliance_launcher(workdir: Path, name: str, registry: ProcessRegistry) -> KmsPlugin:
    """The project's plugin: ``serve --backend local`` on a fresh keyring made
    with its own ``keyring init`` (so a frozen binary is tested whole)."""
    cmd, cwd = appliance_command()
    ring = workdir / f"{name}-keyring.json"

    def keyring(action: str) -> None:
        subprocess.run(
            [*cmd, "keyring", action, str(ring)],
            cwd=cwd,
            check=True,
            capture_output=True,
            timeout=KEYRING_TIMEOUT_S,
        )

    keyring("init")
    socket_path = socket_path_for(name)
    http_port = free_port()
    argv = [
        *cmd, "serve",
        "--socket", str(socket_path),
        "--backend", "local",
        "--keyring", str(ring),
        "--provider-name", name,
        "--http-listen", f"127.0.0.1:{http_port}",
    ]  # fmt: skip
    process = registry.add(
        ManagedProcess(
            name=f"kms-plugin-{name}",
            argv=argv,
            log_path=workdir / "logs" / f"kms-plugin-{name}.log",
            cwd=cwd,
        )
    )
    return KmsPlugin(
        name, socket_path, process, lambda: keyring("rotate"), http_port, api_versions=("v2", "v1")
    )


def akeyless_launcher(workdir: Path, name: str, registry: ProcessRegistry) -> KmsPlugin:
    """The appliance on its Akeyless backend against the emulator (see akeyless_plugin)."""
    from .akeyless_plugin import akeyless_launcher as launch  # lazy: import cycle

    return launch(workdir, name, registry)


LAUNCHERS: dict[str, Launcher] = {
    "fake": fake_launcher,
    "appliance": appliance_launcher,
    "akeyless": akeyless_launcher,
}


DEFAULT_PLUGINS = "appliance"


def selected_launcher_names() -> list[str]:
    """``E2E_KMS_PLUGIN``: one launcher name or a comma-separated list; each KMS
    scenario then runs once per plugin (test ids end in ``[<name>]``)."""
    raw = os.environ.get("E2E_KMS_PLUGIN") or DEFAULT_PLUGINS
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in LAUNCHERS]
    if unknown or not names:
        raise ValueError(f"E2E_KMS_PLUGIN={raw!r}: expected names from {sorted(LAUNCHERS)}")
    return names


def audit_records(plugin: KmsPlugin) -> list[dict[str, object]]:
    """The plugin's JSON audit records (its audit stream is stdout, in the process log)."""
    records = []
    for line in plugin.process.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"schema"' in line:
            records.append(json.loads(line))
    return records

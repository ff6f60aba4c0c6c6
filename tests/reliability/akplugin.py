"""The real plugin process with the Akeyless backend, against the emulator.

Same layout as tests/support/plugin.py (stdout, stderr and the audit file in
the work directory, so the hygiene check can scan them) but the backend is
Akeyless over HTTPS, and the command can be wrapped by the DNS shim.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from akeyless_emulator import Emulator
from tests.reliability import ledger
from tests.support import plugin as pm

KEY = "/k8s-kek"


def ak_env(emu: Emulator, url: str | None = None, **extra: str) -> dict[str, str]:
    """Settings for an access-key identity on ``emu`` (its secrets go to the ledger)."""
    ident = emu.add_access_key()
    ledger.secret(ident.access_key)
    return {"AKEYLESS_URL": url or emu.url, "AKEYLESS_KEY_ENCRYPTION_KEY": KEY,
            "AKEYLESS_ACCESS_ID": ident.access_id, "AKEYLESS_ACCESS_KEY": ident.access_key,
            "KMS_APPLIANCE_AKEYLESS_CA_FILE": emu.ca_file,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9",
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9",
            "GCE_METADATA_HOST": "127.0.0.1:9", **extra}


def record_emulator_secrets(emu: Emulator) -> None:
    """Every token the emulator issued and every key version's bytes."""
    with emu.core.lock:
        ledger.secrets(list(emu.core.tokens.tokens))
        for key in emu.core.keys.values():
            for material in _materials(key):
                ledger.secret(material)


def _materials(key: object) -> list[bytes]:
    versions = getattr(key, "versions", {})
    return [bytes(v.material) for v in versions.values()]


def start(workdir: Path, env: Mapping[str, str], args: Sequence[str] = (),
          dns_flag: Path | None = None, wait: bool = True) -> pm.Plugin:
    """Start ``serve --backend akeyless``; registered with the hygiene ledger."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock, audit = workdir / "run" / "kms.sock", workdir / "audit.log"
    port = pm.free_port()
    (workdir / "none.toml").touch()
    head = [sys.executable, "-m", "tests.reliability.dnsshim", str(dns_flag)] if dns_flag \
        else [sys.executable, "-m", "kms_appliance"]
    cmd = [*head, "serve", "--backend", "akeyless", "--socket", str(sock),
           "--audit-log", str(audit), "--http-listen", f"127.0.0.1:{port}",
           "--config", str(workdir / "none.toml"), "--log-level", "debug", *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KMS_APPLIANCE_", "AKEYLESS_"))}
    full_env.update(env)
    out, err = workdir / "stdout.log", workdir / "stderr.log"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(cmd, cwd=pm.REPO, stdout=o, stderr=e, env=full_env)
    plugin = ledger.plugin(pm.Plugin(workdir, sock, audit, port, proc, out, err))
    if wait:
        try:
            pm.wait_for_socket(sock, proc, timeout=30)
        except Exception:
            plugin.stop(signal.SIGKILL)
            raise
    return plugin

"""The Akeyless backend against the emulator (a loopback HTTPS process).

The emulator's control plane adds latency to its encrypt/decrypt endpoints,
so the plugin can be measured as if Akeyless were 0 or 20 ms away. Returns
None (reported as "not available") while the backend or emulator cannot run.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import servers
from .servers import PY, REPO, Server

KEY = "bench-kek"


@dataclass
class Emulator:
    proc: subprocess.Popen[str]
    ready: dict[str, Any]

    def control(self, action: str, body: dict[str, Any]) -> Any:
        ctx = ssl.create_default_context(cafile=self.ready["ca_file"])
        req = urllib.request.Request(f"{self.ready['control_url']}/{action}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def latency(self, seconds: float) -> None:
        """Every encrypt/decrypt/describe-item call waits ``seconds`` before answering.

        describe-item too: a direct-mode encrypt is followed by one (the
        version check), so "Akeyless N ms away" must delay it as well.
        """
        self.control("clear-faults", {})
        if seconds > 0:
            for endpoint in ("encrypt", "decrypt", "describe-item"):
                self.control("fault", {"endpoint": endpoint, "kind": "latency",
                                       "delay": seconds})

    def outage(self) -> None:
        """Every endpoint answers 503, as an unreachable Akeyless behind a gateway would."""
        self.control("clear-faults", {})
        self.control("fault", {"endpoint": "*", "kind": "status", "status": 503})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_emulator() -> Emulator | None:
    proc = subprocess.Popen([PY, "-m", "akeyless_emulator", "--host", "127.0.0.1", "--port", "0",
                             "--create-key", KEY], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.kill()
        return None
    return Emulator(proc, json.loads(line))


def start_plugin(emu: Emulator, name: str, home: Path | None = None,
                 settings: dict[str, str] | None = None) -> Server:
    """The appliance with ``--backend akeyless`` on the emulator (access-key auth);
    ``settings``: extra KMS_APPLIANCE_* environment (e.g. the Akeyless mode)."""
    home = home or servers.new_home(name)
    sock_dir = home / "sock"
    sock_dir.mkdir(mode=0o700, exist_ok=True)
    (home / "none.toml").touch()
    sock = sock_dir / "kms.sock"
    r = emu.ready
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KMS_APPLIANCE_", "AKEYLESS_"))}
    env.update({"AKEYLESS_URL": r["url"], "AKEYLESS_KEY_ENCRYPTION_KEY": "/" + KEY,
                "AKEYLESS_ACCESS_ID": r["access_id"], "AKEYLESS_ACCESS_KEY": r["access_key"],
                "KMS_APPLIANCE_AKEYLESS_CA_FILE": r["ca_file"],
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9",
                "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9",
                "GCE_METADATA_HOST": "127.0.0.1:9", **(settings or {})})
    argv = [PY, "-m", "kms_appliance", "serve", "--backend", "akeyless", "--socket", str(sock),
            "--http-listen", "", "--audit-log", str(home / "audit.log"),
            "--config", str(home / "none.toml")]
    return servers.spawn(name, home, argv, sock, env=env)

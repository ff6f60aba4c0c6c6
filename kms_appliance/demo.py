"""``kms-appliance demo``: the plugin on a fresh local keyring, with a real round trip.

Shows an operator in one command what kube-apiserver would see: Status, a
v2 Encrypt of a 32-byte seed and its Decrypt, a v1 round trip, and where the
socket, metrics and audit log are. Keeps serving until Ctrl-C.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import config, logs
from .app import App
from .backends import keyring
from .client import KmsClient


def run(workdir: Path | None, http_listen: str, once: bool) -> int:
    root = workdir or Path(tempfile.mkdtemp(prefix="kms-appliance-demo-"))
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    ring = root / "keyring.json"
    if not ring.exists():
        keyring.init(ring)
    flags = {"server.backend": "local", "local.keyring": str(ring),
             "server.socket": str(root / "run" / "kms.sock"),
             "observability.http_listen": http_listen,
             "observability.audit_log": str(root / "audit.log")}
    cfg = config.load(flags=flags, env={}, config_file=None)
    logs.setup("info", "text")
    app = App(cfg)
    if once:
        app.start()
        try:
            _show(app, root)
        finally:
            app.stop()
        return 0

    def ready() -> None:
        _show(app, root)
        print("\nserving until Ctrl-C ...", flush=True)

    app.serve(ready=ready)
    return 0


def _show(app: App, root: Path) -> None:
    client = KmsClient(app.server.socket_path)
    try:
        status = client.status()
        seed = os.urandom(32)
        enc = client.encrypt(seed, uid="demo-encrypt")
        ok_v2 = client.decrypt(enc, uid="demo-decrypt") == seed
        dek = os.urandom(32)
        ok_v1 = client.v1_roundtrip(dek) == dek
    finally:
        client.close()
    print(f"Status:   version={status.version} healthz={status.healthz} key_id={status.key_id}")
    print(f"Encrypt:  32-byte seed -> {len(enc.ciphertext)}-byte ciphertext under {enc.key_id}")
    print(f"Decrypt:  round trip {'OK' if ok_v2 else 'FAILED'}; KMS v1 round trip "
          f"{'OK' if ok_v1 else 'FAILED'}")
    addr = app.http_address
    print(f"\nsocket:    {app.server.socket_path}")
    print(f"metrics:   http://{addr[0]}:{addr[1]}/metrics" if addr else "metrics:   disabled")
    print(f"audit log: {root / 'audit.log'}")
    print(f"keyring:   {root / 'keyring.json'} (rotate: kms-appliance keyring rotate "
          f"{root / 'keyring.json'}, then kill -HUP {os.getpid()})")

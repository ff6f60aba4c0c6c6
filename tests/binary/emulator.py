"""Start the Akeyless API emulator (``python -m akeyless_emulator``) for binary tests and bench.

It is test-only code and runs from the source tree with the dev venv's
Python; only the plugin under test is the frozen binary.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.plugin import REPO

KEY = "kms/kek"
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Emulator:
    url: str
    ca_file: Path
    access_id: str
    access_key: str
    key: str


@contextmanager
def running(python: str = sys.executable) -> Iterator[Emulator]:
    """An HTTPS emulator on 127.0.0.1 with one AES key and access-key credentials."""
    state = Path(tempfile.mkdtemp(prefix="akl-emu-"))
    state.chmod(0o755)
    proc = subprocess.Popen([python, "-m", "akeyless_emulator", "--port", "0", "--tls",
                             "--state-dir", str(state), "--create-key", KEY],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready = _ready_line(proc)
        ca = Path(ready["ca_file"])
        ca.chmod(0o644)
        yield Emulator(ready["url"], ca, ready["access_id"], ready["access_key"], "/" + KEY)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        subprocess.run(["rm", "-rf", str(state)], check=False)


def _ready_line(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
    line = proc.stdout.readline() if readable else b""
    if not line:
        proc.kill()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"emulator did not become ready: {err[-2000:]}")
    return dict(json.loads(line))


def serve_args(emu: Emulator, ca_path: str) -> tuple[list[str], dict[str, str]]:
    """Flags and environment for ``serve --backend akeyless`` against *emu*.

    The access key travels in the environment (as a Secret would), never argv.
    """
    args = ["--backend", "akeyless", "--akeyless-url", emu.url, "--key-name", emu.key,
            "--access-id", emu.access_id, "--access-type", "access_key"]
    env = {"AKEYLESS_ACCESS_KEY": emu.access_key, "KMS_APPLIANCE_AKEYLESS_CA_FILE": ca_path}
    return args, env

"""Standalone emulator: `python -m akeyless_emulator --port 0 --tls ...`.

Why: the e2e harness and shell scripts start it as a process and read one
JSON line from stdout (URL, CA file, credentials) to know where it listens;
SIGTERM or SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from akeyless_emulator.emulator import Emulator


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="python -m akeyless_emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback only, please)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    p.add_argument("--tls", action=argparse.BooleanOptionalAction, default=True, help="serve HTTPS (default)")
    p.add_argument("--state-dir", default=None, help="CA and state.json live here (temp dir if omitted)")
    p.add_argument("--create-key", action="append", default=[], metavar="NAME", help="make an AES256GCM key")
    p.add_argument("--access-id", default=None, help="register access_key credentials with this id")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[Emulator, dict[str, Any]]:
    """Create and start the emulator; returns it and the ready line's content."""
    emu = Emulator(tls=args.tls, host=args.host, port=args.port, state_dir=args.state_dir)
    for name in args.create_key:
        if "/" + name.lstrip("/") not in emu.core.keys:
            emu.create_key(name)
    ident = emu.core.identities.get(args.access_id) if args.access_id else None
    if ident is None:
        ident = emu.add_access_key(args.access_id)
    emu.start()
    ready: dict[str, Any] = {"url": emu.url, "control_url": emu.control_url,
                             "ca_file": emu.ca_file if args.tls else None,
                             "access_id": ident.access_id, "access_key": ident.access_key}
    return emu, ready


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT."""
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emu, ready = build(args)
    try:
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        emu.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

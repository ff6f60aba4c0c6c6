"""Operational logging (stderr), separate from the audit stream.

The ``akeyless``/``urllib3`` loggers are pinned at WARNING whatever the
level: at DEBUG the SDK writes whole request and response bodies (access
keys, tokens, decrypted DEKs).
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

_SILENCED = ("akeyless", "akeyless.rest", "urllib3", "grpc")


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _SILENCED:
        logging.getLogger(name).setLevel(logging.WARNING)

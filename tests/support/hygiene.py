"""A fast scan for many secrets in large outputs (raw, hex, base64 forms).

tests/support/secrets_scan.find checks each form with ``in``: fine for a few
secrets, too slow for thousands of secrets over megabytes of audit log. Here
every form (same forms as secrets_scan.forms) is indexed by its first 8
bytes, and the haystack is walked once; candidates are confirmed in full.
"""

from __future__ import annotations

from collections.abc import Iterable

from tests.support import secrets_scan

ANCHOR = 8


def index(secrets: Iterable[bytes]) -> dict[bytes, list[tuple[bytes, int]]]:
    anchors: dict[bytes, list[tuple[bytes, int]]] = {}
    for i, secret in enumerate(secrets):
        for form in secrets_scan.forms(secret):
            anchors.setdefault(form[:ANCHOR], []).append((form, i))
    return anchors


def scan(haystack: bytes, anchors: dict[bytes, list[tuple[bytes, int]]]) -> set[int]:
    """Indexes of the secrets found (any form)."""
    found: set[int] = set()
    get = anchors.get
    for pos in range(len(haystack) - ANCHOR + 1):
        cands = get(haystack[pos : pos + ANCHOR])
        if cands:
            for form, i in cands:
                if haystack.startswith(form, pos):
                    found.add(i)
    return found

"""Find secrets in output: raw, hex (both cases) and base64 (std and url-safe).

``find`` checks each form with ``in``: fine for a few secrets, too slow for thousands of secrets
over megabytes of audit log. For those, ``index`` keys every form by its first ANCHOR bytes and
``scan`` walks the haystack once, confirming candidates in full.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

ANCHOR = 8


def forms(secret: bytes) -> list[bytes]:
    out = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        full = enc(secret)
        out.append(full.rstrip(b"="))
        # Base64 of the secret at a non-aligned offset inside a larger buffer still
        # contains the encoding of most of its bytes; check the aligned middle too.
        for shift in (1, 2):
            inner = enc(secret[shift:])[4: -4]
            if len(inner) >= 16:
                out.append(inner)
    return [f for f in out if len(f) >= 8]


def find(haystack: bytes, secrets: Iterable[bytes]) -> list[str]:
    """Descriptions of every secret form found (never the secret itself)."""
    hits = []
    for i, secret in enumerate(secrets):
        for j, form in enumerate(forms(secret)):
            if form in haystack:
                hits.append(f"secret #{i} (form {j}, {len(secret)} bytes)")
    return hits


def index(secrets: Iterable[bytes]) -> dict[bytes, list[tuple[bytes, int]]]:
    anchors: dict[bytes, list[tuple[bytes, int]]] = {}
    for i, secret in enumerate(secrets):
        for form in forms(secret):
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

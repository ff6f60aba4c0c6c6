"""The properties every handler input must satisfy (tests/fuzz/test_fuzz_volume.py runs them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from kms_appliance import service
from kms_appliance.backends import keyring
from kms_appliance.backends.local import LocalBackend
from kms_appliance.kms.v1 import V1Servicer
from kms_appliance.kms.v2 import V2Servicer
from kms_appliance.kms.validate import MAX_UID, MAX_V1_PLAINTEXT, MAX_V2_PLAINTEXT
from kms_appliance.metrics import Metrics
from tests.fuzz.harness import Tally, no_leak
from tests.support import inproc, ledger
from tests.support.fakes import FakeContext

OK = grpc.StatusCode.OK
ALLOWED_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}


@dataclass
class World:
    """Real servicers over a real 3-version local keyring, and what they sealed."""

    backend: LocalBackend
    v2: V2Servicer
    v1: V1Servicer
    audit: inproc.CapturingAudit
    known: dict[bytes, bytes]   # valid ciphertext -> plaintext
    key_ids: list[str]

    def close(self) -> None:
        self.backend.close()


def make_world(directory: Path) -> World:
    backend = inproc.local_backend(directory, versions=3)
    audit = inproc.CapturingAudit()
    svc = service.servicers(backend, Metrics(), audit)
    known: dict[bytes, bytes] = {}
    for size in (1, 16, 32, 32, 64, 512, 4096):
        pt = os.urandom(size)
        known[backend.wrap(pt).ciphertext] = pt
    ledger.secrets(known.values())
    ring = keyring.load(directory / "keyring.json")
    key_ids = sorted(ring.key_id(e.version) for e in ring.entries)
    return World(backend, svc.v2, svc.v1, audit, known, key_ids)


def _public(req: Any) -> tuple[str, ...]:
    """The request fields the audit record logs on purpose."""
    return (getattr(req, "uid", ""), getattr(req, "key_id", ""))


def _error(w: World, ctx: FakeContext, before: int, req: Any, *inputs: bytes) -> None:
    assert ctx.code in ALLOWED_ERRORS, f"unexpected code {ctx.code.name} ({ctx.details})"
    assert ctx.details and ctx.details != "internal error"
    no_leak(ctx.details, *inputs, public=_public(req))
    _audited(w, ctx, before, req, *inputs)


def _audited(w: World, ctx: FakeContext, before: int, req: Any, *inputs: bytes) -> None:
    assert w.audit.count == before + 1, "every call leaves exactly one audit record"
    assert w.audit.last["code"] == ctx.code.name
    no_leak(repr(w.audit.last), *inputs, public=_public(req))


def _accepted_iff_valid(w: World, t: Tally, ctx: FakeContext, before: int, req: Any, pt: bytes,
                       valid: bool) -> bool:
    """An encrypt is answered OK exactly when the request is valid, and audited either way;
    True if it was accepted (the caller then checks the ciphertext)."""
    t.count(ctx.code.name)
    if ctx.code != OK:
        assert not valid, f"valid request refused: {ctx.code.name} {ctx.details}"
        _error(w, ctx, before, req, pt)
        return False
    assert valid, "an invalid request was accepted"
    _audited(w, ctx, before, req, pt)
    return True


def _decrypt_answered(w: World, t: Tally, ctx: FakeContext, before: int, req: Any, ct: bytes,
                      plain: bytes) -> bool:
    """A decrypt answers OK only with the plaintext of a ciphertext this run made, and nothing
    when it refuses; audited either way. True if it was answered OK (v1 checks its version)."""
    t.count(ctx.code.name)
    if ctx.code == OK:
        assert ct in w.known, "a ciphertext nobody made decrypted successfully"
        assert plain == w.known[ct], "WRONG plaintext"
        _audited(w, ctx, before, req, w.known[ct])
        return True
    assert plain == b"", "a refused decrypt returned plaintext"
    _error(w, ctx, before, req, ct, *([w.known[ct]] if ct in w.known else []))
    return False


def v2_status(w: World, t: Tally, req: Any) -> None:
    ctx = FakeContext()
    resp = t.timed(lambda: w.v2.Status(req, ctx))
    assert ctx.code == OK
    assert (resp.version, resp.healthz, resp.key_id) == ("v2", "ok", w.backend.status().key_id)
    t.count("OK")


def v1_version(w: World, t: Tally, req: Any) -> None:
    ctx = FakeContext()
    resp = t.timed(lambda: w.v1.Version(req, ctx))
    assert ctx.code == OK and resp.version == "v1beta1" and resp.runtime_name
    t.count("OK")


def v2_encrypt(w: World, t: Tally, req: Any) -> None:
    ctx, before = FakeContext(), w.audit.count
    resp = t.timed(lambda: w.v2.Encrypt(req, ctx))
    pt = bytes(req.plaintext)
    if not _accepted_iff_valid(w, t, ctx, before, req, pt,
                               1 <= len(pt) <= MAX_V2_PLAINTEXT and len(req.uid) <= MAX_UID):
        return
    assert resp.key_id == w.backend.status().key_id
    assert w.backend.unwrap(resp.ciphertext, resp.key_id, {}).plaintext == pt
    assert len(pt) < 8 or pt not in resp.ciphertext


def v2_decrypt(w: World, t: Tally, req: Any) -> None:
    ctx, before = FakeContext(), w.audit.count
    resp = t.timed(lambda: w.v2.Decrypt(req, ctx))
    _decrypt_answered(w, t, ctx, before, req, bytes(req.ciphertext), bytes(resp.plaintext))


def v1_encrypt(w: World, t: Tally, req: Any) -> None:
    ctx, before = FakeContext(), w.audit.count
    resp = t.timed(lambda: w.v1.Encrypt(req, ctx))
    pt = bytes(req.plain)
    if not _accepted_iff_valid(w, t, ctx, before, req, pt, req.version == "v1beta1" and 1 <= len(pt) <= MAX_V1_PLAINTEXT):
        return
    assert w.backend.unwrap(resp.cipher, None, {}).plaintext == pt


def v1_decrypt(w: World, t: Tally, req: Any) -> None:
    ctx, before = FakeContext(), w.audit.count
    resp = t.timed(lambda: w.v1.Decrypt(req, ctx))
    if _decrypt_answered(w, t, ctx, before, req, bytes(req.cipher), bytes(resp.plain)):
        assert req.version == "v1beta1"

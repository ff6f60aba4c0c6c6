"""100,000 inputs per KMS v2 and v1beta1 handler, in-process: requests of mutated fields, or mutated
request bytes decoded as grpc decodes them, checked against props.py."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.message import DecodeError, Message

from kms_appliance.kms import v1beta1_pb2 as pb1
from kms_appliance.kms import v2_pb2 as pb2
from tests.fuzz import engine, props
from tests.fuzz.harness import EXAMPLES, Tally


class Fields:
    """Mutated field values, drawn from corpora of valid and edge values."""

    def __init__(self, w: props.World, seed: int) -> None:
        self.rng = random.Random(seed)
        cts = sorted(w.known)
        self.ct = engine.Mutator([*cts, b"\x8aKA\x01\x01", b"\x8aKA\x01\x02" + b"\0" * 40], seed)
        self.key_id = engine.Mutator([k.encode() for k in w.key_ids] + [b"x" * 1024], seed + 1, 1100)
        self.plain = engine.Mutator([b"\0" * 32, b"A" * 512, b"B" * 4096, b"C"], seed + 2, 4200)
        self.text = engine.Mutator([b"v1beta1", b"uid-1", b"a" * 256, b"\xc3\xa9" * 10], seed + 3, 300)
        self.ann = engine.Mutator([b"version.kms-appliance.local", b"a.io", b"x" * 70 + b".com"], seed + 4)
        self.cts = cts
        self.key_ids = w.key_ids

    def s(self, m: engine.Mutator) -> str:
        return m.next().decode("utf-8", "replace")

    def ciphertext(self) -> bytes:
        return self.rng.choice(self.cts) if self.rng.random() < 0.1 else self.ct.next()

    def annotations(self) -> dict[str, bytes]:
        return {self.s(self.ann): self.plain.next()[:64] for _ in range(self.rng.randrange(4))}


def _volume(name: str, w: props.World, build: Callable[[Fields], Message], cls: type[Message],
            check: Callable[[props.World, Tally, Any], None], seed: int) -> None:
    fields = Fields(w, seed)
    wire = engine.Mutator([build(fields).SerializeToString() for _ in range(64)], seed + 9, 8192)
    t = Tally(name)

    def make(i: int) -> bytes:
        if i % 4 == 3:
            return wire.next()
        return build(fields).SerializeToString()

    def run(data: bytes) -> None:
        try:
            req = cls.FromString(data)
        except DecodeError:
            return  # grpc refuses these before any handler runs
        check(w, t, req)

    engine.campaign(name, EXAMPLES + EXAMPLES // 3, make, run)
    t.report(EXAMPLES)


# name: (request builder, request type, property check, seed)
CAMPAIGNS: dict[str, tuple[Callable[[Fields], Message], type[Message], Callable[[props.World, Tally, Any], None], int]] = {
    "v2.Status": (lambda f: pb2.StatusRequest(), pb2.StatusRequest, props.v2_status, 11),
    "v1beta1.Version": (lambda f: pb1.VersionRequest(version=f.s(f.text)), pb1.VersionRequest, props.v1_version, 12),
    "v2.Encrypt": (lambda f: pb2.EncryptRequest(plaintext=f.plain.next()[:600], uid=f.s(f.text)),
                   pb2.EncryptRequest, props.v2_encrypt, 13),
    "v2.Decrypt": (lambda f: pb2.DecryptRequest(ciphertext=f.ciphertext(), key_id=f.s(f.key_id),
                                                annotations=f.annotations(), uid=f.s(f.text)),
                   pb2.DecryptRequest, props.v2_decrypt, 14),
    # most mutated key_ids fail early; this campaign pairs ciphertexts with real key_ids
    "v2.Decrypt (real key_ids)": (lambda f: pb2.DecryptRequest(ciphertext=f.ciphertext(),
                                                                key_id=f.rng.choice(f.key_ids)),
                                  pb2.DecryptRequest, props.v2_decrypt, 15),
    "v1beta1.Encrypt": (lambda f: pb1.EncryptRequest(version="v1beta1" if f.rng.random() < 0.8 else f.s(f.text),
                                                     plain=f.plain.next()),
                        pb1.EncryptRequest, props.v1_encrypt, 16),
    "v1beta1.Decrypt": (lambda f: pb1.DecryptRequest(version="v1beta1" if f.rng.random() < 0.8 else f.s(f.text),
                                                     cipher=f.ciphertext()),
                        pb1.DecryptRequest, props.v1_decrypt, 17),
}


@pytest.mark.parametrize("name", list(CAMPAIGNS))
def test_handler_campaign(world: props.World, name: str) -> None:
    _volume(name, world, *CAMPAIGNS[name])

"""Hypothesis properties of both services' handlers (structured inputs, shrinking).

KMS v2 Status/Encrypt/Decrypt and v1beta1 Version/Encrypt/Decrypt, on the
real servicers over a real keyring. Inputs: near-valid structured requests,
mutations of real ciphertexts, and arbitrary bytes decoded as the request
the way grpc would. Properties (tests/fuzz/props.py): nothing escapes the
handler, never INTERNAL, an OK Decrypt returns exactly the plaintext sealed
(never another), errors and audit records never echo inputs, one audit
record per call, no input slower than 1 s. Volume (100,000 inputs per
target) is tests/fuzz/test_fuzz_volume.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from kms_appliance.kms import v1beta1_pb2 as pb1
from kms_appliance.kms import v2_pb2 as pb2
from tests.fuzz import props
from tests.fuzz.harness import Tally, fuzz_settings

EXAMPLES = int(os.environ.get("KMS_APPLIANCE_HYPOTHESIS_EXAMPLES", "300"))


def _ciphertexts(w: props.World) -> st.SearchStrategy[bytes]:
    valid = st.sampled_from(sorted(w.known))

    def mutate(data: tuple[bytes, int, int, bytes]) -> bytes:
        ct, pos, flip, tail = data
        b = bytearray(ct)
        i = pos % len(b)
        mode = flip % 4
        if mode == 0:
            b[i] ^= (flip >> 2) % 255 + 1
        elif mode == 1:
            del b[i:]
        elif mode == 2:
            b[i:i] = tail
        else:
            b = b[:i] + tail + b[i + len(tail):]
        return bytes(b)

    mutated = st.tuples(valid, st.integers(0, 5000), st.integers(0, 1023),
                        st.binary(min_size=0, max_size=8)).map(mutate)
    header = st.binary(min_size=0, max_size=40).map(lambda rest: b"\x8aKA\x01" + rest)
    return st.one_of(valid, mutated, header, st.binary(min_size=0, max_size=1100))


def _wire(cls: Any) -> st.SearchStrategy[Any]:
    def parse(raw: bytes) -> Any:
        try:
            return cls.FromString(raw)
        except DecodeError:
            return None
    return st.binary(min_size=0, max_size=300).map(parse).filter(lambda m: m is not None)


def _run(name: str, strategy: st.SearchStrategy[Any],
         check: Callable[[props.World, Tally, Any], None], w: props.World) -> None:
    t = Tally(f"hypothesis {name}")

    @fuzz_settings(EXAMPLES)
    @given(strategy)
    def run(req: Any) -> None:
        check(w, t, req)

    run()
    t.report(EXAMPLES)


def test_v2_status(world: props.World) -> None:
    _run("v2.Status", _wire(pb2.StatusRequest), props.v2_status, world)


def test_v1_version(world: props.World) -> None:
    strategy = st.one_of(_wire(pb1.VersionRequest),
                         st.text(max_size=40).map(lambda v: pb1.VersionRequest(version=v)))
    _run("v1beta1.Version", strategy, props.v1_version, world)


def test_v2_encrypt(world: props.World) -> None:
    structured = st.builds(pb2.EncryptRequest,
                           plaintext=st.one_of(st.binary(min_size=0, max_size=40),
                                               st.binary(min_size=500, max_size=530)),
                           uid=st.one_of(st.text(max_size=40), st.text(min_size=250, max_size=270)))
    _run("v2.Encrypt", st.one_of(structured, _wire(pb2.EncryptRequest)), props.v2_encrypt, world)


def test_v2_decrypt(world: props.World) -> None:
    fqdn = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9-]{1,10}){0,2}\.[a-z]{2,5}", fullmatch=True)
    annotations = st.dictionaries(st.one_of(fqdn, st.text(max_size=20)),
                                  st.binary(min_size=0, max_size=64), max_size=3)
    structured = st.builds(pb2.DecryptRequest, ciphertext=_ciphertexts(world),
                           key_id=st.one_of(st.sampled_from(world.key_ids), st.text(max_size=30),
                                            st.text(min_size=1020, max_size=1030)),
                           annotations=annotations, uid=st.text(max_size=30))
    _run("v2.Decrypt", st.one_of(structured, _wire(pb2.DecryptRequest)), props.v2_decrypt, world)


def test_v1_encrypt(world: props.World) -> None:
    structured = st.builds(pb1.EncryptRequest,
                           version=st.one_of(st.just("v1beta1"), st.text(max_size=10)),
                           plain=st.one_of(st.binary(min_size=0, max_size=64),
                                           st.binary(min_size=4090, max_size=4100)))
    _run("v1beta1.Encrypt", st.one_of(structured, _wire(pb1.EncryptRequest)), props.v1_encrypt, world)


def test_v1_decrypt(world: props.World) -> None:
    structured = st.builds(pb1.DecryptRequest,
                           version=st.one_of(st.just("v1beta1"), st.text(max_size=10)),
                           cipher=_ciphertexts(world))
    _run("v1beta1.Decrypt", st.one_of(structured, _wire(pb1.DecryptRequest)), props.v1_decrypt, world)

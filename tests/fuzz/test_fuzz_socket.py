"""Raw request bytes to every method of the real plugin process: fewer inputs than the in-process
campaigns, but what they cannot reach (grpc's own deserialisation and size limits, the process
surviving, the Akeyless header parsed by the real backend). INTERNAL is allowed only as grpc's
refusal of bytes that are not the request message."""

from __future__ import annotations

import os
import random
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError, Message

from akeyless_emulator import Emulator
from kms_appliance.kms import v1beta1_pb2 as pb1
from kms_appliance.kms import v2_pb2 as pb2
from tests.fuzz import engine
from tests.fuzz.harness import Tally
from tests.support import attacks, ledger
from tests.support import plugin as pm
from tests.support.emulator import KEY, identity_env, record_secrets
from tests.support.kmsclient import Client

PER_METHOD = int(os.environ.get("KMS_APPLIANCE_SOCKET_FUZZ", "1500"))
GRPC_DECODE_REFUSAL = "Exception deserializing request!"
METHODS: dict[str, tuple[type[Message], type[Message]]] = {
    "/v2.KeyManagementService/Status": (pb2.StatusRequest, pb2.StatusResponse),
    "/v2.KeyManagementService/Encrypt": (pb2.EncryptRequest, pb2.EncryptResponse),
    "/v2.KeyManagementService/Decrypt": (pb2.DecryptRequest, pb2.DecryptResponse),
    "/v1beta1.KeyManagementService/Version": (pb1.VersionRequest, pb1.VersionResponse),
    "/v1beta1.KeyManagementService/Encrypt": (pb1.EncryptRequest, pb1.EncryptResponse),
    "/v1beta1.KeyManagementService/Decrypt": (pb1.DecryptRequest, pb1.DecryptResponse),
}


def _corpus(c: Client, sealed: dict[bytes, bytes]) -> list[bytes]:
    out = [b"", pb2.StatusRequest().SerializeToString(),
           pb1.VersionRequest(version="v1beta1").SerializeToString()]
    for size in (1, 32, 512):
        pt = os.urandom(size)
        ledger.secret(pt)
        enc = c.encrypt(pt)
        sealed[bytes(enc.ciphertext)] = pt
        out.append(pb2.EncryptRequest(plaintext=pt, uid="u").SerializeToString())
        out.append(pb2.DecryptRequest(ciphertext=enc.ciphertext, key_id=enc.key_id, uid="u",
                                      annotations=dict(enc.annotations)).SerializeToString())
        v1 = c.v1_encrypt(pt)
        sealed[v1] = pt
        out.append(pb1.EncryptRequest(version="v1beta1", plain=pt).SerializeToString())
        out.append(pb1.DecryptRequest(version="v1beta1", cipher=v1).SerializeToString())
    return out


class Inputs:
    """Half raw mutations of request bytes, half requests of the method's type with mutated fields."""

    def __init__(self, corpus: list[bytes], req_cls: type[Message], seed: int) -> None:
        self.raw = engine.Mutator(corpus, seed, 70_000)
        self.req_cls = req_cls
        self.typed = []
        for item in corpus:
            try:
                self.typed.append(req_cls.FromString(item))
            except DecodeError:
                continue
        values = [b"v1beta1", b"uid-1"]
        for msg in self.typed:
            for _fd, value in msg.ListFields():
                if isinstance(value, bytes | str):
                    values.append(value if isinstance(value, bytes) else value.encode())
        self.field = engine.Mutator(values, seed + 1, 2048)
        self.rng = random.Random(seed)

    def next(self, i: int) -> bytes:
        if i % 2 or not self.typed:
            return self.raw.next()
        msg = self.req_cls()
        msg.CopyFrom(self.rng.choice(self.typed))
        for fd in msg.DESCRIPTOR.fields:
            if fd.message_type is not None or self.rng.random() < 0.4:
                continue
            value = self.field.next()
            if fd.type == fd.TYPE_STRING:
                setattr(msg, fd.name, value.decode("utf-8", "replace"))
            elif fd.type == fd.TYPE_BYTES:
                setattr(msg, fd.name, value)
        return msg.SerializeToString()


def _campaign(p: pm.Plugin, name: str, sealed: dict[bytes, bytes], corpus: list[bytes],
              methods: dict[str, tuple[type[Message], type[Message]]], per_method: int) -> None:
    with attacks.channel(p.socket) as channel:
        for n, (method, (req_cls, resp_cls)) in enumerate(methods.items()):
            call = channel.unary_unary(method)  # raw bytes in, raw bytes out
            t = Tally(f"socket {name} {method}")
            inputs = Inputs(corpus, req_cls, engine.SEED + 100 * n)

            def check(data: bytes, call: grpc.UnaryUnaryMultiCallable = call,
                      resp_cls: type[Message] = resp_cls, t: Tally = t) -> None:
                try:
                    raw = t.timed(lambda: call(data, timeout=10))
                    t.count("OK")
                    resp = resp_cls.FromString(raw)
                    plain = getattr(resp, "plaintext", b"") or getattr(resp, "plain", b"")
                    if plain:
                        assert plain in sealed.values(), "a Decrypt returned a plaintext nobody sealed"
                except grpc.RpcError as exc:
                    code, details = exc.code(), exc.details() or ""
                    ledger.text(details)
                    t.count(code.name)
                    if code == grpc.StatusCode.INTERNAL:
                        assert details == GRPC_DECODE_REFUSAL, f"INTERNAL with detail {details!r}"
                    assert code != grpc.StatusCode.UNKNOWN, f"a handler raised: {details!r}"

            engine.campaign(t.target, per_method, inputs.next, check)
            t.report(per_method)
            assert p.proc.poll() is None, "the plugin died"
    with Client(p.socket) as c:
        assert c.status().healthz == "ok"


def test_socket_fuzz_local(tmp_path: Path) -> None:
    sealed: dict[bytes, bytes] = {}
    with pm.running(tmp_path / "sock-fuzz") as p:
        with Client(p.socket) as c:
            corpus = _corpus(c, sealed)
        corpus.append(b"\x0a" + b"\xff" * 9 + b"\x01")  # a varint length that overflows
        corpus.append(os.urandom(66_000))                 # above grpc.max_receive_message_length
        _campaign(p, "local", sealed, corpus, METHODS, PER_METHOD)


def test_socket_fuzz_akeyless_header(tmp_path: Path) -> None:
    """The Akeyless ciphertext header (version, length, opaque blob) parsed by the real backend."""
    sealed: dict[bytes, bytes] = {}
    with Emulator(tls=True) as emu:
        emu.create_key(KEY)
        with pm.running(tmp_path / "ak", ["--log-level", "debug"], env=identity_env(emu), akeyless=True) as p:
            with Client(p.socket) as c:
                corpus = _corpus(c, sealed)
            decrypts = {k: v for k, v in METHODS.items() if k.endswith("Decrypt")}
            _campaign(p, "akeyless", sealed, corpus, decrypts, max(200, PER_METHOD // 3))
        record_secrets(emu)

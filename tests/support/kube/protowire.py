"""A minimal protobuf wire-format codec for the e2e harness.

Why hand-written: the harness must read what kube-apiserver stored in etcd
(an ``EncryptedObject``) and speak the KMS v2 gRPC messages to the apiserver
from a throwaway plugin, without depending on the project's generated code
(which is the thing under test). Only the wire types those messages use are
supported: varint (0), 64-bit (1, skipped), length-delimited (2), 32-bit (5,
skipped).

It imports nothing of the project, so ``fake_kms_plugin`` stays independent of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VARINT = 0
I64 = 1
LEN = 2
I32 = 5


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; return (value, next position)."""
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise WireError("varint longer than 10 bytes")


def iter_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split a message into (field number, wire type, value) triples, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
            out.append((number, wire_type, value))
        elif wire_type == LEN:
            length, pos = read_varint(buf, pos)
            if pos + length > len(buf):
                raise WireError("truncated length-delimited field")
            out.append((number, wire_type, buf[pos : pos + length]))
            pos += length
        elif wire_type in (I64, I32):
            size = 8 if wire_type == I64 else 4
            if pos + size > len(buf):
                raise WireError("truncated fixed-width field")
            out.append((number, wire_type, buf[pos : pos + size]))
            pos += size
        else:
            raise WireError(f"unsupported wire type {wire_type}")
    return out


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer as a base-128 varint."""
    if value < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_bytes_field(number: int, value: bytes) -> bytes:
    """Encode a length-delimited field (bytes, string or sub-message)."""
    return encode_varint(number << 3 | LEN) + encode_varint(len(value)) + value


def encode_map_entry(number: int, key: str, value: bytes) -> bytes:
    """Encode one entry of a ``map<string, bytes>`` field."""
    entry = encode_bytes_field(1, key.encode()) + encode_bytes_field(2, value)
    return encode_bytes_field(number, entry)


def decode_map_entry(entry: bytes) -> tuple[str, bytes]:
    """Decode one ``map<string, bytes>`` entry (key=1, value=2)."""
    key, value = "", b""
    for number, _, raw in iter_fields(entry):
        if number == 1 and isinstance(raw, bytes):
            key = raw.decode()
        elif number == 2 and isinstance(raw, bytes):
            value = raw
    return key, value


@dataclass(frozen=True)
class EncryptedObject:
    """What kube-apiserver stores after ``k8s:enc:kms:v2:<name>:`` (KMS v2).

    Field numbers from k8s.io/apiserver
    ``pkg/storage/value/encrypt/envelope/kmsv2/v2/api.proto``.
    """

    encrypted_data: bytes = b""
    key_id: str = ""
    encrypted_dek_source: bytes = b""
    annotations: dict[str, bytes] = field(default_factory=dict)
    encrypted_dek_source_type: int = 0


def parse_encrypted_object(buf: bytes) -> EncryptedObject:
    """Parse an EncryptedObject; unknown fields are an error (the schema is fixed)."""
    data, key_id, dek = b"", "", b""
    annotations: dict[str, bytes] = {}
    dek_type = 0
    for number, wire_type, raw in iter_fields(buf):
        if number == 5 and wire_type == VARINT and isinstance(raw, int):
            dek_type = raw
        elif wire_type != LEN or not isinstance(raw, bytes):
            raise WireError(f"field {number} has unexpected wire type {wire_type}")
        elif number == 1:
            data = raw
        elif number == 2:
            key_id = raw.decode()
        elif number == 3:
            dek = raw
        elif number == 4:
            k, v = decode_map_entry(raw)
            annotations[k] = v
        else:
            raise WireError(f"unknown EncryptedObject field {number}")
    return EncryptedObject(data, key_id, dek, annotations, dek_type)

"""A minimal protobuf wire-format reader for the ``EncryptedObject`` kube-apiserver stores in etcd.

Why hand-written: the harness must read what the apiserver stored without depending on the
project's generated code (which is the thing under test). Only the wire types that message
uses are supported: varint (0) and length-delimited (2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

VARINT = 0
LEN = 2


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
        else:
            raise WireError(f"unsupported wire type {wire_type}")
    return out


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
    """What kube-apiserver stores after ``k8s:enc:kms:v2:<name>:`` (field numbers from
    k8s.io/apiserver ``pkg/storage/value/encrypt/envelope/kmsv2/v2/api.proto``)."""

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

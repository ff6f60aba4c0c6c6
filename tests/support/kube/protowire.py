"""The ``EncryptedObject`` kube-apiserver stores in etcd after ``k8s:enc:kms:v2:<name>:``, read
with the protobuf runtime from a schema declared here (field numbers from k8s.io/apiserver
``pkg/storage/value/encrypt/envelope/kmsv2/v2/api.proto``).

Why declared here: the harness must read what the apiserver stored without depending on the
project's generated code (which is the thing under test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, unknown_fields

_F = descriptor_pb2.FieldDescriptorProto
_FIELDS = (("encryptedData", 1, _F.TYPE_BYTES), ("keyID", 2, _F.TYPE_STRING),
           ("encryptedDEKSource", 3, _F.TYPE_BYTES), ("encryptedDEKSourceType", 5, _F.TYPE_INT32))


def _message_class() -> Any:
    proto = descriptor_pb2.FileDescriptorProto(name="e2e_kmsv2_api.proto", package="e2e.kmsv2", syntax="proto3")
    msg = proto.message_type.add(name="EncryptedObject")
    for name, number, kind in _FIELDS:
        msg.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL)
    msg.field.add(name="annotations", number=4, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
                  type_name=".e2e.kmsv2.EncryptedObject.AnnotationsEntry")
    entry = msg.nested_type.add(name="AnnotationsEntry", options=descriptor_pb2.MessageOptions(map_entry=True))
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("e2e.kmsv2.EncryptedObject"))


_MESSAGE = _message_class()


@dataclass(frozen=True)
class EncryptedObject:
    """The stored envelope, its fields named as the tests read them."""

    encrypted_data: bytes = b""
    key_id: str = ""
    encrypted_dek_source: bytes = b""
    annotations: dict[str, bytes] = field(default_factory=dict)
    encrypted_dek_source_type: int = 0


def parse_encrypted_object(buf: bytes) -> EncryptedObject:
    """Parse an EncryptedObject; a field the schema does not know (or of another wire type) is an
    error: the schema is fixed."""
    msg = _MESSAGE.FromString(buf)
    unknown = [f.field_number for f in unknown_fields.UnknownFieldSet(msg)]
    if unknown:
        raise ValueError(f"unknown EncryptedObject fields {unknown}")
    return EncryptedObject(msg.encryptedData, msg.keyID, msg.encryptedDEKSource, dict(msg.annotations),
                           msg.encryptedDEKSourceType)

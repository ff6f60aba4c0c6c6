"""Secrets as test data: create many quickly, read them back, inspect etcd.

Why both REST and kubectl: ``kubectl create secret`` is the operator's path
and is what the basic scenario uses, but 1,000 kubectl processes (or one
client-side-throttled kubectl) would make bulk scenarios slow; one keep-alive
HTTPS connection posting JSON is the same apiserver write path at a fraction
of the cost. Reads go through kubectl so the decrypted view is the user's.
"""

from __future__ import annotations

import base64
import json
import secrets

from tests.support.kube.cluster import Cluster
from tests.support.kube.protowire import EncryptedObject, parse_encrypted_object

NAMESPACE = "default"
BATCH_LABEL = "e2e.kms-appliance.dev/batch"


def marker() -> str:
    """A random plaintext value that cannot occur in etcd by chance."""
    return f"e2e-plaintext-{secrets.token_hex(12)}"


def create_secret(cluster: Cluster, name: str) -> str:
    """``kubectl create secret generic`` with a random ``password``; return it."""
    value = marker()
    cluster.kubectl("create", "secret", "generic", name, f"--from-literal=password={value}")
    return value


def read_secret(cluster: Cluster, name: str) -> str:
    """The secret's ``password`` as the apiserver returns it (decrypted)."""
    out = cluster.kubectl("get", "secret", name, "-o", "jsonpath={.data.password}").stdout
    return base64.b64decode(out).decode()


def create_secrets_bulk(cluster: Cluster, batch: str, count: int) -> dict[str, str]:
    """POST ``count`` labelled secrets over one connection; return name -> value."""
    created: dict[str, str] = {}
    conn = cluster.apiserver.connect(timeout_s=30.0)
    try:
        for i in range(count):
            name, value = f"{batch}-{i:05d}", marker()
            body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": {BATCH_LABEL: batch}},
                    "data": {"password": base64.b64encode(value.encode()).decode()}}
            conn.request("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets", body=json.dumps(body),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            text = resp.read()
            if resp.status != 201:
                raise AssertionError(f"create {name}: HTTP {resp.status} {text[:300]!r}")
            created[name] = value
    finally:
        conn.close()
    return created


def list_batch(cluster: Cluster, batch: str) -> dict[str, str]:
    """name -> decrypted ``password`` for a batch, via one ``kubectl get`` list."""
    out = cluster.kubectl("get", "secrets", "-l", f"{BATCH_LABEL}={batch}", "-o", "json", "--chunk-size=0").stdout
    return {item["metadata"]["name"]: base64.b64decode(item["data"]["password"]).decode()
            for item in json.loads(out)["items"]}


def stored_envelopes(cluster: Cluster, prefix: bytes, names: dict[str, str]) -> dict[str, EncryptedObject]:
    """Parse each named secret's etcd value, checking the storage prefix and
    that its plaintext value is absent; raise AssertionError otherwise."""
    raw = cluster.etcd.get_prefix_raw(f"/registry/secrets/{NAMESPACE}/")
    envelopes: dict[str, EncryptedObject] = {}
    for name, value in names.items():
        stored = raw.get(cluster.secret_key(name, NAMESPACE))
        if stored is None:
            raise AssertionError(f"{name}: not in etcd")
        if not stored.startswith(prefix):
            raise AssertionError(f"{name}: stored with prefix {stored[:40]!r}, want {prefix!r}")
        if value.encode() in stored:
            raise AssertionError(f"{name}: plaintext found in etcd")
        envelopes[name] = parse_encrypted_object(stored[len(prefix) :])
    return envelopes


def rewrite_batch(cluster: Cluster, batch: str) -> None:
    """Storage migration the documented way: ``kubectl get -o json | kubectl
    replace -f -``; the apiserver rewrites every object it read as stale."""
    out = cluster.kubectl("get", "secrets", "-l", f"{BATCH_LABEL}={batch}", "-o", "json", "--chunk-size=0").stdout
    cluster.kubectl("replace", "-f", "-", input_text=out)

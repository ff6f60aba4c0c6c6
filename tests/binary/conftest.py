"""Fixtures for tests that run the frozen binary (``make test-binary`` builds it first).

The binary is dist/kms-appliance unless KMS_BINARY names another one. A
missing binary fails the tests (it is never a skip: a skipped contract test
would read as a kept contract).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms_appliance.backends import keyring
from tests.binary import sandbox
from tests.support import ledger
from tests.support.plugin import REPO, Command, Plugin, keyring_init


@pytest.fixture(scope="session")
def binary() -> Path:
    path = Path(os.environ.get("KMS_BINARY", REPO / "dist" / "kms-appliance")).resolve()
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} missing: run `make binary` first (or set KMS_BINARY)")
    return path


@pytest.fixture(scope="session")
def keyring_file(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keyring made by the binary itself, owned by the sandbox user (0600); its keys go to
    the secret ledger, so the scan proves no sandboxed plugin wrote them."""
    d = tmp_path_factory.mktemp("keyring")
    ring = d / "keyring.json"
    keyring_init(ring, Command.frozen(binary))
    ledger.secrets(e.material for e in keyring.load(ring).entries)  # before the chown: ours to read
    for path in (d, ring):
        os.chown(path, 65532, 65532)
    return ring


@pytest.fixture
def sock_dir(tmp_path: Path) -> Path:
    """Directory for the socket, writable only by the sandbox user (as a hostPath would be)."""
    d = tmp_path / "run"
    d.mkdir(mode=0o750)
    os.chown(d, 65532, 65532)
    return d


@pytest.fixture
def local_plugin(binary: Path, keyring_file: Path, sock_dir: Path, tmp_path: Path) -> Iterator[Plugin]:
    """The binary serving on the local keyring in the distroless sandbox; it must stop cleanly."""
    box = sandbox.Sandbox(binary, binds={sock_dir: "/run/kms", keyring_file.parent: "/var/lib/kms"})
    with box.serving(tmp_path / "sandboxed", sock_dir, "--backend", "local", "--keyring",
                     "/var/lib/kms/keyring.json") as p:
        yield p

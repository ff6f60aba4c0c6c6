"""Packaging tests: every test here carries the ``packaging`` marker and needs
root (dpkg/rpm into a bootstrapped root, systemd-nspawn, podman). They use the
artefacts `make deb rpm image bundle` wrote into dist/ (`make test-packaging`
builds them first), and print how long each step took."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import packaging as support
from tests.support import steps

from . import signed


@pytest.fixture(scope="session", autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the packaging tests need root (dpkg/rpm roots, systemd-nspawn, podman)")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A private bookworm root, removed after the test (it is large)."""
    path = support.fresh_root(tmp_path / "root")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[list[str]]:
    """podman with a store private to the test."""
    with steps.podman(tmp_path / "store") as cmd:
        yield cmd


@pytest.fixture(scope="session")
def upgrade_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same package rebuilt with a higher version, for upgrade tests."""
    out = tmp_path_factory.mktemp("upgrade")
    binary = support.artefact("kms-appliance")
    with support.step("build upgrade .deb"):
        proc = support.run([support.REPO / "packaging/deb/build.sh", binary, out],
                           env={**os.environ, "DEB_VERSION": f"{support.VERSION}+up1"})
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline bundle, unpacked once (read-only for the tests: copy what you tamper with)."""
    with support.step("unpack bundle"):
        return signed.unpack_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def release_fpr() -> str:
    """The fingerprint of the key the build was given (scripts/signing.sh), not read from the bundle."""
    return signed.release_fingerprint()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    support.STEPS.report(terminalreporter)

"""Settings every test suite needs before anything imports grpc, and which suites a run selects.

grpcio's fork support runs pthread_atfork handlers on every fork, and a fork that coincides
with a channel's background shutdown deadlocks inside ``subprocess.Popen`` (grpc/grpc#37259;
seen when the e2e suite started kube-apiserver right after closing its KMS client). The tests
fork constantly and never use gRPC in a forked child, so the handlers are turned off.

The default marker filter (pyproject.toml, DEFAULT below) leaves out the suites a fresh
checkout cannot run or that are a stage of their own (GATED); a bare ``pytest`` says which,
why, and how to run each. Naming a suite's directory, giving ``-m`` or its variable selects it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from akeyless_emulator import Emulator

os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Gated:
    """A suite the default filter leaves out: where it lives, why, how to run it."""

    dirs: tuple[str, ...]
    why: str
    run: str
    env: str = ""  # a variable that, set to 1, selects it too


GATED = {
    "binary": Gated(("binary",), "needs the frozen binary (make binary) and root",
                    "make test-binary, or pytest -m binary tests/binary"),
    "packaging": Gated(("packaging",), "needs the .deb/.rpm/image artefacts (make bundle) and root",
                       "make test-packaging, or pytest -m packaging tests/packaging"),
    "e2e": Gated(("e2e",), "needs kube-apiserver and etcd (built by make e2e-components)",
                 "make e2e, or pytest -m e2e tests/e2e", env="E2E"),
    "deploy": Gated(("deploy",), "needs the image, kubelet and containerd (make image deploy-components) and root",
                    "make test-deploy, or pytest -m deploy tests/deploy", env="DEPLOY"),
    "reliability": Gated(("reliability", "fuzz"), "CI stages of their own (~8 minutes, partly root)",
                         "make test-fuzz test-reliability, or pytest tests/reliability tests/fuzz",
                         env="KMS_APPLIANCE_RELIABILITY"),
}
# pyproject.toml's addopts -m: kept equal to it (tests/unit/test_pytest_selection.py checks).
DEFAULT = " and ".join(f"not {name}" for name in GATED)
_DESELECTED: dict[str, int] = {}
_LEAKS: list[str] = []  # found by the end-of-session scan


def _inside(arg: str, dirs: tuple[str, ...]) -> bool:
    path = Path(arg.split("::", 1)[0]).resolve()
    return any(path == HERE / d or HERE / d in path.parents for d in dirs)


def _asked_for(g: Gated, config: pytest.Config) -> bool:
    """Whether this run names the gated suite: by directory, or by its environment variable."""
    return bool(g.env and os.environ.get(g.env) == "1") or any(_inside(str(a), g.dirs) for a in config.args)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the reliability and fuzz items, and narrow the default filter to what was not asked for.

    Runs before the marker filter (tryfirst), which reads ``-m`` only afterwards.
    """
    for item in items:
        if _inside(str(item.path), GATED["reliability"].dirs):
            item.add_marker(pytest.mark.reliability)
    if config.option.markexpr != DEFAULT:
        return  # -m given: exactly what it says
    left_out = [name for name, g in GATED.items() if not _asked_for(g, config)]
    config.option.markexpr = " and ".join(f"not {name}" for name in left_out)


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        for name in GATED:
            if item.get_closest_marker(name) is not None:
                _DESELECTED[name] = _DESELECTED.get(name, 0) + 1
                break


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip("needs root (chown to another uid, namespaces): CI runs it as root")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """No plugin any test of the session started wrote a secret the tests registered with the
    ledger (every plugin is registered as it is made; the reliability stage's own hygiene
    test scans the same and reports figures, this covers every other suite)."""
    from tests.support import ledger

    _LEAKS[:] = ledger.leaks()
    if _LEAKS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures the suites measured; name any leaked secret (by index, never its
    value); say which suites the default filter left out, why, and how to run each."""
    from tests.support import figures

    figures.summary(terminalreporter)
    if _LEAKS:
        terminalreporter.section("secrets found in plugin output", red=True)
        for line in _LEAKS[:20]:
            terminalreporter.write_line(line)
    if not _DESELECTED:
        return
    terminalreporter.section("suites not run")
    for name, count in _DESELECTED.items():
        g = GATED[name]
        terminalreporter.write_line(f"{count:5d} {name}: {g.why}; run: {g.run}")


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """An Akeyless emulator in this process over TLS, holding the key; every token it issued and
    every key version go to the secret ledger."""
    from akeyless_emulator import Emulator
    from tests.support.emulator import KEY, record_secrets

    with Emulator(tls=True) as e:
        e.create_key(KEY)
        yield e
        record_secrets(e)

"""Fixtures of the end-to-end harness: real etcd, kube-apiserver and kubectl, and a KMS plugin
behind a pluggable launcher (``kms_launcher``, or ``E2E_KMS_PLUGIN``).

They build Go components on first use (minutes) and start real servers, so a bare ``pytest``
leaves them out (tests/conftest.py: ``pytest -m e2e``, ``pytest tests/e2e``, ``E2E=1``). When a
test fails, the tail of every component log (kept under its tmp dir) is attached to the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube.cluster import ApiServerOptions, Cluster, new_cluster
from tests.support.kube.components import Components, ensure_components
from tests.support.kube.encryption import encryption_config, identity, kms_v2
from tests.support.plugin import Plugin
from tests.support.procs import ProcessRegistry

from .fixture_types import KmsV2Cluster, RecordTiming, StartApiServer, StartPlugin
from .plugins import LAUNCHERS, Launcher, cleanup, selected_launcher_names

REGISTRY_KEY = pytest.StashKey[ProcessRegistry]()
TIMINGS_KEY = pytest.StashKey[list[tuple[str, str, float]]]()
LOG_TAIL_LINES = 40
# nodeid -> seconds; module state because logreport hooks get no config.
_SCENARIO_SECONDS: dict[str, float] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.stash[TIMINGS_KEY] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of every component log to a failing test's report."""
    report = yield
    registry = item.stash.get(REGISTRY_KEY, None)
    if report.failed and registry is not None:
        for title, text in registry.tails(LOG_TAIL_LINES):
            report.sections.append((f"log tail: {title}", text))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Sum setup + call + teardown of each e2e test into one scenario time."""
    if "e2e" not in report.keywords:
        return
    _SCENARIO_SECONDS[report.nodeid] = _SCENARIO_SECONDS.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how long the components took to provide and each scenario took."""
    timings = terminalreporter.config.stash.get(TIMINGS_KEY, [])
    if not timings:
        return
    terminalreporter.section("e2e timings")
    for test, what, seconds in timings:
        terminalreporter.write_line(f"{seconds:8.1f} s  {what:<44} {test}")
    for test, seconds in _SCENARIO_SECONDS.items():
        terminalreporter.write_line(f"{seconds:8.1f} s  {'scenario total':<44} {test}")


@pytest.fixture(scope="session")
def e2e_components(request: pytest.FixtureRequest) -> Components:
    """The real binaries; built by build_components.sh if missing (E2E_BUILD=0 forbids)."""
    components = ensure_components(allow_build=os.environ.get("E2E_BUILD", "1") != "0")
    versions = f"kubernetes {components.kubernetes_version}, etcd {components.etcd_version}"
    request.config.stash[TIMINGS_KEY].append((versions, "components (build/check)", components.build_seconds))
    return components


@pytest.fixture
def record_timing(request: pytest.FixtureRequest) -> RecordTiming:
    """Record a named duration for the end-of-run summary."""

    def record(what: str, seconds: float) -> None:
        request.config.stash[TIMINGS_KEY].append((request.node.nodeid, what, seconds))

    return record


@pytest.fixture
def process_registry(request: pytest.FixtureRequest) -> Iterator[ProcessRegistry]:
    registry = ProcessRegistry()
    request.node.stash[REGISTRY_KEY] = registry
    yield registry
    registry.stop_all()


@pytest.fixture
def cluster(e2e_components: Components, tmp_path: Path, process_registry: ProcessRegistry,
            record_timing: RecordTiming) -> Cluster:
    """etcd running, apiserver ready to start; torn down by ``process_registry``."""
    started = time.monotonic()
    c = new_cluster(e2e_components, tmp_path, process_registry)
    record_timing("PKI and etcd start-to-healthy", time.monotonic() - started)
    return c


@pytest.fixture
def start_apiserver(cluster: Cluster, record_timing: RecordTiming) -> StartApiServer:
    """``start_apiserver(encryption_config, **ApiServerOptions fields)``: start
    (or, if running, restart) the cluster's apiserver and record start-to-ready."""

    def start(config: dict[str, Any], **options: Any) -> float:
        opts = ApiServerOptions(encryption_config=config, **options)
        api = cluster.apiserver
        running = api.process is not None and api.process.running
        seconds = api.restart(opts) if running else api.start(opts)
        record_timing("apiserver restart-to-ready" if running else "apiserver start-to-ready", seconds)
        return seconds

    return start


@pytest.fixture(params=selected_launcher_names())
def kms_launcher(request: pytest.FixtureRequest) -> Launcher:
    """Which plugin to run (one test per name in E2E_KMS_PLUGIN); a test
    module may override this fixture to pin its own plugin."""
    return LAUNCHERS[str(request.param)]


@pytest.fixture
def start_kms_plugin(kms_launcher: Launcher, tmp_path: Path, process_registry: ProcessRegistry,
                     record_timing: RecordTiming) -> Iterator[StartPlugin]:
    """``start_kms_plugin(name)`` starts a plugin and waits for Status ``ok``."""
    started: list[Plugin] = []

    def start(name: str = "e2e-kms") -> Plugin:
        plugin = kms_launcher(tmp_path, name, process_registry)
        started.append(plugin)
        record_timing(f"plugin {name} start-to-ok", plugin.start())
        return plugin

    yield start
    for plugin in started:
        plugin.stop()
        cleanup(plugin)


@pytest.fixture
def kms_v2_cluster(cluster: Cluster, start_kms_plugin: StartPlugin, start_apiserver: StartApiServer,
                   record_timing: RecordTiming) -> KmsV2Cluster:
    """Plugin ``e2e-kms`` started, then the apiserver on [its KMS v2 provider, identity]."""
    plugin = start_kms_plugin("e2e-kms")
    provider = kms_v2(plugin.name, plugin.socket)
    config = encryption_config([provider, identity()])
    start_apiserver(config)
    return KmsV2Cluster(plugin, provider, config, cluster, start_apiserver, record_timing)

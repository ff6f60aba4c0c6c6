"""Health verdicts, the bounded HTTP endpoint, and the self-probe through the socket path."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from kms_appliance import health
from kms_appliance.errors import ConfigError
from kms_appliance.kms import v2_pb2, v2_pb2_grpc
from kms_appliance.metrics import Metrics
from kms_appliance.selfprobe import SelfProbe
from kms_appliance.threads import Supervisor
from tests.support.inproc import local_backend
from tests.support.plugin import http_get
from tests.support.procs import eventually
from tests.unit.helpers import sample


def _health(tmp_path: Path) -> health.Health:
    h = health.Health(local_backend(tmp_path, versions=1), Metrics(), interval=30)
    h.serving = True
    return h


@contextlib.contextmanager
def _server(tmp_path: Path) -> Iterator[tuple[health.HealthHttpServer, Supervisor]]:
    h = _health(tmp_path)
    srv = health.HealthHttpServer(("127.0.0.1", 0), h, Metrics())
    threads = Supervisor()
    srv.start(threads)
    try:
        yield srv, threads
    finally:
        threads.stopping.set()
        srv.stop()


class TestVerdicts:
    """A watched check fails /livez (live=True) or only /readyz (live=False), naming itself."""

    def test_ready_check_fails_readiness_only(self, tmp_path: Path) -> None:
        h = _health(tmp_path)
        h.watch("audit", lambda: "cannot write", live=False)
        assert h.live() == (True, "ok")
        assert h.ready() == (False, "audit: cannot write")


class TestBind:
    """A bad observability.http_listen is a ConfigError naming the setting, never a traceback."""

    def test_unresolvable_host_is_not_echoed_in_full(self) -> None:
        with pytest.raises(ConfigError, match="does not resolve") as info:
            health.bind(("x" * 5000 + ".invalid", 8787))
        assert info.value.key == "observability.http_listen" and len(info.value.message) < 200

    def test_wildcard_warns_loopback_does_not(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING, logger="kms_appliance.health"):
            health.bind(("127.0.0.1", 0)).close()
            assert "reachable from other hosts" not in caplog.text
            health.bind(("0.0.0.0", 0)).close()
        assert caplog.text.count("reachable from other hosts") == 1


class TestHttpServer:
    """Fixed pool, bounded connections: idle peers cost a descriptor each, up to a limit."""

    def test_probe_body_and_post_refused(self, tmp_path: Path) -> None:
        """The other answers, read from the real process: tests/integration/test_observability.py::
        test_calls_are_audited_counted_and_health_answers (/livez, /readyz, /healthz 200, /metrics, 404)."""
        with _server(tmp_path) as (srv, _):
            port = srv.server_address[1]
            code, body = http_get(port, "/livez")
            assert code == 200 and json.loads(body) == {"status": "ok", "reason": "ok"}
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/livez", b"", method="POST"), timeout=5)
            assert refused.value.code == 405

    def test_idle_connections_beyond_the_limit_evict_the_oldest(self, tmp_path: Path) -> None:
        with _server(tmp_path) as (srv, threads):
            port = srv.server_address[1]
            workers = threading.active_count()
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(health.CONNECTION_LIMIT + 20)]
            try:
                assert http_get(port, "/livez")[0] == 200, "a probe gets in past the idle connections"
                assert threading.active_count() == workers, "idle connections hold no thread"
                closed = 0
                for s in idle[:20]:
                    s.settimeout(5)
                    closed += s.recv(1) == b""
                assert closed == 20, "the longest-idle connections were closed to make room"
                assert sample(srv.metrics, "kms_appliance_http_connections_evicted_total") >= 20
            finally:
                for s in idle:
                    s.close()
            assert threads.problem() is None

    def test_a_trickled_request_does_not_keep_its_slot(self, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(health, "REQUEST_TIMEOUT", 1.0)
        with _server(tmp_path) as (srv, _), \
                socket.create_connection(("127.0.0.1", srv.server_address[1])) as s:
            s.settimeout(0.2)

            def one_more_byte_finds_it_closed() -> bool:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")
                try:
                    return s.recv(1) == b""
                except TimeoutError:
                    return False
                except OSError:
                    return True

            assert eventually(one_more_byte_finds_it_closed, 10), \
                "a request still incomplete after REQUEST_TIMEOUT is closed"

    def test_stop_ends_every_thread(self, tmp_path: Path) -> None:
        before = {t.name for t in threading.enumerate()}
        with _server(tmp_path) as (srv, _):
            port = srv.server_address[1]
            assert any(t.name.startswith("http-worker-") for t in threading.enumerate())
        assert eventually(lambda: {t.name for t in threading.enumerate()} <= before, 5, 0.05), \
            {t.name for t in threading.enumerate()} - before
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)


class _Status(v2_pb2_grpc.KeyManagementServiceServicer):
    def __init__(self) -> None:
        self.release = threading.Event()
        self.wedged = False
        self.answer = grpc.StatusCode.OK

    def Status(self, request: object, context: grpc.ServicerContext) -> v2_pb2.StatusResponse:  # noqa: N802
        if self.wedged:
            self.release.wait(5)
        if self.answer != grpc.StatusCode.OK:
            context.abort(self.answer, "no")
        return v2_pb2.StatusResponse(version="v2", healthz="ok", key_id="k")


@pytest.fixture
def status_server(tmp_path: Path) -> Iterator[tuple[Path, _Status]]:
    """A gRPC server on a socket answering Status as the test sets it."""
    path, servicer = tmp_path / "kms.sock", _Status()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    v2_pb2_grpc.add_KeyManagementServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"unix:{path}")
    server.start()
    yield path, servicer
    server.stop(None)


class TestSelfProbe:
    """Consecutive failed Status calls through the path become a liveness problem; one success clears it."""

    def test_nothing_at_the_path(self, tmp_path: Path) -> None:
        metrics = Metrics()
        probe = SelfProbe(tmp_path / "none.sock", deadline=0.5, failures_before_dead=2,
                          gauge=metrics.self_probe_failures)
        probe.probe()
        assert probe.problem() is None, "one failure is not an outage"
        probe.probe()
        assert "UNAVAILABLE" in (probe.problem() or "")
        assert metrics.registry.get_sample_value("kms_appliance_self_probe_failures") == 2

    def test_overloaded_is_serving_an_error_is_not(self, status_server: tuple[Path, _Status]) -> None:
        path, servicer = status_server
        probe = SelfProbe(path, deadline=2, failures_before_dead=1)
        servicer.answer = grpc.StatusCode.RESOURCE_EXHAUSTED
        probe.probe()
        assert probe.problem() is None, "max_concurrent_rpcs reached by real load is not death"
        servicer.answer = grpc.StatusCode.INTERNAL
        probe.probe()
        assert "INTERNAL" in (probe.problem() or "")

    def test_wedged_then_answering(self, status_server: tuple[Path, _Status]) -> None:
        path, servicer = status_server
        probe = SelfProbe(path, deadline=0.3, failures_before_dead=2)
        probe.probe()
        assert probe.failures == 0
        servicer.wedged = True
        probe.probe()
        probe.probe()
        assert "DEADLINE_EXCEEDED" in (probe.problem() or "")
        servicer.wedged = False
        servicer.release.set()
        probe.probe()
        assert probe.problem() is None

"""The plugin calls itself: a real KMS v2 Status through its own socket path.

Why: a process can be alive, its threads running and its maintenance loop
ticking, and still serve nothing: the socket file was deleted or replaced,
the gRPC server's threads are pinned, its accept path is broken. kube-apiserver
dials the path, so the only honest proof of serving is to dial the path too:
a fresh channel (its own subchannel pool, so a fresh connection every time)
and one Status call with a short deadline. A few consecutive failures fail
/livez and kubelet or systemd restart the plugin. Status answers from held
state, so the probe never reaches the backend; a backend outage is a
readiness matter and Status still answers (``healthz`` says why). A prompt
RESOURCE_EXHAUSTED (``server.max_concurrent_rpcs`` reached by real load)
counts as an answer: restarting a busy plugin would only drop its calls.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
from prometheus_client import Gauge

from .kms import v2_pb2, v2_pb2_grpc

log = logging.getLogger("kms_appliance.selfprobe")
DEADLINE = 2.0
FAILURES_BEFORE_DEAD = 3
EVERY_AT_MOST = 10.0  # seconds between probes, or observability.health_interval if shorter


class SelfProbe:
    """Counts consecutive failed Status calls through the socket path; a liveness check."""

    def __init__(self, path: Path, deadline: float = DEADLINE,
                 failures_before_dead: int = FAILURES_BEFORE_DEAD, gauge: Gauge | None = None) -> None:
        self._target = f"unix:{path}"
        self._deadline = deadline
        self._limit = failures_before_dead
        self._gauge = gauge
        self.failures = 0
        self.reason = ""

    def probe(self) -> None:
        """One Status call; remembers the outcome (called from the maintenance loop)."""
        reason = self._call()
        if reason is None:
            if self.failures:
                log.info("self-probe through the socket answers again")
            self.failures = 0
        else:
            self.failures += 1
            self.reason = reason
            log.warning("self-probe through the socket failed (%d in a row): %s", self.failures, reason)
        if self._gauge is not None:
            self._gauge.set(self.failures)

    def _call(self) -> str | None:
        options = [("grpc.default_authority", "localhost"), ("grpc.use_local_subchannel_pool", 1),
                   ("grpc.enable_retries", 0)]
        channel = grpc.insecure_channel(self._target, options=options)
        try:
            stub = v2_pb2_grpc.KeyManagementServiceStub(channel)  # type: ignore[no-untyped-call]
            reply = stub.Status(v2_pb2.StatusRequest(), timeout=self._deadline)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return None  # it answered at once: overloaded is serving, a restart would not help
            return f"Status {code.name if code is not None else 'failed'}"
        except Exception as exc:  # a probe never kills the maintenance loop
            return f"Status raised {type(exc).__name__}"
        finally:
            channel.close()
        if reply.version != "v2":
            return "Status answered with an unexpected version"
        return None

    def problem(self) -> str | None:
        """A liveness check: None, or why the plugin cannot be reached through its path."""
        if self.failures < self._limit:
            return None
        return f"{self.failures} Status calls through the socket failed in a row, last: {self.reason}"

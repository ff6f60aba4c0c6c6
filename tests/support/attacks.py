"""Attack drivers a hostile local user can run against the plugin, all at once.

Why a module of its own: each per-item test (tests/reliability/test_attacks_*.py) proves one
control in isolation; the mixed run (tests/reliability/attack_mix.py) needs every attack
running together for minutes, each with a stop event, a fixed ceiling on what it holds
(connections, threads, processes) and counters of what it did. A driver never raises out of
its threads: what the plugin refuses is the point of the attack.

``python -m tests.support.attacks --socket S --http-port P --pid PID --audit A --socket-gid G``
runs them all until SIGTERM and prints the volumes as one JSON line (the mixed run's attacker
process).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import grpc

from kms_appliance.kms import v2_pb2, v2_pb2_grpc
from tests.support import h2raw, ledger

STATUS = "/v2.KeyManagementService/Status"
ENCRYPT = "/v2.KeyManagementService/Encrypt"
NOBODY = 65534
# HEADERS-only calls are ended by the server after server.request_read_timeout (2 s default);
# a partial message announces 100 bytes and sends one.
PARTIAL = b"\x00\x00\x00\x00\x64" + b"\x0a"
# Not a valid message of any KMS method: a truncated varint tag; non-UTF-8 string fields;
# a length running past the end.
GARBAGE = (b"\xff\xff\xff\xff\xff", b"\x0a\x02\xff\xfe\x12\x02\xff\xfe", b"\x0a\x7f\x00")
MALFORMED_METHODS = ("/v2.KeyManagementService/Encrypt", "/v2.KeyManagementService/Decrypt",
                     "/v1beta1.KeyManagementService/Encrypt", "/v1beta1.KeyManagementService/Decrypt")


class Driver:
    """A stop event, a thread, and counters; subclasses implement ``_run``."""

    name = "driver"

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._guarded, name=self.name, daemon=True)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def start(self) -> Self:
        self._thread.start()
        return self

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:  # an attack thread must not die unnoticed: the run reports it
            self.count(f"driver_error:{type(exc).__name__}")

    def _run(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        self._cleanup()
        self.count("threads_not_stopped", int(self._thread.is_alive()))

    def _cleanup(self) -> None:
        """Release whatever the driver still holds (after its threads ended)."""

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped first; True if stopped."""
        return self.stop_event.wait(seconds)

    def volumes(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in sorted(self.counts.items()) if v}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# ---- HTTP endpoint ------------------------------------------------------------------------------


class HttpIdle(Driver):
    """Hold ``conns`` TCP connections to the metrics port open, half of them with a request
    started and never finished; every ``refresh`` seconds replace those the server closed."""

    name = "http-idle"

    def __init__(self, port: int, conns: int = 200, refresh: float = 2.0) -> None:
        super().__init__()
        self.port, self.conns, self.refresh = port, conns, refresh
        self.held: list[socket.socket] = []

    def _open(self, i: int) -> socket.socket:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", self.port))
        self.count("opened")
        if i % 2:
            with contextlib.suppress(OSError):
                s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ends the header block
        return s

    @staticmethod
    def _closed(s: socket.socket) -> bool:
        try:
            return s.recv(4096) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _run(self) -> None:
        self.held = [self._open(i) for i in range(self.conns)]
        while not self.wait(self.refresh):
            for i, s in enumerate(self.held):
                if self._closed(s):
                    s.close()
                    self.count("closed_by_server")
                    self.held[i] = self._open(i)

    def _cleanup(self) -> None:
        for s in self.held:
            s.close()
        self.held = []


# ---- gRPC endpoint: slow callers, header floods ------------------------------------------------


class SlowCalls(Driver):
    """``conns`` raw HTTP/2 connections, each opening ``calls`` unary calls every ``period``
    seconds whose request never completes: HEADERS only on even connections, a partial
    message on odd ones. A connection the server closed is replaced."""

    name = "slow-calls"

    def __init__(self, sock: Path, conns: int = 4, calls: int = 48, period: float = 3.0) -> None:
        super().__init__()
        self.sock, self.conns, self.calls, self.period = sock, conns, calls, period
        self.raw: list[h2raw.RawH2 | None] = []

    def _run(self) -> None:
        self.raw = [None] * self.conns
        while not self.stop_event.is_set():
            for i in range(self.conns):
                conn = self.raw[i]
                if conn is None:
                    try:
                        conn = self.raw[i] = h2raw.RawH2(self.sock, timeout=2.0)
                    except OSError:
                        self.count("connect_failed")
                        continue
                    self.count("connections")
                partial = PARTIAL if i % 2 else None
                try:
                    for _ in range(self.calls):
                        conn.open_call(ENCRYPT, partial)
                    self.count("partial_calls" if partial else "headers_only_calls", self.calls)
                    alive = conn.drain()
                except OSError:
                    alive = False
                if not alive:
                    conn.close()
                    self.raw[i] = None
                    self.count("closed_by_server")
            if self.wait(self.period):
                break

    def _cleanup(self) -> None:
        for conn in self.raw:
            if conn is not None:
                conn.close()
        self.raw = []


class HeaderFlood(Driver):
    """HEADERS + CONTINUATION floods (h2raw.header_flood) from ``conns`` connections: bursts of
    ``burst`` seconds every ``burst + pause`` seconds. Each burst uses the next of ``fields``
    (x ~100-byte metadata entries): under the soft metadata bound (4 KiB), between soft and
    hard (8 KiB), and beyond the hard one.

    Within a burst each connection sends ``batch`` streams every ``round_pause`` seconds (512
    streams/s from 16 connections, the rate of test_attacks_grpc.py::test_header_flood_is_bounded):
    this run proves the plugin's own bounds; unpaced, it is a CPU attack no plugin setting bounds
    (docs/security.md, known gaps)."""

    name = "header-flood"

    def __init__(self, sock: Path, conns: int = 16, fields: tuple[int, ...] = (30, 60, 120),
                 burst: float = 2.0, pause: float = 3.0, batch: int = 16, round_pause: float = 0.5) -> None:
        super().__init__()
        self.sock, self.conns, self.fields, self.burst, self.pause = sock, conns, fields, burst, pause
        self.batch, self.round_pause = batch, round_pause

    def _run(self) -> None:
        turn = 0
        while not self.stop_event.is_set():
            fields = self.fields[turn % len(self.fields)]
            turn += 1
            try:
                self.count(f"header_blocks_{fields}_fields",
                           h2raw.header_flood(self.sock, self.conns, self.burst, fields, STATUS,
                                              batch=self.batch, pause=self.round_pause))
                self.count("bursts")
            except OSError:  # the server closed a connection as it was opened: its right
                self.count("bursts_cut_short")
            if self.wait(self.pause):
                break


# ---- slots ----------------------------------------------------------------------------------------


def channel(sock: Path, **options: int) -> grpc.Channel:
    """A channel with its own connection (grpc shares one between equal channels otherwise)."""
    opts: list[tuple[str, Any]] = [("grpc.default_authority", "localhost"),
                                   ("grpc.use_local_subchannel_pool", 1)]
    opts += [(f"grpc.{k}", v) for k, v in options.items()]
    return grpc.insecure_channel(f"unix:{sock}", options=opts)


class SlotHolders(Driver):
    """``holders`` connections, each making one cheap call (Status, ``deadline`` seconds to answer)
    every ``every`` seconds (staggered) so that none is ever idle long enough to be closed for idleness."""

    name = "slot-holders"

    def __init__(self, sock: Path, holders: int = 64, every: float = 20.0, deadline: float = 2.0) -> None:
        super().__init__()
        self.sock, self.holders, self.every, self.deadline = sock, holders, every, deadline
        self.channels: list[grpc.Channel] = []

    def _run(self) -> None:
        self.channels = [channel(self.sock) for _ in range(self.holders)]
        stubs = [v2_pb2_grpc.KeyManagementServiceStub(c) for c in self.channels]  # type: ignore[no-untyped-call]
        step = self.every / self.holders
        turn = 0
        while not self.wait(step):
            try:
                stubs[turn % self.holders].Status(v2_pb2.StatusRequest(), timeout=self.deadline)
                self.count("calls_ok")
            except grpc.RpcError as exc:
                self.count(f"calls_failed:{exc.code().name}")
            turn += 1

    def _cleanup(self) -> None:
        for c in self.channels:
            c.close()
        self.channels = []


# ---- peer gate ------------------------------------------------------------------------------------

# refused_peer's loop (run as uid 65534 by the system interpreter): prints the number of connects.
_REFUSED_PEER = """
import contextlib, signal, socket, sys, time
path, burst, pause, total = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
until = time.monotonic() + total if total > 0 else float("inf")
n = 0
while not stop and time.monotonic() < until:
    end = min(time.monotonic() + burst, until)
    while not stop and time.monotonic() < end:
        with socket.socket(socket.AF_UNIX) as s, contextlib.suppress(OSError):
            s.connect(path)
            n += 1
    if not stop and time.monotonic() < until:
        time.sleep(pause)
print(n, flush=True)
"""


@contextlib.contextmanager
def traversable() -> Iterator[Path]:
    """A work directory whose parents uid 65534 may traverse (pytest's tmp is 0700), with a
    ``g`` directory in it; what the plugins under it wrote goes to the secret ledger first."""
    top = Path(tempfile.mkdtemp(prefix="kms-rel-"))
    top.chmod(0o711)
    (top / "g").mkdir(mode=0o711)
    try:
        yield top
    finally:
        ledger.before_removal(top)
        shutil.rmtree(top, ignore_errors=True)


def refused_peer(sock: Path, gid: int, burst: float, pause: float = 0.0,
                 total: float = 0.0) -> subprocess.Popen[str]:
    """A peer the gate must refuse (uid 65534, in group ``gid`` so the socket's mode lets it
    connect) connecting in a loop: ``burst`` seconds on, ``pause`` off, for ``total`` seconds
    (0: until SIGTERM); its stdout is the number of connects. Needs root."""
    return subprocess.Popen(
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--groups", str(gid),
         "/usr/bin/python3", "-c", _REFUSED_PEER, str(sock), str(burst), str(pause), str(total)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class RefusedFlood(Driver):
    """``refused_peer`` in bursts, as a driver. Needs root, and a socket path whose directories
    65534 may traverse (``traversable``)."""

    name = "refused-flood"

    def __init__(self, sock: Path, gid: int, burst: float = 2.0, pause: float = 2.0) -> None:
        super().__init__()
        self.sock, self.gid, self.burst, self.pause = sock, gid, burst, pause
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        self.proc = refused_peer(self.sock, self.gid, self.burst, self.pause)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            self.count("killed")
        if self.proc.returncode == 0 and out.strip().isdigit():
            self.count("connects", int(out.strip()))
        else:
            self.count(f"exit:{self.proc.returncode}")
            sys.stderr.write(f"refused-flood: {err[-300:]}\n")
        self.proc = None


# ---- requests ---------------------------------------------------------------------------------------


def malformed(ch: grpc.Channel, first: int, count: int, timeout: float) -> list[str]:
    """``count`` garbage requests in flight at once, the ``first``-th onwards of a rotation over
    MALFORMED_METHODS and GARBAGE; the code each was answered with."""
    calls = [ch.unary_unary(m) for m in MALFORMED_METHODS]  # no (de)serializer: raw bytes
    batch = [calls[i % len(calls)].future(GARBAGE[i % len(GARBAGE)], timeout=timeout)
             for i in range(first, first + count)]
    codes = []
    for f in batch:
        exc = f.exception()
        codes.append(exc.code().name if isinstance(exc, grpc.Call) else "OK")
    return codes


class Malformed(Driver):
    """``malformed`` requests, ``in_flight`` at a time, ``pause`` seconds between batches."""

    name = "malformed"

    def __init__(self, sock: Path, in_flight: int = 4, pause: float = 0.05) -> None:
        super().__init__()
        self.sock, self.in_flight, self.pause = sock, in_flight, pause

    def _run(self) -> None:
        with channel(self.sock) as ch:
            i = 0
            while not self.wait(self.pause):
                for code in malformed(ch, i, self.in_flight, timeout=5):
                    self.count(f"answered:{code}")
                i += self.in_flight


# ---- signals and the audit file --------------------------------------------------------------------


class SighupStorm(Driver):
    """``burst`` SIGHUPs to ``pid`` as fast as kill() goes, every ``every`` seconds."""

    name = "sighup-storm"

    def __init__(self, pid: int, burst: int = 1000, every: float = 5.0) -> None:
        super().__init__()
        self.pid, self.burst, self.every = pid, burst, every

    def _run(self) -> None:
        while not self.wait(self.every):
            sent = 0
            try:
                for _ in range(self.burst):
                    os.kill(self.pid, signal.SIGHUP)
                    sent += 1
            except ProcessLookupError:
                self.count("target_gone")
                return
            finally:
                self.count("sighups", sent)


class AuditGames(Driver):
    """logrotate without copytruncate, every ``every`` seconds: rename the audit file away and
    SIGHUP; every third turn a FIFO is planted at the path first (a hostile writer of the
    directory), removed again ``fifo_for`` seconds later and SIGHUP sent. Only the last
    ``keep`` rotated files are kept."""

    name = "audit-games"

    def __init__(self, audit: Path, pid: int, every: float = 10.0, fifo_for: float = 3.0,
                 keep: int = 2) -> None:
        super().__init__()
        self.audit, self.pid, self.every, self.fifo_for, self.keep = audit, pid, every, fifo_for, keep

    def _hup(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGHUP)

    def _run(self) -> None:
        turn = 0
        while not self.wait(self.every):
            turn += 1
            rotated = self.audit.with_name(f"{self.audit.name}.{turn}")
            with contextlib.suppress(FileNotFoundError):
                self.audit.rename(rotated)
                self.count("rotations")
            old = self.audit.with_name(f"{self.audit.name}.{turn - self.keep}")
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
            if turn % 3 == 0:
                # made aside and renamed over the path: the plugin, woken by the SIGHUP storm,
                # may already have created a new audit file there (mkfifo would then fail)
                planted = self.audit.with_name(f".{self.audit.name}.fifo")
                os.mkfifo(planted, 0o600)
                planted.replace(self.audit)
                self._hup()
                self.count("fifos_planted")
                self.wait(self.fifo_for)
                with contextlib.suppress(FileNotFoundError):
                    self.audit.unlink()
            self._hup()

    def _cleanup(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.audit.is_fifo():
                self.audit.unlink()
                self._hup()


# ---- all of them ------------------------------------------------------------------------------------


def every_attack(sock: Path, http_port: int, pid: int, audit: Path, socket_gid: int,
                 scale: float = 1.0) -> list[Driver]:
    """One of each driver; ``scale`` (0..1] shrinks connection counts for a short CI run."""
    def n(value: int) -> int:
        return max(1, int(value * scale))

    return [
        HttpIdle(http_port, conns=n(200)),
        SlowCalls(sock, conns=4, calls=n(48)),
        HeaderFlood(sock, conns=n(16)),
        SlotHolders(sock, holders=n(64)),
        Malformed(sock),
        SighupStorm(pid),
        AuditGames(audit, pid),
        RefusedFlood(sock, socket_gid),
    ]


def run(drivers: list[Driver], stopped: Callable[[], bool]) -> dict[str, dict[str, int]]:
    """Start every driver, wait until ``stopped()``, stop them; their volumes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(4096, hard)), hard))
    for d in drivers:
        d.start()
    while not stopped():
        time.sleep(0.2)
    for d in drivers:
        d.stop()
    return {d.name: d.volumes() for d in drivers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--socket", type=Path, required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--audit", type=Path, required=True)
    ap.add_argument("--socket-gid", type=int, required=True, help="run the refused-peer flood in this group")
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args(argv)
    term = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: term.set())
    drivers = every_attack(args.socket, args.http_port, args.pid, args.audit, args.socket_gid, args.scale)
    print(json.dumps(run(drivers, term.is_set)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

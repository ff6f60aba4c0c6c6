"""Where the server runs a call (event loop or worker, kms_appliance/inline.py), and how it ends
calls whose request never arrives: in-process PluginServer over a real socket."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from kms_appliance.backends.base import Wrapped
from kms_appliance.backends.local import LocalBackend
from kms_appliance.inline import may_wait
from kms_appliance.server import READING_PER_RPC, PluginServer
from tests.support import h2raw, inproc
from tests.support.kmsclient import Client
from tests.support.procs import eventually

ENCRYPT = "/v2.KeyManagementService/Encrypt"


class WaitingBackend(LocalBackend):
    """The local backend, but wrap waits until released (a backend on the network)."""

    def __init__(self, directory: Path) -> None:
        inproc.local_backend(directory)  # the keyring, its KEKs on the hygiene ledger
        super().__init__(directory / "keyring.json")
        self.release = threading.Event()
        self.waiting = threading.Event()
        self.wrapped_on: list[str] = []  # the thread each wrap ran to the end on

    def wrap(self, plaintext: bytes) -> Wrapped:
        if plaintext.startswith(b"wait"):
            may_wait()  # as a backend does right before a remote call
            self.waiting.set()
            self.release.wait(30)
        self.wrapped_on.append(threading.current_thread().name)
        return super().wrap(plaintext)


@pytest.fixture(params=[False, True], ids=["workers", "inline-first"])
def waiting(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[PluginServer, WaitingBackend]]:
    backend = WaitingBackend(tmp_path / "ring")
    with inproc.serving(tmp_path, backend, in_memory=request.param) as srv:
        yield srv, backend
    backend.release.set()


def test_a_waiting_backend_holds_a_worker_not_the_loop(waiting: tuple[PluginServer, WaitingBackend]) -> None:
    srv, backend = waiting
    c = Client(srv.socket_path, timeout=10)
    result: list[bytes] = []
    t = threading.Thread(target=lambda: result.append(c.encrypt(b"wait" + os.urandom(28)).ciphertext), daemon=True)
    t.start()
    try:
        assert backend.waiting.wait(10), "the encrypt call never reached the backend"
        # The encrypt call waits in a worker; the loop still reads and answers other calls.
        with Client(srv.socket_path, timeout=5) as other:
            assert other.status().healthz == "ok"
        assert not result
        backend.release.set()
        t.join(10)
        assert result and result[0]
        assert [n.startswith("kms-rpc") for n in backend.wrapped_on] == [True]
    finally:
        backend.release.set()
        c.close()


def test_in_memory_calls_run_in_the_loop_and_one_that_would_wait_is_served_once(tmp_path: Path) -> None:
    backend = WaitingBackend(tmp_path / "ring")
    backend.release.set()
    audit = tmp_path / "audit.log"
    with inproc.serving(tmp_path, backend, in_memory=True) as srv, Client(srv.socket_path, timeout=10) as c:
        c.encrypt(os.urandom(32))
        c.encrypt(b"wait" + os.urandom(28))
    loop, worker = backend.wrapped_on
    assert loop == "grpc-loop" and worker.startswith("kms-rpc")
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["event"], r["outcome"]) for r in records if r["event"] == "encrypt"] == [("encrypt", "ok")] * 2


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[PluginServer]:
    # One call served at once: READING_PER_RPC calls may wait for their request; a long deadline.
    with inproc.serving(tmp_path, in_memory=True, max_concurrent_rpcs=1, request_read_timeout=30.0) as srv:
        yield srv


def test_beyond_the_read_cap_the_longest_waiting_call_is_ended(reader: PluginServer) -> None:
    with closing(h2raw.RawH2(reader.socket_path)) as conn:
        first = [conn.open_call(ENCRYPT) for _ in range(READING_PER_RPC)]
        assert eventually(lambda: len(reader._reading) == READING_PER_RPC, 30, 0.02)  # all being read
        assert conn.ended(set(first), 0.5) == set(), "a call was ended before the cap was reached"
        newest = conn.open_call(ENCRYPT)
        ended: set[int] = set()
        deadline = time.monotonic() + 30
        while not ended and time.monotonic() < deadline:  # a loaded runner may take a while
            ended |= conn.ended({*first, newest}, 0.5)
        # grpc may start the waiting calls' tasks in any order: the one evicted is one of those
        # that waited since before the newest, never the newest
        assert len(ended) == 1 and ended <= set(first), ended
        with Client(reader.socket_path, timeout=5) as c:  # the server still serves prompt clients
            assert c.status().healthz == "ok"


def test_a_call_whose_request_never_arrives_is_ended(tmp_path: Path) -> None:
    with (inproc.serving(tmp_path, in_memory=True, request_read_timeout=0.5) as srv,
          closing(h2raw.RawH2(srv.socket_path)) as conn):
        slow = {conn.open_call(ENCRYPT), conn.open_call(ENCRYPT, h2raw.grpc_message(b"x" * 40)[:10])}
        assert conn.ended(slow, 10.0) == slow
        with Client(srv.socket_path, timeout=5) as c:  # later calls are still read and served,
            assert c.status().healthz == "ok"  # and so are new slow ones ended
            late = {conn.open_call(ENCRYPT)}
            assert conn.ended(late, 10.0) == late
            assert c.encrypt(os.urandom(32)).ciphertext

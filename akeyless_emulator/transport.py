"""The HTTP(S) layer: a ThreadingHTTPServer translating requests to `api`.

Why: the real SDK speaks HTTP/1.1 with keep-alive over urllib3, so this is a
real socket server. Nagle is disabled (`disable_nagle_algorithm`), or every
small response waits ~40 ms for a delayed ACK. The TLS handshake runs in the
worker thread, so a client that never completes it cannot stall `accept`.
Faults are applied here because most of them (reset, hang, malformed body)
are about the transport, not the API.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from akeyless_emulator.api import HANDLERS, CallInfo
from akeyless_emulator.control import dispatch
from akeyless_emulator.core import CallRecord
from akeyless_emulator.errors import ApiError, bad_request, not_found
from akeyless_emulator.faults import Fault

if TYPE_CHECKING:
    from akeyless_emulator.emulator import Emulator

CONTROL_PREFIX = "/__emulator/"
MAX_BODY = 1 << 20


class EmulatorServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with optional TLS and tracked connections."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # Concurrency tests open many connections at once; the default backlog
    # of 5 would make some wait for a SYN retransmit (1 s).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.emulator = emulator
        self.ssl_context = ssl_context
        self.stopping = threading.Event()
        self.handshake_failures = 0
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, RequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._conns_lock:
            self._conns.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client-side disconnects and TLS failures are expected in tests: stay quiet."""

    def close_connections(self) -> None:
        """Abort every open connection (stop must not wait for idle keep-alives)."""
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class RequestHandler(BaseHTTPRequestHandler):
    """One connection; each POST is an API call or a control call."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # Buffer writes so status line, headers and body leave in one send (one
    # TLS record); http.server flushes wfile after each request.
    wbufsize = 1 << 16
    timeout = 60.0
    server: EmulatorServer
    server_version = "akeyless-emulator"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10.0)
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError):
                self.server.handshake_failures += 1
                raise
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log (bodies hold secrets)."""

    # -- plumbing ----------------------------------------------------------
    def _send(self, status: int, payload: bytes | Any, headers: dict[str, str] | None = None) -> None:
        """Answer with `payload`: raw bytes, or anything else as its JSON."""
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True
            raise bad_request("a JSON body with Content-Length is required")
        raw = self.rfile.read(int(length))
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise bad_request("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object")
        return body

    def _route(self) -> str:
        # http.server collapses a leading "//" in self.path; route on the raw
        # request line so "//encrypt" (host with a trailing slash) stays a 404.
        parts = self.requestline.split()
        raw = parts[1] if len(parts) >= 2 else self.path
        path = raw.split("?", 1)[0]
        base = self.server.emulator.base_path
        if base and path.startswith(base + "/"):
            path = path[len(base) :]
        return path

    # -- verbs -------------------------------------------------------------
    def do_GET(self) -> None:
        self._send(405, {"error": "MethodNotAllowed", "message": "use POST"})

    def do_POST(self) -> None:
        path = self._route()
        if path.startswith(CONTROL_PREFIX):
            try:
                body = self._read_body()
            except ApiError as err:
                self._send(err.status, err.body())
                return
            self._send(*dispatch(self.server.emulator, path[len(CONTROL_PREFIX) :], body))
            return
        self._api(path)

    # -- API calls ---------------------------------------------------------
    def _api(self, path: str) -> None:
        endpoint = path[1:] if path.startswith("/") else path
        known = endpoint in HANDLERS
        self._info = CallInfo()
        self._fault = self.server.emulator.faults.take(endpoint) if known else None
        self._endpoint = endpoint if known else "<unknown>"
        self._recorded = False
        core = self.server.emulator.core
        core.arrive(self._endpoint, 1)
        try:
            self._api_call(endpoint)
        finally:
            self._record(0)
            core.arrive(self._endpoint, -1)

    def _record(self, status: int) -> None:
        """Count the call once, before its answer leaves (no race with tests)."""
        if self._recorded:
            return
        self._recorded = True
        self.server.emulator.core.record(CallRecord(self._endpoint, status, self._info.item_version,
                                                    self._nodelay(), self._info.result_fp))

    def _nodelay(self) -> bool:
        """Whether TCP_NODELAY is really set on this connection (Nagle off)."""
        try:
            return bool(self.request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        except OSError:
            return False

    def _reply(self, status: int, payload: bytes | Any, headers: dict[str, str] | None = None) -> None:
        self._record(status)
        self._send(status, payload, headers)

    def _api_call(self, endpoint: str) -> None:
        """Answer one API call (or misbehave as the active fault says)."""
        fault = self._fault
        try:
            body = self._read_body()
            if fault is not None and self._apply_fault(fault):
                return
            handler = HANDLERS.get(endpoint)
            if handler is None:
                raise not_found(f"unknown operation {endpoint!r}")
            result = handler(self.server.emulator.core, body, self._info)
        except ApiError as err:
            self._reply(err.status, err.body())
            return
        if fault is not None and fault.kind == "wrong_length":
            result = _wrong_length(result, fault.extra)
        self._reply(200, result)

    def _apply_fault(self, fault: Fault) -> bool:
        """Perform the fault; True if it answered (or dropped) the call."""
        if fault.delay and fault.kind != "hang":
            self.server.stopping.wait(fault.delay)
        if fault.kind == "status":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            self._reply(fault.status, fault.error_body(), headers)
        elif fault.kind == "malformed":
            self._reply(200, b'{"result": "trunc')
        elif fault.kind == "reset":
            self._record(0)
            self._reset()
        elif fault.kind == "hang":
            self._record(0)
            self.server.stopping.wait(fault.delay or 30.0)
            self.close_connection = True
        else:
            return False
        return True

    def _reset(self) -> None:
        """Close the TCP connection with RST (SO_LINGER 0), no response at all."""
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        is_tls = isinstance(self.request, ssl.SSLSocket)
        raw = socket.socket(fileno=self.request.detach()) if is_tls else self.request
        raw.close()


def _wrong_length(result: dict[str, Any], extra: bool) -> dict[str, Any]:
    """Make `result` decode to one byte less (or more): a plausible wrong answer."""
    value = result.get("result")
    if not isinstance(value, str):
        return result  # an answer without a result (auth, describe-item) stays as it is
    raw = base64.b64decode(value)  # encrypt and decrypt answer base64 only
    raw = raw + b"\x00" if extra else raw[:-1]
    return {**result, "result": base64.b64encode(raw).decode()}

"""Request decoding that never raises: a malformed message is counted, not a traceback.

Why: when a request is not a valid protobuf message, grpc's sync server logs
``Exception deserializing message!`` with a traceback (``grpc._common``,
``logging.exception``) and answers INTERNAL; the aio server logs
``Unexpected [DecodeError] raised by servicer method`` with a traceback
(``grpc._cython.cygrpc``) and answers UNKNOWN. One ERROR traceback per call:
any peer allowed to connect floods the log at line rate.

Why a decoder and not a ``logging.Filter`` on those records: the filter
would hang on the wording of two grpc code paths (which change between grpc
releases), could not tell which method was called, and would leave the caller
with INTERNAL/UNKNOWN and no audit record. Here every method's request is
parsed by a decoder (the servicers' ``decoders()``; usable as a grpc
``request_deserializer`` on either server, or called by the server's own
request reader) that catches the parse error itself, so no grpc code path
ever sees it. It counts the request in
``kms_appliance_malformed_requests_total{api,method}``, logs at most one line
per :data:`LOG_EVERY` seconds carrying the count since the previous line, and
hands the servicer a :class:`Malformed` stand-in whose first field read raises
:class:`InvalidRequest`: the call is answered INVALID_ARGUMENT and audited
like any other invalid call. Price on valid calls: one Python frame around
``FromString`` (~0.1 us).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from prometheus_client import Counter

from ..errors import InvalidRequest

log = logging.getLogger("kms_appliance.wire")

LOG_EVERY = 10.0  # seconds between two log lines about malformed requests
Parse = Callable[[bytes], Any]


class Malformed:
    """Stands in for a request that did not parse: reading any field raises InvalidRequest."""

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> NoReturn:
        raise self.error()

    def error(self) -> InvalidRequest:
        """What a method that reads no field (Status, Version) answers for it."""
        return InvalidRequest(f"request is not a valid {self._what} message")


class MalformedRequests:
    """Counts undecodable requests exactly; logs them at most once per ``every`` seconds."""

    def __init__(self, counter: Counter, every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._counter = counter
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = 0
        self._next = float("-inf")  # the first one is logged at once

    def decoder(self, api: str, method: str, message: str, parse: Parse) -> Parse:
        """A request deserializer for ``api``/``method`` that never raises."""
        child = self._counter.labels(api, method)
        stand_in = Malformed(message)
        seen = self._seen

        def decode(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception:  # DecodeError, or anything the parser may raise: never grpc's
                seen(child, api, method)
                return stand_in

        return decode

    def _seen(self, child: Any, api: str, method: str) -> None:
        child.inc()
        now = self._clock()
        with self._lock:
            self._pending += 1
            if now < self._next:
                return
            count, self._pending = self._pending, 0
            self._next = now + self._every
        log.warning("%d request(s) that are not valid protobuf messages since the last such line "
                    "(latest: %s %s); answered INVALID_ARGUMENT", count, api, method)

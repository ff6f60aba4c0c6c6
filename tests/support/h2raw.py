"""A raw HTTP/2 client that sends what no well-behaved gRPC client would.

Why hand-written rather than the ``h2`` package: the attacks below are
protocol states a correct HTTP/2 library refuses to produce (a header block
that never ends, a stream whose message never completes), and the frames
needed are a few lines each. HPACK is limited to "literal header field
without indexing, new name" (RFC 7541 6.2.2) with plain (non-Huffman)
strings, which every decoder must accept.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from pathlib import Path

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x7, 0x9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _int(value: int, prefix: int) -> bytes:
    """HPACK integer with a ``prefix``-bit prefix (RFC 7541 5.1), first byte's flags zero."""
    top = (1 << prefix) - 1
    if value < top:
        return bytes([value])
    out = bytearray([top])
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """One header field, literal without indexing, new name, no Huffman."""
    return b"\x00" + _int(len(name), 7) + name + _int(len(value), 7) + value


def request_headers(method: str) -> bytes:
    """The header block of a gRPC unary call to ``method`` (e.g. /v2.KeyManagementService/Status)."""
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", method.encode()),
              (b":authority", b"localhost"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]
    return b"".join(literal(n, v) for n, v in fields)


def grpc_message(body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(body)) + body


class RawH2:
    """One connection on a UNIX socket. The server's frames are read only to note the streams it
    ended: every read goes through :meth:`_take`, so an end read while draining after a send is
    not lost, nor one whose frame was split across two reads."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(os.fspath(path))
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, b"") + frame(SETTINGS, ACK, 0, b""))
        self.next_stream = 1
        self._unparsed = b""
        self._ended: set[int] = set()

    def send(self, data: bytes) -> bool:
        """Send, then drain whatever the server wrote; False once the server closed or reset us."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return self.drain()

    def drain(self) -> bool:
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return False
                self._take(chunk)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                self.sock.settimeout(5.0)

    def open_call(self, method: str, partial: bytes | None = None) -> int:
        """HEADERS of a unary call (no END_STREAM), then optionally part of its message."""
        sid = self.next_stream
        self.next_stream += 2
        data = frame(HEADERS, END_HEADERS, sid, request_headers(method))
        if partial is not None:  # in frames of at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE)
            data += b"".join(frame(DATA, 0, sid, partial[i : i + 16384]) for i in range(0, len(partial), 16384))
        self.send(data)
        return sid

    def ended(self, streams: set[int], timeout: float) -> set[int]:
        """Read the server's frames until each of ``streams`` was ended by it (trailers with
        END_STREAM, or RST_STREAM) or ``timeout`` passed; return the ended ones (since connect)."""
        deadline = time.monotonic() + timeout
        while not streams <= self._ended and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except OSError:  # a timeout too
                break
            if not chunk:
                break
            self._take(chunk)
        return self._ended & streams

    def _take(self, chunk: bytes) -> None:
        buf, at = self._unparsed + chunk, 0
        while len(buf) - at >= 9:
            end = at + 9 + int.from_bytes(buf[at : at + 3], "big")
            if len(buf) < end:
                break
            kind, flags = buf[at + 3], buf[at + 4]
            if kind == RST_STREAM or (kind == HEADERS and flags & END_STREAM):
                self._ended.add(int.from_bytes(buf[at + 5 : at + 9], "big") & 0x7FFFFFFF)
            at = end
        self._unparsed = buf[at:]

    def close(self) -> None:
        self.sock.close()


def header_flood(path: Path, conns: int, seconds: float, fields: int, method: str, batch: int = 16,
                 pause: float = 0.0) -> int:
    """From ``conns`` connections, open streams whose header blocks carry ``fields`` x ~100-byte
    metadata entries (split over HEADERS + CONTINUATION), ``batch`` streams per write, as fast as
    the server takes them (or one round per ``pause`` seconds); a connection the server closed is
    replaced. Returns the number of header blocks sent."""
    block = request_headers(method) + b"".join(literal(b"x-f%d" % i, b"a" * 100) for i in range(fields))
    head, tail = block[: len(block) // 2], block[len(block) // 2 :]
    pool = [RawH2(path) for _ in range(conns)]
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i, conn in enumerate(pool):
            data = []
            for _ in range(batch):
                sid = conn.next_stream
                conn.next_stream += 2
                data.append(frame(HEADERS, 0, sid, head) + frame(CONTINUATION, END_HEADERS, sid, tail))
            if conn.send(b"".join(data)):
                sent += batch
            else:
                conn.close()
                with contextlib.suppress(OSError):
                    pool[i] = RawH2(path)
        time.sleep(pause)
    for conn in pool:
        conn.close()
    return sent


if __name__ == "__main__":  # python -m tests.support.h2raw SOCKET CONNS SECONDS FIELDS PAUSE
    import sys

    _, _sock, _conns, _secs, _fields, _pause = sys.argv
    print(header_flood(Path(_sock), int(_conns), float(_secs), int(_fields),
                       "/v2.KeyManagementService/Status", pause=float(_pause)))

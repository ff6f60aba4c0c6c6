"""Loopback stand-ins for cloud instance-metadata services (the paths and headers the real ones
require, handing out identities the emulator registered) and an HTTP CONNECT proxy."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit


class Quiet(BaseHTTPRequestHandler):
    """A handler that logs nothing and answers with a body of known length."""

    def log_message(self, *args: object) -> None:
        pass

    def send(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Loopback:
    """A threading HTTP server on a free loopback port, serving while in ``with``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def base(self) -> str:
        return f"http://{self.hostport}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class MetadataServer(Loopback):
    """Serves AWS IMDSv2 credentials, an Azure MI token and a GCP identity token."""

    def __init__(self, aws: tuple[str, str, str] | None = None, azure_token: str | None = None,
                 gcp_token: str | None = None) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(Quiet):
            def do_PUT(self) -> None:
                seen.append("PUT " + self.path)
                if self.path == "/latest/api/token" and aws:
                    self.send(200, "imds-session")
                else:
                    self.send(404, "")

            def do_GET(self) -> None:
                seen.append("GET " + self.path)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path.startswith("/latest/meta-data/iam/security-credentials/") and aws:
                    if self.headers.get("X-aws-ec2-metadata-token") != "imds-session":
                        return self.send(401, "")
                    role = url.path.rsplit("/", 1)[1]
                    if not role:
                        return self.send(200, "kms-role")
                    key_id, secret, token = aws
                    doc = {"AccessKeyId": key_id, "SecretAccessKey": secret, "Token": token}
                    return self.send(200, json.dumps(doc))
                if url.path == "/metadata/identity/oauth2/token" and azure_token:
                    if self.headers.get("Metadata") != "true":
                        return self.send(400, "")
                    if query.get("resource") != ["https://management.azure.com/"]:
                        return self.send(400, "")
                    return self.send(200, json.dumps({"access_token": azure_token}))
                if url.path.endswith("/service-accounts/default/identity") and gcp_token:
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self.send(403, "")
                    return self.send(200, gcp_token)
                return self.send(404, "")

        super().__init__(Handler)


class ConnectProxy(Loopback):
    """A loopback HTTP CONNECT proxy (for the `proxy` setting); counts tunnels."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        tunnels = self.tunnels

        class Handler(Quiet):
            def do_CONNECT(self) -> None:
                host, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=5)
                tunnels.append(self.path)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.close_connection = True  # the tunnel is the rest of this connection
                threading.Thread(target=_pump, args=(upstream, self.connection), daemon=True).start()
                _pump(self.connection, upstream)

        super().__init__(Handler)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until either closes, then close both."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

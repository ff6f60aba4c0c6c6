"""Loopback stand-ins for cloud instance-metadata services and an HTTP CONNECT proxy.

Not an Akeyless fake (that is the emulator's job): it only hands out the
identities the emulator registered, at the paths and with the headers the
real metadata services require, so the plugin's own metadata client is
exercised over real HTTP.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class MetadataServer:
    """Serves AWS IMDSv2 credentials, an Azure MI token and a GCP identity token."""

    def __init__(self, aws: tuple[str, str, str] | None = None, azure_token: str | None = None,
                 gcp_token: str | None = None) -> None:
        self.aws, self.azure_token, self.gcp_token = aws, azure_token, gcp_token
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:
                outer.seen.append("PUT " + self.path)
                if self.path == "/latest/api/token" and outer.aws:
                    self._send(200, "imds-session")
                else:
                    self._send(404, "")

            def do_GET(self) -> None:
                outer.seen.append("GET " + self.path)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path.startswith("/latest/meta-data/iam/security-credentials/") and outer.aws:
                    if self.headers.get("X-aws-ec2-metadata-token") != "imds-session":
                        return self._send(401, "")
                    role = url.path.rsplit("/", 1)[1]
                    if not role:
                        return self._send(200, "kms-role")
                    key_id, secret, token = outer.aws
                    doc = {"AccessKeyId": key_id, "SecretAccessKey": secret, "Token": token}
                    return self._send(200, json.dumps(doc))
                if url.path == "/metadata/identity/oauth2/token" and outer.azure_token:
                    if self.headers.get("Metadata") != "true":
                        return self._send(400, "")
                    if query.get("resource") != ["https://management.azure.com/"]:
                        return self._send(400, "")
                    return self._send(200, json.dumps({"access_token": outer.azure_token}))
                if url.path.endswith("/service-accounts/default/identity") and outer.gcp_token:
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self._send(403, "")
                    return self._send(200, outer.gcp_token)
                return self._send(404, "")

            def _send(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> MetadataServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class ConnectProxy:
    """A loopback HTTP CONNECT proxy (for the `proxy` setting); counts tunnels."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client) -> None:  # type: ignore[no-untyped-def]
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = client.recv(1024)
            if not chunk:
                client.close()
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=5)
        self.tunnels.append(target)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


def _pump(src, dst) -> None:  # type: ignore[no-untyped-def]
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

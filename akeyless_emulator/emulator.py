"""`Emulator`: the pytest-friendly facade (start/stop, TLS, control methods).

Why: a test should need one line to get a real HTTP(S) Akeyless-like server and one
line per scenario step (docs/emulator.md, "Quick start"); `/__emulator/` serves the
ones other processes need (harness, bench) over HTTP.
"""

from __future__ import annotations

import collections
import os
import ssl
import tempfile
import threading
from typing import Any

from akeyless_emulator.core import CallRecord, Core
from akeyless_emulator.errors import ApiError
from akeyless_emulator.faults import Fault, FaultRegistry
from akeyless_emulator.identity import Identity, new_secret
from akeyless_emulator.jwt import make_jwt
from akeyless_emulator.keys import Key, new_key, normalise_name
from akeyless_emulator.tls import CLIENT_CN, CertFiles, TestCA
from akeyless_emulator.transport import EmulatorServer


class Emulator:
    """A running (after `start()`) Akeyless API emulator; its arguments: docs/emulator.md.

    state_dir: given, keys, identities and tokens are saved after each change
    and survive a restart on the same dir; None, a temp dir holds the CA only.
    """

    def __init__(self, *, tls: bool = False, host: str = "127.0.0.1", port: int = 0,
                 state_dir: str | None = None, client_auth: str | None = None, server_cert: str = "valid",
                 base_path: str = "") -> None:
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="akeyless-emu-")
        self.state_dir = state_dir or self._tmp.name  # type: ignore[union-attr]
        self.tls = tls
        self.host = host
        self._port = port
        self.client_auth = client_auth
        self.server_cert_kind = server_cert
        self.base_path = base_path.rstrip("/")
        # Persist state only where the caller asked for it (restarts on the same
        # dir); a throw-away temp dir would only cost a file write per change.
        self.core: Core = Core(state_dir)
        self.faults: FaultRegistry = FaultRegistry()
        self.ca = TestCA(os.path.join(self.state_dir, "pki"))
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        files = self.ca.server_cert(self.server_cert_kind)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(files.cert_file, files.key_file)
        if self.client_auth:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=self.ca.cert_pem.decode())
        return ctx

    def start(self) -> Emulator:
        """Bind, start serving in a daemon thread, return self."""
        if self._server is not None:
            return self
        ctx = self._ssl_context() if self.tls else None
        self._server = EmulatorServer((self.host, self._port), self, ctx)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="akeyless-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, abort open connections and wake hung requests."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        """Stop and remove the temporary state dir (if the emulator made one)."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- where it listens --------------------------------------------------
    @property
    def port(self) -> int:
        """The bound TCP port (after start)."""
        if self._server is None:
            raise RuntimeError("emulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for `akeyless.Configuration(host=...)` (no trailing slash)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{self.base_path}"

    @property
    def control_url(self) -> str:
        """Base of the HTTP control plane (`POST {control_url}/fault`, ...)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}/__emulator"

    @property
    def ca_file(self) -> str:
        """PEM file of the test CA that signed the server certificate."""
        return self.ca.ca_file

    def mint_client_cert(self, common_name: str = CLIENT_CN) -> CertFiles:
        """A client certificate (and key) from the test CA, for mTLS/cert auth."""
        return self.ca.client_cert(common_name)

    # -- keys --------------------------------------------------------------
    def create_key(self, name: str) -> Key:
        """Create a DFC AES256GCM key (version 1); 409 if the name exists."""
        with self.core.changing():
            norm = normalise_name(name)
            if norm in self.core.keys:
                raise ApiError(409, "Conflict", "item already exists")
            self.core.keys[norm] = key = new_key(norm)
        return key

    def rotate_key(self, name: str) -> int:
        """Rotate; returns the new version number."""
        with self.core.changing():
            return self.core.key(name).add_version()

    def set_version_state(self, name: str, version: int, state: str) -> None:
        """Enabled, Disabled (its ciphertexts stop decrypting) or PendingDeletion."""
        with self.core.changing():
            self.core.key(name).set_version_state(version, state)

    def set_key_enabled(self, name: str, enabled: bool) -> None:
        """Disable (encrypt and decrypt answer 403) or re-enable the whole item."""
        with self.core.changing():
            self.core.key(name).enabled = enabled

    def key(self, name: str) -> Key:
        """The key object (inspect versions, states)."""
        with self.core.lock:
            return self.core.key(name)

    # -- identities and tokens --------------------------------------------
    def add_access_key(self, access_id: str | None = None, access_key: str | None = None) -> Identity:
        """Register access_key credentials; returns the Identity (has .access_id, .access_key)."""
        ident = Identity(access_id or "", "access_key", access_key=access_key or new_secret())
        return self.core.add_identity(ident)

    def add_universal_identity(self, access_id: str | None = None, ttl: float = 3600.0) -> str:
        """Register a Universal Identity; returns its initial `u-` token."""
        ident = self.core.add_identity(Identity(access_id or "", "universal_identity"))
        with self.core.changing():
            return self.core.tokens.issue(ident.access_id, "u", ttl).value

    def add_aws_iam(self, access_id: str | None, aws_access_key_id: str,
                    aws_secret_access_key: str) -> Identity:
        """aws_iam: cloud-ids SigV4-signed with this AWS key id and secret."""
        ident = Identity(access_id or "", "aws_iam", aws_access_key_id=aws_access_key_id,
                         aws_secret_access_key=aws_secret_access_key)
        return self.core.add_identity(ident)

    def add_azure_ad(self, access_id: str | None = None,
                     claims: dict[str, Any] | None = None) -> tuple[Identity, str]:
        """azure_ad: returns (identity, token); send base64(token) as cloud-id."""
        token = make_jwt({"aud": "https://management.azure.com/", "oid": "00000000-emu", **(claims or {})})
        return self.core.add_identity(Identity(access_id or "", "azure_ad", jwts={token})), token

    def add_gcp(self, access_id: str | None = None, audience: str = "akeyless.io",
                claims: dict[str, Any] | None = None) -> tuple[Identity, str]:
        """gcp: returns (identity, token); send base64(token) as cloud-id."""
        token = make_jwt({"aud": audience, "email": "kms@emu.iam.gserviceaccount.com", **(claims or {})})
        return self.core.add_identity(Identity(access_id or "", "gcp", jwts={token})), token

    def add_k8s(self, access_id: str | None = None, config_name: str = "k8s-conf") -> tuple[Identity, str]:
        """k8s: returns (identity, service-account JWT); send it base64 with the config name."""
        token = make_jwt({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:kube-system:kms"})
        ident = Identity(access_id or "", "k8s", jwts={token}, k8s_config_name=config_name)
        return self.core.add_identity(ident), token

    def add_cert(self, access_id: str | None = None) -> Identity:
        """cert: certificates issued by the emulator's test CA."""
        return self.core.add_identity(Identity(access_id or "", "cert", ca_pems=[self.ca.cert_pem]))

    def set_token_ttl(self, seconds: float) -> None:
        """TTL of `t-` tokens issued from now on."""
        with self.core.lock:
            self.core.token_ttl = seconds

    def expire_tokens(self) -> int:
        """Expire every issued token now."""
        with self.core.changing():
            return self.core.tokens.expire_all()

    # -- faults and accounting --------------------------------------------
    def fault(self, endpoint: str, kind: str | None = None, *, status: int | None = None, delay: float = 0.0,
              times: int | None = None, retry_after: int | None = None, extra: bool = False) -> Fault:
        """Inject a fault on `endpoint` ("*" = all). kind defaults to "status"
        when `status` is given, else "latency". times=None means permanent."""
        if kind is None:
            kind = "status" if status is not None else "latency"
        return self.faults.add(Fault(endpoint, kind, status or 503, delay, times, retry_after, extra))

    def clear_faults(self) -> int:
        """Remove all faults."""
        return self.faults.clear()

    @property
    def calls(self) -> collections.Counter[str]:
        """A snapshot: API calls per endpoint name (missing -> 0)."""
        with self.core.lock:
            return collections.Counter(self.core.calls)

    @property
    def requests(self) -> list[CallRecord]:
        """A snapshot of recorded API calls (no bodies, no secrets)."""
        with self.core.lock:
            return list(self.core.records)

    def encrypt_versions(self) -> dict[str, int]:
        """Per successful /encrypt: its result's fingerprint -> the item_version it used.

        The fingerprint is :func:`akeyless_emulator.api.result_fingerprint` of
        the binary ciphertext returned, so a test can ask which version really
        wrapped a given ciphertext, whatever its client labelled it with.
        """
        with self.core.lock:
            return {r.result_fp: r.item_version for r in self.core.records
                    if r.endpoint == "encrypt" and r.result_fp and r.item_version is not None}

    def wait_for(self, endpoint: str, *, calls: int | None = None, in_flight: int | None = None,
                 timeout: float = 5.0) -> bool:
        """Block until `calls[endpoint] >= calls` and/or `in_flight[endpoint] >= in_flight`.

        For concurrency tests ("the second caller arrives while the first
        decrypt is still in flight"). Returns False on timeout.
        """

        def reached() -> bool:
            ok_calls = calls is None or self.core.calls[endpoint] >= calls
            ok_flight = in_flight is None or self.core.in_flight[endpoint] >= in_flight
            return ok_calls and ok_flight

        with self.core.changed:
            return self.core.changed.wait_for(reached, timeout)

    def reset_calls(self) -> None:
        """Zero the counters and drop records."""
        with self.core.lock:
            self.core.calls.clear()
            self.core.records.clear()

    @property
    def handshake_failures(self) -> int:
        """TLS handshakes that failed (e.g. a client rejecting an expired cert)."""
        return self._server.handshake_failures if self._server else 0

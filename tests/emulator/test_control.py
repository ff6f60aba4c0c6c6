"""The HTTP control plane and the standalone `python -m akeyless_emulator` process."""

from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import akeyless
import pytest

from akeyless_emulator import Emulator
from akeyless_emulator.api import result_fingerprint

from .conftest import KEY, Client, api_error, make_api

ROOT = Path(__file__).resolve().parents[2]


def control(base: str, action: str, body: dict[str, Any] | None = None, ca: str | None = None) -> Any:
    """POST (or GET when body is None) to the control plane; returns (status, JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}/{action}", data=data, headers={"Content-Type": "application/json"})
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class TestControlPlane:
    """Every control action works over HTTP and is not counted as an API call."""

    def test_keys_faults_and_counts_over_http(self, plain_emu: Emulator, plain_client: Client) -> None:
        """rotate, fault, calls, clear-faults: the same effects as the Python API."""
        base = plain_emu.control_url
        ciphertext = plain_client.encrypt(b"x")
        assert control(base, "rotate-key", {"name": KEY}) == (200, {"new_item_version": 2})
        assert control(base, "fault", {"endpoint": "decrypt", "status": 503, "times": 1})[0] == 200
        assert api_error(lambda: plain_client.decrypt(ciphertext)).status == 503
        assert plain_client.decrypt(ciphertext) == b"x"
        status, out = control(base, "calls")
        assert status == 200
        assert out["calls"] == {"encrypt": 1, "decrypt": 2, "auth": 1}
        assert out["in_flight"] == {}
        fp = result_fingerprint(base64.b64decode(ciphertext))
        assert control(base, "encrypt-versions") == (200, {"encrypt_versions": {fp: 1}})
        assert control(base, "version-state", {"name": KEY, "version": 1, "state": "Disabled"})[0] == 200
        assert api_error(lambda: plain_client.decrypt(ciphertext)).status == 400
        control(base, "fault", {"endpoint": "*", "kind": "reset"})
        assert control(base, "clear-faults", {}) == (200, {"cleared": 1})

    def test_identities_and_tokens_over_http(self, plain_emu: Emulator) -> None:
        """add-access-key, token-ttl and expire-tokens drive auth from outside."""
        base = plain_emu.control_url
        _, creds = control(base, "add-access-key", {"access-id": "p-control00001", "token-ttl": 60})
        assert creds["access_id"] == "p-control00001"
        api = make_api(plain_emu)
        token = api.auth(akeyless.Auth(access_id=creds["access_id"], access_key=creds["access_key"])).token
        c = Client(api, token, creds["access_id"])
        assert c.encrypt(b"x")
        assert control(base, "expire-tokens", {})[1]["expired"] >= 1
        assert api_error(lambda: c.encrypt(b"x")).status == 401
        _, uid = control(base, "add-universal-identity", {"ttl": 30})
        assert uid["token"].startswith("u-")

    def test_cloud_identities_over_http(self, plain_emu: Emulator) -> None:
        """add-gcp / add-k8s / add-cert return what the SDK needs to authenticate."""
        base = plain_emu.control_url
        api = make_api(plain_emu)
        _, gcp = control(base, "add-gcp", {"audience": "kms.example"})
        cloud_id = base64.b64encode(gcp["token"].encode()).decode()
        out = api.auth(
            akeyless.Auth(
                access_id=gcp["access_id"], access_type="gcp", cloud_id=cloud_id, gcp_audience="kms.example"
            )
        )
        assert out.token.startswith("t-")
        _, k8s = control(base, "add-k8s", {"config-name": "c1"})
        sa = base64.b64encode(k8s["token"].encode()).decode()
        fields = {"access_type": "k8s", "k8s_auth_config_name": "c1", "k8s_service_account_token": sa}
        assert api.auth(akeyless.Auth(access_id=k8s["access_id"], **fields)).token
        _, cert = control(base, "add-cert", {})
        _, files = control(base, "mint-client-cert", {"common-name": "n1"})
        fields = {
            "access_type": "cert",
            "cert_data": base64.b64encode(Path(files["cert_file"]).read_bytes()).decode(),
            "key_data": base64.b64encode(Path(files["key_file"]).read_bytes()).decode(),
        }
        assert api.auth(akeyless.Auth(access_id=cert["access_id"], **fields)).token

    def test_state_lists_keys_identities_and_faults(self, plain_emu: Emulator) -> None:
        """GET state: a snapshot without secrets."""
        ident = plain_emu.add_access_key()
        plain_emu.fault("encrypt", status=503)
        status, state = control(plain_emu.control_url, "state")
        assert status == 200
        assert state["keys"][0]["item_name"] == KEY
        assert state["faults"][0]["status"] == 503
        assert ident.access_key not in json.dumps(state)

    def test_errors(self, plain_emu: Emulator) -> None:
        """Unknown action 404, missing field 400, state change by GET 405, API error passed through."""
        base = plain_emu.control_url
        assert control(base, "nope", {})[0] == 404
        assert control(base, "rotate-key", {})[0] == 400
        assert control(base, "rotate-key")[0] == 405
        assert control(base, "rotate-key", {"name": "/missing"})[0] == 404
        assert control(base, "fault", {"endpoint": "encrypt", "kind": "bogus"})[0] == 400
        assert plain_emu.calls == {}


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """`python -m akeyless_emulator` in its own process, ready line parsed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "akeyless_emulator", "--port", "0", "--tls", "--state-dir", str(tmp_path)]
    args += ["--create-key", KEY, "--access-id", "p-standalone01", "--access-key", "k-standalone", "--uid"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=30), "emulator printed no ready line within 30 s"
        line = proc.stdout.readline()
        assert line, "emulator exited before printing its ready line"
        yield proc, json.loads(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


class TestStandalone:
    """The process prints one JSON line, serves the SDK, and stops on SIGTERM."""

    def test_ready_line_sdk_and_sigterm(
        self, standalone: tuple[subprocess.Popen[str], dict[str, Any]], tmp_path: Path
    ) -> None:
        """Credentials from the ready line authenticate; state survives a restart."""
        proc, ready = standalone
        assert ready["access_id"] == "p-standalone01"
        assert ready["keys"] == [KEY]
        assert ready["uid_token"].startswith("u-")
        conf = akeyless.Configuration(host=ready["url"])
        conf.ssl_ca_cert = ready["ca_file"]
        api = akeyless.V2Api(akeyless.ApiClient(conf))
        token = api.auth(akeyless.Auth(access_id="p-standalone01", access_key="k-standalone")).token
        c = Client(api, token, "p-standalone01")
        ciphertext = c.encrypt(b"persisted")
        assert control(ready["control_url"], "calls", ca=ready["ca_file"])[1]["calls"]["encrypt"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        with Emulator(tls=True, state_dir=str(tmp_path)) as again:
            conf2 = akeyless.Configuration(host=again.url)
            conf2.ssl_ca_cert = again.ca_file
            c2 = Client(akeyless.V2Api(akeyless.ApiClient(conf2)), token, "p-standalone01")
            assert c2.decrypt(ciphertext) == b"persisted"

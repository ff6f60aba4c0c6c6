"""The HTTP control plane and the standalone `python -m akeyless_emulator` process."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import akeyless
import pytest

from akeyless_emulator import Emulator
from akeyless_emulator.api import result_fingerprint
from tests.support.emulator import EmulatorProcess, control
from tests.support.procs import REPO

from .conftest import KEY, Client, api_error, make_api


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
        out = api.auth(akeyless.Auth(access_id=gcp["access_id"], access_type="gcp", cloud_id=cloud_id,
                                     gcp_audience="kms.example"))
        assert out.token.startswith("t-")
        _, k8s = control(base, "add-k8s", {"config-name": "c1"})
        sa = base64.b64encode(k8s["token"].encode()).decode()
        fields = {"access_type": "k8s", "k8s_auth_config_name": "c1", "k8s_service_account_token": sa}
        assert api.auth(akeyless.Auth(access_id=k8s["access_id"], **fields)).token
        _, cert = control(base, "add-cert", {})
        _, files = control(base, "mint-client-cert", {"common-name": "n1"})
        fields = {"access_type": "cert", "cert_data": base64.b64encode(Path(files["cert_file"]).read_bytes()).decode(),
                  "key_data": base64.b64encode(Path(files["key_file"]).read_bytes()).decode()}
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
def standalone(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """`python -m akeyless_emulator` in its own process, started once its ready line is printed."""
    argv = [sys.executable, "-m", "akeyless_emulator", "--port", "0", "--tls", "--state-dir", str(tmp_path / "state"),
            "--create-key", KEY, "--access-id", "p-standalone01", "--access-key", "k-standalone", "--uid"]
    proc = EmulatorProcess(name="standalone", argv=argv, log_path=tmp_path / "emulator.log", cwd=REPO)
    try:
        proc.start()  # a ready line that never comes raises: the process is stopped all the same
        yield proc
    finally:
        proc.stop()


class TestStandalone:
    """The process prints one JSON line, serves the SDK, and stops on SIGTERM."""

    def test_ready_line_sdk_and_sigterm(self, standalone: EmulatorProcess, tmp_path: Path) -> None:
        """Credentials from the ready line authenticate; state survives a restart."""
        ready = standalone.ready
        assert ready["access_id"] == "p-standalone01"
        assert ready["keys"] == [KEY]
        assert ready["uid_token"].startswith("u-")
        api = make_api(standalone)
        token = api.auth(akeyless.Auth(access_id="p-standalone01", access_key="k-standalone")).token
        ciphertext = Client(api, token, "p-standalone01").encrypt(b"persisted")
        assert control(ready["control_url"], "calls", ca=ready["ca_file"])[1]["calls"]["encrypt"] == 1
        assert standalone.stop() == 0  # SIGTERM
        with Emulator(tls=True, state_dir=str(tmp_path / "state")) as again:
            assert Client(make_api(again), token, "p-standalone01").decrypt(ciphertext) == b"persisted"

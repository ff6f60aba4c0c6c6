"""The HTTP control plane and the standalone `python -m akeyless_emulator` process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import akeyless
import pytest

from akeyless_emulator import Emulator
from tests.support.emulator import EmulatorProcess, control
from tests.support.procs import REPO

from .conftest import KEY, Client, api_error, make_api


class TestControlPlane:
    """The control actions other processes use work over HTTP and are not counted as API calls."""

    def test_keys_faults_tokens_and_counts_over_http(self, plain_emu: Emulator, plain_client: Client) -> None:
        """rotate-key, fault, calls, version-state, clear-faults, add-access-key, expire-tokens:
        the same effects as the Python API."""
        base = plain_emu.control_url
        ciphertext = plain_client.encrypt(b"x")
        assert control(base, "rotate-key", {"name": KEY}) == (200, {"new_item_version": 2})
        assert control(base, "fault", {"endpoint": "decrypt", "status": 503, "times": 1})[0] == 200
        assert api_error(lambda: plain_client.decrypt(ciphertext)).status == 503
        assert plain_client.decrypt(ciphertext) == b"x"
        assert control(base, "calls", {}) == (200, {"calls": {"encrypt": 1, "decrypt": 2, "auth": 1}})
        assert control(base, "version-state", {"name": KEY, "version": 1, "state": "Disabled"})[0] == 200
        assert api_error(lambda: plain_client.decrypt(ciphertext)).status == 400
        control(base, "fault", {"endpoint": "*", "kind": "reset"})
        assert control(base, "clear-faults", {}) == (200, {"cleared": 1})
        _, creds = control(base, "add-access-key", {"access-id": "p-control00001"})
        assert creds["access_id"] == "p-control00001"
        token = plain_client.api.auth(akeyless.Auth(access_id=creds["access_id"], access_key=creds["access_key"])).token
        c = Client(plain_client.api, token, creds["access_id"])
        assert c.encrypt(b"x")
        assert control(base, "expire-tokens", {})[1]["expired"] >= 1
        assert api_error(lambda: c.encrypt(b"x")).status == 401

    def test_errors(self, plain_emu: Emulator) -> None:
        """Unknown action 404, missing field 400, a GET 405, API error passed through."""
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
            "--create-key", KEY, "--access-id", "p-standalone01"]
    proc = EmulatorProcess(name="standalone", argv=argv, log_path=tmp_path / "emulator.log", cwd=REPO)
    try:
        proc.start()  # a ready line that never comes raises: the process is stopped all the same
        yield proc
    finally:
        proc.stop()


class TestStandalone:
    """The process prints one JSON line, serves the SDK, and stops on SIGTERM."""

    def test_ready_line_sdk_and_sigterm(self, standalone: EmulatorProcess, tmp_path: Path) -> None:
        """Credentials from the ready line authenticate; state and the CA clients pin survive a restart."""
        ready = standalone.ready
        ca = Path(ready["ca_file"]).read_bytes()
        assert ready["access_id"] == "p-standalone01"
        api = make_api(standalone)
        token = api.auth(akeyless.Auth(access_id="p-standalone01", access_key=ready["access_key"])).token
        ciphertext = Client(api, token, "p-standalone01").encrypt(b"persisted")
        assert control(ready["control_url"], "calls", {}, ready["ca_file"])[1]["calls"]["encrypt"] == 1
        assert standalone.stop() == 0  # SIGTERM
        with Emulator(tls=True, state_dir=str(tmp_path / "state")) as again:
            assert Path(again.ca_file).read_bytes() == ca
            assert Client(make_api(again), token, "p-standalone01").decrypt(ciphertext) == b"persisted"

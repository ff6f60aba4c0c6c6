"""The socket permission model, end to end on the real process."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import grpc
import pytest

from tests.support import plugin as pm
from tests.support.kmsclient import Client


def test_modes_and_owner(plugin: pm.Plugin) -> None:
    """The kernel refuses a client of another uid at connect(): file modes are the first control."""
    st = plugin.socket.lstat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert stat.S_IMODE(plugin.socket.parent.stat().st_mode) == 0o700
    probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1]); print('CONNECTED')\n"
             "except PermissionError: print('DENIED')\n")
    out = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                          "/usr/bin/python3", "-c", probe, str(plugin.socket)],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "DENIED", out.stderr


def test_group_mode(tmp_path: Path) -> None:
    with pm.running(tmp_path / "g", ["--socket-group", "daemon"]) as p:
        st = p.socket.lstat()
        assert stat.S_IMODE(st.st_mode) == 0o660
        import grp
        assert st.st_gid == grp.getgrnam("daemon").gr_gid
        assert stat.S_IMODE(p.socket.parent.stat().st_mode) & 0o777 == 0o750


def test_peer_uid_allowlist_refusal_is_audited(tmp_path: Path) -> None:
    with pm.running(tmp_path / "a", ["--allowed-uids", "4242"]) as p:
        with Client(p.socket, timeout=2) as c:
            with pytest.raises(grpc.RpcError) as info:
                c.status()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        records = p.audit_until(lambda rs: any(r["event"] == "peer_refused" for r in rs))
        refusals = [r for r in records if r["event"] == "peer_refused"]
        assert refusals and refusals[0]["peer_uid"] == os.geteuid()
        assert refusals[0]["reason"] == "uid_not_allowed" and refusals[0]["peer_pid"] > 0
        _status, body = p.http("/metrics")
        assert b'kms_appliance_peer_refusals_total{reason="uid_not_allowed"}' in body


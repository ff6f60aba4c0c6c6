"""The distroless contract: binary alone in an empty read-only root, uid 65532, no capabilities;
the host talks to it through the socket in a bind-mounted directory, as kube-apiserver would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.binary import sandbox
from tests.support.emulator import start_emulator
from tests.support.kmsclient import Client, round_trip
from tests.support.plugin import Plugin
from tests.support.procs import descendants, status_fields

pytestmark = pytest.mark.binary


def test_v2_and_v1_round_trip_in_empty_root(local_plugin: Plugin) -> None:
    round_trip(local_plugin.socket, b"\x01" * 32, timeout=10)
    assert local_plugin.proc.poll() is None


def test_runs_as_nonroot_without_capabilities_and_is_not_dumpable(local_plugin: Plugin) -> None:
    """All three processes of the chain as uid 65532, chrooted, with no capability; the serving
    one (still serving through its /proc/self/fd socket path) has RLIMIT_CORE 0 and is not
    dumpable (its /proc files belong to root)."""
    with Client(local_plugin.socket, timeout=10) as client:
        assert client.status().healthz == "ok"
    inside = sandbox.binary_pids(local_plugin.proc.pid)
    assert inside, "no process inside the sandbox"
    for pid in inside:  # the chain's three processes: both bootloaders and Python
        st = status_fields(pid)
        assert st["Uid"].split() == ["65532"] * 4, st["Uid"]
        assert st["Gid"].split() == ["65532"] * 4, st["Gid"]
        assert st["Groups"] == "", st["Groups"]
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(st[cap], 16) == 0, (pid, cap, st[cap])
        assert st["NoNewPrivs"] == "1"
        root = os.readlink(f"/proc/{pid}/root")
        assert root != "/", "not chrooted"
    assert local_plugin.socket.stat().st_uid == 65532
    assert (local_plugin.socket.stat().st_mode & 0o777) == 0o600
    python = next(p for p in inside if not descendants(p))  # the chain's leaf
    limits = Path(f"/proc/{python}/limits").read_text().splitlines()
    core = next(line for line in limits if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core
    assert os.stat(f"/proc/{python}/environ").st_uid == 0, "dumpable: /proc files owned by 65532"


def test_root_is_read_only_and_empty(binary: Path) -> None:
    """The binary sees nothing but itself, the listed nodes and /tmp; it cannot write to /."""
    box = sandbox.Sandbox(binary)
    r = box.run(["keyring", "init", "/keyring.json"], timeout=120)
    assert r.returncode != 0
    assert b"Read-only file system" in r.stderr or b"read-only" in r.stderr.lower(), r.stderr


def test_akeyless_round_trip_in_empty_root(binary: Path, sock_dir: Path, tmp_path: Path) -> None:
    """v2 and v1 through the Akeyless backend, the KEK held by the emulator over HTTPS; the
    settings as flags, the access key in the environment (as a Secret would give it)."""
    emu = start_emulator(tmp_path, world_readable=True)
    try:
        args = ["--backend", "akeyless", "--akeyless-url", emu.url, "--key-name", emu.key,
                "--access-id", emu.ready["access_id"], "--access-type", "access_key"]
        env = {"AKEYLESS_ACCESS_KEY": emu.ready["access_key"], "KMS_APPLIANCE_AKEYLESS_CA_FILE": "/etc/kms/ca.pem"}
        box = sandbox.Sandbox(binary, binds={sock_dir: "/run/kms", emu.ca_file: "/etc/kms/ca.pem"}, env=env)
        with box.serving(tmp_path / "sandboxed", sock_dir, *args) as p:
            round_trip(p.socket, b"\x02" * 32, timeout=15)
            assert p.proc.poll() is None
    finally:
        emu.stop()

"""Operator mistakes and a hostile neighbour, through the real CLI.

A mistake in the configuration must end in one line on stderr naming the
setting, exit 2 (configuration) or 1 (refusal to start), no traceback, no
echo of a secret, and no echo of a huge value. A start-up race on the socket
directory must not crash; ``socket_group`` must really let the group in; a
socket directory whose parent another user may write is reported.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import ledger
from tests.support import plugin as pm

MARKER = "H6-SECRET-MARKER-5f1c9a"
HUGE = "x" * 10_000


def _cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KMS_APPLIANCE_", "AKEYLESS_"))}
    proc = subprocess.run([pm.python(), "-m", "kms_appliance", *args], cwd=cwd or pm.REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    ledger.text(proc.stdout, proc.stderr)
    return proc


def _one_clean_line(proc: subprocess.CompletedProcess[str], code: int, setting: str) -> str:
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == code, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert setting in lines[0]
    assert MARKER not in proc.stdout + proc.stderr
    assert len(proc.stderr) < 400, "no value may be echoed at length"
    return lines[0]


def _toml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[server]\nsocket = "{tmp_path}/run/kms.sock"\n[observability]\nhttp_listen = ""\n'
                    + body)
    return path


AKEYLESS = f'[akeyless]\nurl = "https://127.0.0.1:9"\naccess_id = "p-abc"\naccess_key = "{MARKER}"\n' \
           'key_name = "/k"\n'


class TestOneLine:
    """Each mistake: one line naming the setting, the right exit status, nothing echoed."""

    @pytest.mark.parametrize("command", ["serve", "check"])
    @pytest.mark.parametrize("proxy", [f"http://u:{MARKER}@[::1", f"http://{MARKER}:99999", "ftp://p:1"])
    def test_malformed_akeyless_proxy(self, tmp_path: Path, command: str, proxy: str) -> None:
        ledger.secret(MARKER)
        config = _toml(tmp_path, AKEYLESS + f'proxy = "{proxy}"\n')
        _one_clean_line(_cli(command, "--config", str(config)), 2, "akeyless.proxy")

    def test_integer_of_100k_digits(self, tmp_path: Path) -> None:
        config = _toml(tmp_path, "[cache]\nsize = " + "9" * 100_000 + "\n")
        line = _one_clean_line(_cli("serve", "--config", str(config)), 2, "cache.size")
        assert "4300 digits" in line

    def test_huge_flag_value_is_not_echoed(self, tmp_path: Path) -> None:
        proc = _cli("serve", "--config", str(_toml(tmp_path, "")), "--backend", HUGE + "\x1b[2J")
        line = _one_clean_line(proc, 2, "server.backend")
        assert "x" * 100 not in line and "\x1b" not in line

    @pytest.mark.parametrize(("setting", "body"), [
        ("cache.enabled", f'[cache]\nenabled = "{HUGE}"\n'),
        ("cache.ttl", f'[cache]\nttl = "{HUGE}"\n'),
        ("cache.size", "[cache]\nsize = " + "9" * 4000 + "\n"),
        ("local.reload_interval", f'[local]\nreload_interval = "{HUGE}"\n'),
    ])
    def test_no_value_echoed_at_length(self, tmp_path: Path, setting: str, body: str) -> None:
        line = _one_clean_line(_cli("serve", "--config", str(_toml(tmp_path, body))), 2, setting)
        assert "x" * 100 not in line

    def test_huge_unknown_key_is_not_echoed(self, tmp_path: Path) -> None:
        config = _toml(tmp_path, f'[cache]\n"{HUGE}" = 1\n')
        line = _one_clean_line(_cli("serve", "--config", str(config)), 2, "cache.")
        assert "x" * 100 not in line


def _serve_cmd(sock: Path, keyring: Path, audit: Path) -> list[str]:
    return ["serve", "--backend", "local", "--keyring", str(keyring), "--socket", str(sock),
            "--audit-log", str(audit), "--http-listen", "", "--config", os.devnull]


# Imports done before the barrier, so the 40 starts reach the mkdir together (the race is real).
_RACER = """
import os, sys
import kms_appliance.app, kms_appliance.cli
ready, gate = int(sys.argv[1]), int(sys.argv[2])
os.write(ready, b"r")
os.read(gate, 1)
sys.exit(kms_appliance.cli.main(sys.argv[3:]))
"""


@pytest.fixture
def racers(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)


def test_forty_concurrent_starts_race_cleanly(tmp_path: Path,
                                              racers: list[subprocess.Popen[str]]) -> None:
    """Every start serves or refuses in one clean line; none dies on FileExistsError."""
    pm.keyring_init(tmp_path / "keyring.json")
    sock = tmp_path / "deep" / "run" / "kms.sock"
    gate_r, gate_w = os.pipe()
    ready_r, ready_w = os.pipe()
    for i in range(40):
        cmd = [pm.python(), "-c", _RACER, str(ready_w), str(gate_r),
               *_serve_cmd(sock, tmp_path / "keyring.json", tmp_path / f"audit{i}.log")]
        racers.append(subprocess.Popen(cmd, cwd=pm.REPO, pass_fds=(ready_w, gate_r), text=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    os.close(gate_r)
    os.close(ready_w)
    got, deadline = 0, time.monotonic() + 60
    while got < 40 and time.monotonic() < deadline and select.select([ready_r], [], [], 1)[0]:
        got += len(os.read(ready_r, 64))  # every child has imported and waits at the gate
    os.close(ready_r)
    os.close(gate_w)  # EOF for every child at once: the starts hit the mkdir together
    pm.wait_for_socket(sock, None, timeout=90)  # 40 starts at once on a shared 2-core CI runner
    deadline = time.monotonic() + 90
    exited: list[tuple[int, str]] = []
    for p in racers:
        try:
            code = p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            continue  # still serving
        err = p.stderr.read() if p.stderr else ""
        ledger.text(err)
        exited.append((code, err))
    assert exited, "39 of the 40 must refuse"
    for code, err in exited:
        assert "Traceback" not in err and "FileExistsError" not in err, err[-2000:]
        assert code == 1 and len(err.splitlines()) == 1, err
        assert "already serving" in err, err
    serving = [p for p in racers if p.poll() is None]
    assert len(serving) == 1, f"{len(serving)} still running: each start serves or refuses"
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(os.fspath(sock))


GROUP = 4242  # a gid no user has as primary group
NOBODY = 65534


@pytest.fixture
def open_tree() -> Iterator[Path]:
    """A work directory nobody can traverse (pytest's tmp_path is 0700)."""
    top = Path(tempfile.mkdtemp(prefix="h6-op-"))
    top.chmod(0o755)
    (top / "plugin").mkdir(mode=0o755)
    yield top / "plugin"
    subprocess.run(["rm", "-rf", os.fspath(top)], check=False)


def _connect_as_group_member(sock: Path) -> int:
    """errno of connect() from a forked child that is uid nobody in the socket group (0: connected)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 100
        try:
            os.setgroups([GROUP])
            os.setgid(GROUP)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(os.fspath(sock))
            code = 0
        except OSError as exc:
            code = exc.errno or 101
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_socket_group_reaches_socket_in_existing_0700_dir(open_tree: Path) -> None:
    """A 0700 directory left by an earlier run is opened to the group (or start is refused)."""
    (open_tree / "run").mkdir(mode=0o700)
    plugin = ledger.plugin(pm.start(open_tree, ["--socket-group", str(GROUP)]))
    try:
        assert _connect_as_group_member(plugin.socket) == 0, "a socket-group member must connect"
        st = (open_tree / "run").stat()
        assert st.st_gid == GROUP and st.st_mode & 0o7777 == 0o2750
    finally:
        plugin.stop()


def test_socket_group_dir_with_other_files_is_refused(open_tree: Path) -> None:
    """A directory holding anything else is not widened: start is refused with the reason."""
    (open_tree / "run").mkdir(mode=0o700)
    (open_tree / "run" / "private.txt").write_text("not for the group")
    plugin = ledger.plugin(pm.start(open_tree, ["--socket-group", str(GROUP)], wait=False))
    assert plugin.proc.wait(30) == 1
    err = plugin.stderr.read_text()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "keeps socket group" in err
    assert (open_tree / "run").stat().st_mode & 0o777 == 0o700


def test_writable_parent_is_warned_at_start_and_in_check(tmp_path: Path, open_tree: Path) -> None:
    """Another user may rename the socket directory away: one warning line, and WARN in check."""
    shared = open_tree.parent / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o777)  # the parent of run/: writable by everyone, not sticky
    sock = shared / "run" / "kms.sock"
    pm.keyring_init(tmp_path / "keyring.json")
    report = _cli("check", "--backend", "local", "--keyring", str(tmp_path / "keyring.json"),
                  "--socket", str(sock), "--config", os.devnull)
    assert report.returncode == 0, report.stdout + report.stderr
    assert any(line.startswith("socket_parent") and "WARN" in line and "writable by every user" in line
               for line in report.stdout.splitlines()), report.stdout
    plugin = ledger.plugin(pm.start(tmp_path / "plugin", keyring=tmp_path / "keyring.json",
                                    socket_path=sock))
    try:  # logged before the bind, so it is there once the socket answers
        warnings = [ln for ln in plugin.stderr.read_text().splitlines() if "writable by every user" in ln]
        assert len(warnings) == 1, plugin.stderr.read_text()
    finally:
        plugin.stop()

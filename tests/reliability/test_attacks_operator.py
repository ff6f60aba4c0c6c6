"""Operator mistakes and a hostile neighbour, through the real CLI: an operator reads one line
naming the setting, never a traceback or a secret, and a racing or shared-directory start is safe."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.probes import PEER_PROBE, as_nobody, one_line, serve_args
from tests.support import attacks, ledger
from tests.support import plugin as pm
from tests.support.plugin import operator_cli as cli
from tests.support.procs import eventually

MARKER = "H6-SECRET-MARKER-5f1c9a"
HUGE = "x" * 10_000


def _one_clean_line(proc: subprocess.CompletedProcess[str], code: int, setting: str) -> str:
    assert MARKER not in proc.stdout + proc.stderr
    return one_line(proc, code, setting)


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
        _one_clean_line(cli(command, "--config", str(config)), 2, "akeyless.proxy")

    def test_integer_of_100k_digits(self, tmp_path: Path) -> None:
        config = _toml(tmp_path, "[cache]\nsize = " + "9" * 100_000 + "\n")
        line = _one_clean_line(cli("serve", "--config", str(config)), 2, "cache.size")
        assert "4300 digits" in line

    @pytest.mark.parametrize(("argv", "setting"), [
        (("serve", "--backend"), "server.backend"),
        *((("static-pod", "--image", "r.example/kms:1", flag), flag) for flag in ("--name", "--namespace", "--memory-limit")),
    ], ids=["serve--backend", "static-pod--name", "static-pod--namespace", "static-pod--memory-limit"])
    def test_huge_flag_value_is_not_echoed(self, tmp_path: Path, argv: tuple[str, ...], setting: str) -> None:
        proc = cli(argv[0], "--config", str(_toml(tmp_path, "")), *argv[1:], HUGE + "\x1b[2J")
        line = _one_clean_line(proc, 2, setting)
        assert "x" * 100 not in line and "\x1b" not in line

    @pytest.mark.parametrize(("setting", "body"), [
        ("cache.enabled", f'[cache]\nenabled = "{HUGE}"\n'),
        ("cache.ttl", f'[cache]\nttl = "{HUGE}"\n'),
        ("cache.size", "[cache]\nsize = " + "9" * 4000 + "\n"),
        ("local.reload_interval", f'[local]\nreload_interval = "{HUGE}"\n'),
        ("cache.", f'[cache]\n"{HUGE}" = 1\n'),  # an unknown key
    ])
    def test_no_value_echoed_at_length(self, tmp_path: Path, setting: str, body: str) -> None:
        line = _one_clean_line(cli("serve", "--config", str(_toml(tmp_path, body))), 2, setting)
        assert "x" * 100 not in line

    @pytest.mark.parametrize("argv", [("encryption-config", "--kms-api"), ("keyring",), ("version", "--json")])
    def test_usage_error_of_10kb_is_one_line(self, argv: tuple[str, ...]) -> None:
        line = _one_clean_line(cli(*argv, HUGE + "\x1b[2J"), 2, "usage error")
        assert "x" * 300 not in line and "\x1b" not in line

    def test_path_with_control_characters_cannot_forge_a_line(self, tmp_path: Path) -> None:
        bad = f"{tmp_path}/no\x1b[2J\nFAKE LOG LINE/audit.log"
        line = _one_clean_line(cli("serve", "--config", str(_toml(tmp_path, "")), "--audit-log", bad),
                               2, "observability.audit_log")
        assert "\x1b" not in line


# One process imports the plugin once and forks the 40 starts (40 interpreters importing grpc
# would take a shared 2-core runner minutes); each child waits at the gate, then runs the real
# CLI's main() with its stderr in err<i> and its exit status in code<i>. mkdir is made slow (a
# start preempted between its check and its mkdir) so the starts really collide there.
_FORKER = """
import os, sys, time, traceback
import kms_appliance.app, kms_appliance.cli
real_mkdir = os.mkdir
def slow_mkdir(*args, **kwargs):
    time.sleep(0.2)
    return real_mkdir(*args, **kwargs)
n, out, ready, gate, args = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
for i in range(n):
    if os.fork() == 0:
        code = 99
        try:
            os.dup2(os.open(f"{out}/err{i}", os.O_WRONLY | os.O_CREAT, 0o600), 2)
            os.write(ready, b"r")
            os.read(gate, 1)
            os.mkdir = slow_mkdir
            code = kms_appliance.cli.main([a.replace("{i}", str(i)) for a in args])
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            with open(f"{out}/.code{i}", "w") as f:  # renamed whole: the test never reads it half-written
                f.write(str(code))
            os.replace(f"{out}/.code{i}", f"{out}/code{i}")
            os._exit(code)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


@pytest.fixture
def forker() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


def test_forty_concurrent_starts_race_cleanly(tmp_path: Path,
                                              forker: list[subprocess.Popen[bytes]]) -> None:
    """Every start serves or refuses in one clean line; none dies on FileExistsError."""
    pm.keyring_init(tmp_path / "keyring.json")
    sock, out = tmp_path / "deep" / "run" / "kms.sock", tmp_path / "out"
    out.mkdir()
    gate_r, gate_w = os.pipe()
    ready_r, ready_w = os.pipe()
    cmd = [sys.executable, "-c", _FORKER, "40", str(out), str(ready_w), str(gate_r),
           *serve_args(tmp_path / "keyring.json", sock, "--audit-log", str(tmp_path / "audit{i}.log"))]
    forker.append(subprocess.Popen(cmd, cwd=pm.REPO, pass_fds=(ready_w, gate_r), start_new_session=True))
    os.close(gate_r)
    os.close(ready_w)
    got, deadline = 0, time.monotonic() + 60
    while got < 40 and select.select([ready_r], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(ready_r, 64)
        if not chunk:
            break  # every child is gone
        got += len(chunk)
    os.close(ready_r)
    assert got == 40, "every start waits at the gate"
    os.close(gate_w)  # EOF for every child at once: the starts hit the mkdir together
    eventually(lambda: len(list(out.glob("code*"))) >= 39, 60, 0.05)
    codes = {int(f.name[4:]): int(f.read_text()) for f in out.glob("code*")}
    errs = {i: (out / f"err{i}").read_text() for i in codes}
    ledger.text(*errs.values())
    for i, code in codes.items():
        assert "Traceback" not in errs[i] and "FileExistsError" not in errs[i], errs[i][-2000:]
        assert code == 1 and len(errs[i].splitlines()) == 1, errs[i]
        assert "already serving" in errs[i], errs[i]
    assert len(codes) == 39, f"{40 - len(codes)} still running: each start serves or refuses"
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(os.fspath(sock))


GROUP = 4242  # a gid no user has as primary group


@pytest.fixture
def open_tree() -> Iterator[Path]:
    """A work directory uid 65534 (nobody) may traverse, which pytest's 0700 tmp_path is not."""
    with attacks.traversable() as top:
        yield top / "g"


def test_socket_group_reaches_socket_in_existing_0700_dir(open_tree: Path) -> None:
    """A 0700 directory left by an earlier run is opened to the group (or start is refused)."""
    (open_tree / "run").mkdir(mode=0o700)
    with pm.running(open_tree, ["--socket-group", str(GROUP)]) as plugin:
        verdict = as_nobody(PEER_PROBE, str(plugin.socket), groups=str(GROUP))
        assert verdict == "SERVED", f"a socket-group member must connect: {verdict}"
        st = (open_tree / "run").stat()
        assert st.st_gid == GROUP and st.st_mode & 0o7777 == 0o2750


def test_socket_group_dir_with_other_files_is_refused(open_tree: Path) -> None:
    """A directory holding a file the group could then read is not widened: refused with the reason."""
    (open_tree / "run").mkdir(mode=0o700)
    (open_tree / "run" / "private.txt").write_text("not for the group")
    (open_tree / "run" / "private.txt").chmod(0o644)  # readable once the directory is opened
    plugin = pm.start(open_tree, ["--socket-group", str(GROUP)], wait=False)
    assert plugin.proc.wait(30) == 1
    err = plugin.stderr.read_text()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "keeps socket group" in err
    assert (open_tree / "run").stat().st_mode & 0o7777 == 0o700  # not widened, no setgid bit


def test_writable_parent_is_warned_at_start_and_in_check(tmp_path: Path, open_tree: Path) -> None:
    """Another user may rename the socket directory away: one warning line, and WARN in check."""
    shared = open_tree.parent / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o777)  # the parent of run/: writable by everyone, not sticky
    sock = shared / "run" / "kms.sock"
    pm.keyring_init(tmp_path / "keyring.json")
    report = cli("check", "--backend", "local", "--keyring", str(tmp_path / "keyring.json"),
                 "--socket", str(sock), "--config", os.devnull)
    assert report.returncode == 0, report.stdout + report.stderr
    assert any(line.startswith("socket_parent") and "WARN" in line and "writable by every user" in line
               for line in report.stdout.splitlines()), report.stdout
    with pm.running(tmp_path / "plugin", keyring=tmp_path / "keyring.json", socket_path=sock) as plugin:
        # logged before the bind, so it is there once the socket answers
        warnings = [ln for ln in plugin.stderr.read_text().splitlines() if "writable by every user" in ln]
        assert len(warnings) == 1, plugin.stderr.read_text()

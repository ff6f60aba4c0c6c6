"""`make test` / `make demo` set up their Debian packages themselves: scripts/apt-deps.sh runs
with a fake dpkg-query, apt-get and id first in PATH (every branch, nothing installed), and the
Makefile side is read with ``make -n``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import REPO

SCRIPT = REPO / "scripts" / "apt-deps.sh"


def _fake_bin(tmp_path: Path, installed: set[str], uid: int) -> tuple[Path, Path]:
    """PATH dir with dpkg-query (answers from ``installed``), apt-get (logs its argv) and id."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt-get.log"
    bin_dir.mkdir()
    lines = "".join(f"{p} install ok installed\n" for p in sorted(installed))
    scripts = {
        # dpkg-query -W -f=... PKG...: one line per known, installed package.
        "dpkg-query": f'#!/bin/sh\nprintf "%s" "{lines}" | while read -r p rest; do\n'
                      '  for a in "$@"; do [ "$a" = "$p" ] && echo "$p $rest"; done\ndone\nexit 0\n',
        "apt-get": f'#!/bin/sh\necho "$@" >> {log}\n',
        "id": f"#!/bin/sh\necho {uid}\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir, log


def _run(bin_dir: Path, *packages: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **env}
    return subprocess.run(["bash", str(SCRIPT), *packages], capture_output=True, text=True, env=env,
                          timeout=30, check=False)


def test_warm_machine_does_nothing(tmp_path: Path) -> None:
    bin_dir, log = _fake_bin(tmp_path, {"rpm", "gcc"}, uid=0)
    proc = _run(bin_dir, "rpm", "gcc")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert not log.exists(), "apt-get ran on a machine that has every package"


def test_root_installs_only_the_missing_ones(tmp_path: Path) -> None:
    bin_dir, log = _fake_bin(tmp_path, {"gcc"}, uid=0)
    proc = _run(bin_dir, "rpm", "gcc", "lintian")
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert calls[-1].endswith("install -y -qq --no-install-recommends rpm lintian"), calls
    assert any(c.endswith("update -qq") for c in calls[:-1])


def test_non_root_gets_one_line_with_the_command(tmp_path: Path) -> None:
    bin_dir, log = _fake_bin(tmp_path, {"gcc"}, uid=1000)
    proc = _run(bin_dir, "rpm", "gcc", "lintian")
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.endswith("run: sudo apt-get install -y --no-install-recommends rpm lintian")
    assert not log.exists()


def test_skip_knob(tmp_path: Path) -> None:
    bin_dir, _ = _fake_bin(tmp_path, set(), uid=1000)
    proc = _run(bin_dir, "rpm", KMS_DEPS="skip")
    assert (proc.returncode, proc.stderr) == (0, "")


def _make_n(*targets: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed")
    # Not the MAKEFLAGS of a `make test` this may run under: a plain invocation's plan.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")} | {"E2E_BIN_DIR": "/nonexistent"}
    return subprocess.run([make, "-n", "--no-print-directory", "-C", str(REPO), *targets], capture_output=True, text=True,
                          env=env, timeout=60, check=True).stdout


def _deps_list(name: str) -> list[str]:
    text = (REPO / "mk" / "deps.mk").read_text().replace("\\\n", " ")
    match = re.search(rf"^{name} := (.*)$", text, re.M)
    assert match, name
    return match.group(1).split()


def test_make_test_and_demo_check_their_packages_first() -> None:
    test_plan = _make_n("test").splitlines()
    assert "apt-deps.sh" in test_plan[0], test_plan[:3]
    for pkg in ("rpm", "python3-venv", "gcc", "buildah", "prometheus"):
        assert pkg in test_plan[0].split()
    demo_plan = _make_n("demo")
    assert "scripts/apt-deps.sh python3-venv" in demo_plan
    assert "rpm" not in demo_plan.split(), "make demo must not install the packaging tools"


def test_ci_runs_the_readme_command_and_the_list_lives_in_one_place() -> None:
    run = (REPO / ".ci" / "run").read_text()
    commands = [ln.strip() for ln in run.splitlines() if ln.strip().startswith("make")]
    assert commands == ["make test"]
    assert "make test" in (REPO / "README.md").read_text()
    assert not (REPO / ".ci" / "apt-packages").exists()
    every = _deps_list("DEPS_VENV") + _deps_list("DEPS_BINARY") + _deps_list("DEPS_PACKAGING")
    assert len(every) == len(set(every))
    # What .ci/run and .ci/apt-packages installed before, minus make (needed to run make at all).
    before = {"python3-venv", "libpython3.11", "python3.11-dev", "git", "gcc", "libc6-dev", "binutils",
              "patch", "lintian", "rpm", "rpmlint", "mmdebstrap", "systemd", "systemd-container",
              "buildah", "podman", "runc", "skopeo", "containernetworking-plugins", "prometheus",
              "python3-yaml", "ca-certificates"}
    assert before <= set(every)

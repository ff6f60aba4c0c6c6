"""A bare ``pytest`` runs what a checkout can run and says what it left out (tests/conftest.py)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib

from tests import conftest
from tests.support.procs import REPO


def test_the_default_filter_in_pyproject_is_the_one_the_conftest_narrows() -> None:
    """The conftest narrows only an unchanged default; were the two to differ, every run
    would count as an explicit -m and the suites would never be selected by directory."""
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    args = shlex.split(addopts)
    assert args[args.index("-m") + 1] == conftest.DEFAULT


def test_a_bare_run_leaves_out_the_gated_suites_and_says_how_to_run_them() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert any(i.startswith("tests/unit/") for i in ids)
    assert any(i.startswith("tests/integration/") for i in ids)
    gated = ("tests/binary/", "tests/packaging/", "tests/e2e/", "tests/reliability/", "tests/fuzz/")
    assert not [i for i in ids if i.startswith(gated)]
    summary = proc.stdout.split("suites not run", 1)[1]
    for name, g in conftest.GATED.items():
        assert f" {name}: {g.why}; run: {g.run}" in summary


def test_naming_a_gated_directory_selects_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider",
                           "tests/binary"], cwd=REPO, capture_output=True, text=True, timeout=300)
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert ids and all(i.startswith("tests/binary/") for i in ids)
    assert "suites not run" not in proc.stdout

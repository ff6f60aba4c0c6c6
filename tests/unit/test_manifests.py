"""Generated EncryptionConfiguration documents: what the generator and its CLI refuse, and the output
file (the documents themselves are read back in test_encconfig.py)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from kms_appliance import config, manifests
from kms_appliance.errors import ConfigError
from tests.support.plugin import cli
from tests.support.yamlsubset import parse


def cfg(tmp_path: Path) -> config.Config:
    (tmp_path / "c.toml").write_text('[server]\nsocket = "/run/k/kms.sock"\nprovider_name = "akl"\n')
    return config.load(env={}, config_file=tmp_path / "c.toml")


def _timeout(doc: str) -> str:
    return str(parse(doc)["resources"][0]["providers"][0]["kms"]["timeout"])


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(tmp_path, "encryption-config", *args)


@pytest.mark.parametrize("timeout", ["abc", "3", "0s", "-3s", "3 s", "3sec", "0.1ns", ""])
def test_cli_refuses_timeout_the_apiserver_refuses(tmp_path: Path, timeout: str) -> None:
    """kube-apiserver does not start with such a timeout: exit 2, one line, no document."""
    proc = _cli(tmp_path, f"--timeout={timeout}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("kms-appliance: configuration error: --timeout: ")


@pytest.mark.parametrize("timeout", ["3s", "500ms", "1m30s", "1.5s", "10s"])
def test_cli_accepts_go_durations(tmp_path: Path, timeout: str) -> None:
    proc = _cli(tmp_path, f"--timeout={timeout}")
    assert proc.returncode == 0, proc.stderr
    assert _timeout(proc.stdout) == timeout
    assert "kind: EncryptionConfiguration" in proc.stdout


def test_refuses_bad_kms_api_and_provider_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        manifests.encryption_config(cfg(tmp_path), kms_api="v3")
    assert err.value.key == "--kms-api"
    bad = dataclasses.replace(cfg(tmp_path), server=dataclasses.replace(cfg(tmp_path).server,
                                                                        provider_name="a:b"))
    with pytest.raises(ConfigError) as err:
        manifests.encryption_config(bad)
    assert err.value.key == "--provider-name"


def test_output_is_atomic_and_untouched_on_refusal(tmp_path: Path) -> None:
    """A shell redirect would have emptied the file kube-apiserver reads; --output keeps it."""
    out = tmp_path / "enc.yaml"
    out.write_text("previous\n")
    refused = _cli(tmp_path, "--timeout=abc", "--output", str(out))
    assert refused.returncode == 2 and refused.stdout == ""
    assert out.read_text() == "previous\n"
    done = _cli(tmp_path, "--timeout=5s", "--output", str(out))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert _timeout(out.read_text()) == "5s"
    assert out.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.yaml", "etc"]  # no temporary left

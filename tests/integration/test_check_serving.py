"""`kms-appliance check`: the `serving` step against a real plugin, a stale socket and nothing,
and `check --encryption-config FILE --json` end to end through the CLI."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from kms_appliance import config, manifests, preflight, version
from tests.support import plugin as pm


def _cfg(sock: Path, keyring: Path) -> config.Config:
    return config.load(env={}, config_file=Path("/dev/null"),
                       flags={"server.backend": "local", "server.socket": str(sock),
                              "local.keyring": str(keyring)})


def _serving(sock: Path, keyring: Path) -> preflight.Result:
    results = {r.name: r for r in preflight.checks(_cfg(sock, keyring))}
    return results["serving"]


def test_a_serving_plugin_is_reported_with_its_version(plugin: pm.Plugin) -> None:
    result = _serving(plugin.socket, plugin.workdir / "keyring.json")
    assert result.status == "pass", result
    assert f"a plugin already serves on {plugin.socket}" in result.detail
    assert f"'kms-appliance' '{version.__version__}'" in result.detail
    assert "KMS 'v2', healthz 'ok', key_id" in result.detail


def test_a_stale_socket_is_a_warning(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "kms.sock"
    sock.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as s:  # bound then closed: the file stays, nobody listens
        s.bind(str(sock))
    result = _serving(sock, tmp_path / "keyring.json")
    assert result.status == "warn", result
    assert "Status got no answer" in result.detail and "stale" in result.detail


def test_nothing_on_the_socket_passes(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "kms.sock"
    result = _serving(sock, tmp_path / "keyring.json")
    assert (result.status, result.detail) == ("pass", f"nothing serves on {sock} yet")


def test_a_regular_file_at_the_socket_path_fails(tmp_path: Path) -> None:
    sock = tmp_path / "kms.sock"
    sock.write_text("")
    result = _serving(sock, tmp_path / "keyring.json")
    assert result.status == "fail" and "is not a socket" in result.detail, result


def _cli_check(tmp_path: Path, enc: Path) -> tuple[int, dict[str, dict[str, str]]]:
    proc = pm.cli(tmp_path, "check", "--keyring", str(tmp_path / "keyring.json"), "--socket",
                  str(tmp_path / "run" / "kms.sock"), "--audit-log", str(tmp_path / "audit.log"),
                  "--encryption-config", str(enc), "--json")
    assert proc.stderr == "", proc.stderr
    return proc.returncode, {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


def test_cli_check_with_encryption_config_json(tmp_path: Path) -> None:
    pm.keyring_init(tmp_path / "keyring.json")
    sock = tmp_path / "run" / "kms.sock"
    enc = tmp_path / "enc.yaml"
    enc.write_text(manifests.encryption_config(_cfg(sock, tmp_path / "keyring.json")))
    code, checks = _cli_check(tmp_path, enc)
    assert checks["encryption_config"]["status"] == "pass", checks
    assert "writes and reads with kms 'v2' 'kms-appliance'" in checks["encryption_config"]["detail"]
    assert code == 0, checks
    enc.write_text(enc.read_text().replace(str(sock), "/tmp/akeyless_kms_plugin.sock"))
    code, checks = _cli_check(tmp_path, enc)
    assert code == 1
    assert checks["encryption_config"]["status"] == "fail"
    assert "endpoint is 'unix:///tmp/akeyless_kms_plugin.sock'" in checks["encryption_config"]["detail"]

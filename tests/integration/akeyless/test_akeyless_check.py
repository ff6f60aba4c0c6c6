"""`kms-appliance check` passing, and failing for each cause, against the emulator."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pytest

from akeyless_emulator import Emulator
from kms_appliance import config, preflight
from kms_appliance.backends import keyring
from tests.integration.akeyless.conftest import load_cfg
from tests.support.emulator import KEY, control


def _change(emu: Emulator, action: str, **body: object) -> None:
    """Change Akeyless through the control plane, as an operator's Akeyless would change."""
    status, answer = control(emu.control_url, action, body, ca=emu.ca_file)
    assert status == 200, answer


def _cfg(env: dict[str, str], tmp_path: Path, dir_mode: int = 0o700, **over: object) -> config.Config:
    sock_dir = tmp_path / "sock"
    sock_dir.mkdir(exist_ok=True)
    sock_dir.chmod(dir_mode)
    cfg = load_cfg(env, **over)
    return dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, socket=sock_dir / "kms.sock"))


def _check(env: dict[str, str], tmp_path: Path, dir_mode: int = 0o700, **over):
    out = io.StringIO()
    code = preflight.run(_cfg(env, tmp_path, dir_mode, **over), True, out)
    doc = json.loads(out.getvalue())
    return code, {c["name"]: c for c in doc["checks"]}, doc


class TestCheck:
    """Exit 0 only when every step passed; each failure names its step."""

    def test_all_pass(self, emu: Emulator, ak_env, tmp_path):
        _change(emu, "key-settings", name=KEY, delete_protection=True)
        emu.reset_calls()
        code, checks, doc = _check(ak_env, tmp_path)
        assert code == 0
        assert doc["ok"]
        assert {c["status"] for c in checks.values()} == {"pass"}
        assert {"config", "serving", "socket_dir", "audit_log", "auth", "key", "round_trip",
                "key_settings", "clock"} <= set(checks)
        assert checks["key_settings"]["detail"].startswith("delete protection on")
        assert "access_key" in checks["auth"]["detail"]
        assert "mode direct" in checks["key"]["detail"] and "intermediate" not in checks["key"]["detail"]
        assert emu.calls["encrypt"] == 1  # the round trip
        out = io.StringIO()
        preflight.run(_cfg(ak_env, tmp_path), False, out)
        assert "all checks passed" in out.getvalue()

    def test_delete_protection_off_warns_and_rotation_is_reported(self, emu: Emulator, ak_env, tmp_path):
        """Off (the emulator's default, as Akeyless's): warn naming it; the check still passes."""
        _change(emu, "key-settings", name=KEY, delete_protection=False, auto_rotate=True, rotation_interval=90)
        code, checks, _ = _check(ak_env, tmp_path)
        assert code == 0
        assert checks["key_settings"]["status"] == "warn"
        detail = checks["key_settings"]["detail"]
        assert "delete protection off" in detail and KEY in detail
        assert "auto-rotate on, every 90 days" in detail
        _change(emu, "key-settings", name=KEY, delete_protection=True, auto_rotate=False)
        code, checks, _ = _check(ak_env, tmp_path)
        assert code == 0
        assert checks["key_settings"] == {"name": "key_settings", "status": "pass",
                                          "detail": "delete protection on; auto-rotate off"}

    @pytest.mark.parametrize(("over", "expected", "detail"), [
        pytest.param({"AKEYLESS_KEY_ENCRYPTION_KEY": "/missing"}, {"key_settings": "skip"}, "",
                     id="key_settings-skipped-without-the-key"),
        pytest.param({"AKEYLESS_ACCESS_KEY": "wrong"}, {"auth": "fail", "key": "skip", "round_trip": "skip"},
                     "access_key", id="bad-credentials"),
        pytest.param({"AKEYLESS_KEY_ENCRYPTION_KEY": "/missing"}, {"key": "fail"}, "does not exist",
                     id="missing-key"),
        pytest.param({"AKEYLESS_URL": "http://akeyless.example.com"}, {"config": "fail", "auth": "skip"}, "",
                     id="plain-http-to-a-remote-host-is-a-config-failure"),
    ])
    def test_a_failing_setting_fails_the_run_and_skips_what_needs_it(
            self, emu, ak_env, tmp_path, over: dict[str, str], expected: dict[str, str], detail: str):
        code, checks, _ = _check({**ak_env, **over}, tmp_path)
        assert code == 1
        assert {name: checks[name]["status"] for name in expected} == expected
        assert all(detail in checks[name]["detail"] for name, status in expected.items() if status == "fail")

    @pytest.mark.parametrize(("changes", "expected", "detail"), [
        pytest.param([("key-enabled", {"name": KEY, "enabled": False})], {"key": "fail"}, "disabled", id="disabled-key"),
        pytest.param([("rotate-key", {"name": KEY}),
                      ("version-state", {"name": KEY, "version": 2, "state": "Disabled"})],
                     {"key": "fail"}, "version 2 Disabled", id="disabled-latest-version"),
        pytest.param([("fault", {"endpoint": "decrypt", "status": 500})], {"round_trip": "fail", "key": "pass"}, "",
                     id="round-trip-failure"),
        # A token's expiry as Akeyless states it, against this clock: a clock ahead or behind.
        pytest.param([("token-ttl", {"seconds": -30.0})], {"clock": "fail"}, "ahead", id="clock-ahead"),
        pytest.param([("token-ttl", {"seconds": 60 * 86400.0})], {"clock": "fail"}, "behind", id="clock-behind"),
    ])
    def test_a_failing_akeyless_fails_the_run_naming_the_step(
            self, emu, ak_env, tmp_path, changes: list[tuple[str, dict[str, object]]], expected: dict[str, str],
            detail: str):
        for action, body in changes:
            _change(emu, action, **body)
        code, checks, _ = _check(ak_env, tmp_path)
        assert code == 1
        assert {name: checks[name]["status"] for name in expected} == expected
        assert all(detail in checks[name]["detail"] for name, status in expected.items() if status == "fail")

    def test_unsafe_socket_dir(self, emu, ak_env, tmp_path):
        code, checks, _ = _check(ak_env, tmp_path, dir_mode=0o777)
        assert code == 1
        assert checks["socket_dir"]["status"] == "fail"


def test_check_reports_envelope_mode_and_the_held_intermediate_key(emu: Emulator, ak_env, tmp_path):
    emu.reset_calls()
    code, checks, _ = _check(ak_env, tmp_path, mode="envelope")
    assert code == 0, checks
    assert re.search(r"mode envelope; 1 intermediate key held \(akeyless:\d+:1:ik:[0-9a-f]{32}\), "
                     r"validated by Akeyless \d+s ago", checks["key"]["detail"])
    assert emu.calls["encrypt"] == 1  # the IK; the round trip wrapped locally


class TestCheckLocalBackend:
    """The same preflight works for the local keyring backend."""

    def test_missing_then_present_keyring(self, tmp_path: Path):
        ring = tmp_path / "keyring.json"
        env = {"KMS_APPLIANCE_SERVER_BACKEND": "local", "KMS_APPLIANCE_LOCAL_KEYRING": str(ring),
               "KMS_APPLIANCE_SERVER_SOCKET": str(tmp_path / "s" / "kms.sock")}
        out = io.StringIO()
        assert preflight.run(config.load(env=env), False, out) == 1
        assert "FAIL" in out.getvalue() and "SKIP" in out.getvalue()
        keyring.init(ring)
        out = io.StringIO()
        assert preflight.run(config.load(env=env), False, out) == 0
        assert "all checks passed" in out.getvalue()

"""`kms-appliance check` passing, and failing for each cause, against the emulator."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest

from akeyless_emulator import Emulator
from kms_appliance import preflight
from tests.emulator.test_control import control
from tests.integration.akeyless.conftest import load_cfg
from tests.support.emulator import KEY


def _key_settings(emu: Emulator, **settings: object) -> None:
    """Set what describe-item reports, through the control plane as an operator's Akeyless would."""
    status, body = control(emu.control_url, "key-settings", {"name": KEY, **settings}, ca=emu.ca_file)
    assert status == 200, body


def _check(env: dict[str, str], tmp_path: Path, dir_mode: int = 0o700, **over):
    sock_dir = tmp_path / "sock"
    sock_dir.mkdir(exist_ok=True)
    sock_dir.chmod(dir_mode)
    cfg = load_cfg(env, **over)
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, socket=sock_dir / "kms.sock"))
    out = io.StringIO()
    code = preflight.run(cfg, True, out)
    doc = json.loads(out.getvalue())
    return code, {c["name"]: c for c in doc["checks"]}, doc


class TestCheck:
    """Exit 0 only when every step passed; each failure names its step."""

    def test_all_pass(self, emu: Emulator, ak_env, tmp_path):
        _key_settings(emu, delete_protection=True)
        code, checks, doc = _check(ak_env, tmp_path)
        assert code == 0
        assert doc["ok"]
        assert {c["status"] for c in checks.values()} == {"pass"}
        assert {"config", "serving", "socket_dir", "audit_log", "auth", "key", "round_trip",
                "key_settings", "clock"} <= set(checks)
        assert checks["key_settings"]["detail"].startswith("delete protection on")
        assert "access_key" in checks["auth"]["detail"]
        cfg = load_cfg(ak_env)
        out = io.StringIO()
        preflight.run(dataclasses.replace(cfg, server=dataclasses.replace(
            cfg.server, socket=tmp_path / "sock" / "kms.sock")), False, out)
        assert "all checks passed" in out.getvalue()

    def test_delete_protection_off_warns_and_rotation_is_reported(self, emu: Emulator, ak_env, tmp_path):
        """Off (the emulator's default, as Akeyless's): warn naming it; the check still passes."""
        _key_settings(emu, delete_protection=False, auto_rotate=True, rotation_interval=90)
        code, checks, _ = _check(ak_env, tmp_path)
        assert code == 0
        assert checks["key_settings"]["status"] == "warn"
        detail = checks["key_settings"]["detail"]
        assert "delete protection off" in detail and KEY in detail
        assert "auto-rotate on, every 90 days" in detail
        _key_settings(emu, delete_protection=True, auto_rotate=False)
        code, checks, _ = _check(ak_env, tmp_path)
        assert code == 0
        assert checks["key_settings"] == {"name": "key_settings", "status": "pass",
                                          "detail": "delete protection on; auto-rotate off"}

    @pytest.mark.parametrize(("over", "expected", "detail"), [
        pytest.param({"AKEYLESS_KEY_ENCRYPTION_KEY": "/missing"}, {"key_settings": "skip"}, "",
                     id="key_settings-skipped-without-the-key"),
        pytest.param({"AKEYLESS_ACCESS_KEY": "wrong"}, {"auth": "fail", "key": "skip", "round_trip": "skip"}, "",
                     id="bad-credentials"),
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

    def test_disabled_key(self, emu: Emulator, ak_env, tmp_path):
        emu.disable_key(KEY)
        code, checks, _ = _check(ak_env, tmp_path)
        assert code == 1
        assert checks["key"]["status"] == "fail"

    def test_disabled_latest_version(self, emu: Emulator, ak_env, tmp_path):
        emu.rotate_key(KEY)
        emu.disable_version(KEY, 2)
        code, checks, _ = _check(ak_env, tmp_path)
        assert code == 1
        assert "version 2 Disabled" in checks["key"]["detail"]

    def test_round_trip_failure(self, emu: Emulator, ak_env, tmp_path):
        emu.fault("decrypt", status=500)
        code, checks, _ = _check(ak_env, tmp_path)
        assert code == 1
        assert checks["round_trip"]["status"] == "fail"
        assert checks["key"]["status"] == "pass"

    def test_unsafe_socket_dir(self, emu, ak_env, tmp_path):
        code, checks, _ = _check(ak_env, tmp_path, dir_mode=0o777)
        assert code == 1
        assert checks["socket_dir"]["status"] == "fail"


    @pytest.mark.parametrize(("ttl", "words"), [(-30.0, "ahead"), (60 * 86400.0, "behind")])
    def test_clock_sanity(self, emu: Emulator, ak_env, tmp_path, ttl, words):
        emu.set_token_ttl(ttl)
        code, checks, _ = _check(ak_env, tmp_path)
        assert code == 1
        assert checks["clock"]["status"] == "fail"
        assert words in checks["clock"]["detail"]


class TestCheckLocalBackend:
    """The same preflight works for the local keyring backend."""

    def test_missing_then_present_keyring(self, tmp_path: Path):
        from kms_appliance import config
        from kms_appliance.backends import keyring

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

"""Configuration: precedence, validation messages, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kms_appliance import config
from kms_appliance.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


class TestPrecedence:
    """Flags beat environment, environment beats the file, the file beats defaults."""

    def test_defaults(self, tmp_path: Path) -> None:
        cfg = config.load(env={}, config_file=write(tmp_path, ""))
        assert cfg.server.socket == Path("/run/kms-appliance/kms.sock")
        assert cfg.server.backend == "local"
        assert not cfg.backend_explicit
        assert cfg.observability.http_listen == ("127.0.0.1", 8787)

    def test_file_over_default(self, tmp_path: Path) -> None:
        f = write(tmp_path, '[server]\nsocket = "/tmp/x/a.sock"\nprovider_name = "p1"\n')
        cfg = config.load(env={}, config_file=f)
        assert cfg.server.socket == Path("/tmp/x/a.sock")
        assert cfg.server.provider_name == "p1"

    def test_env_over_file(self, tmp_path: Path) -> None:
        f = write(tmp_path, '[server]\nprovider_name = "p1"\n')
        cfg = config.load(env={"KMS_APPLIANCE_SERVER_PROVIDER_NAME": "p2"}, config_file=f)
        assert cfg.server.provider_name == "p2"

    def test_flag_over_env(self, tmp_path: Path) -> None:
        f = write(tmp_path, '[server]\nprovider_name = "p1"\n')
        cfg = config.load(flags={"server.provider_name": "p3"},
                          env={"KMS_APPLIANCE_SERVER_PROVIDER_NAME": "p2"}, config_file=f)
        assert cfg.server.provider_name == "p3"

    def test_own_env_beats_drop_in_alias(self, tmp_path: Path) -> None:
        env = {"AKEYLESS_UNIX_SOCKET": "/a/alias.sock", "KMS_APPLIANCE_SERVER_SOCKET": "/a/own.sock"}
        cfg = config.load(env=env, config_file=write(tmp_path, ""))
        assert cfg.server.socket == Path("/a/own.sock")

    def test_unix_prefix_and_durations(self, tmp_path: Path) -> None:
        f = write(tmp_path, '[server]\nsocket = "unix:///run/k/kms.sock"\ngrace_period = "1500ms"\n')
        cfg = config.load(env={"KMS_APPLIANCE_LOCAL_RELOAD_INTERVAL": "2m"}, config_file=f)
        assert cfg.server.socket == Path("/run/k/kms.sock")
        assert cfg.server.grace_period == 1.5
        assert cfg.local.reload_interval == 120.0

    def test_akeyless_settings_select_akeyless(self, tmp_path: Path) -> None:
        env = {"AKEYLESS_ACCESS_ID": "p-abc123def456", "AKEYLESS_KEY_ENCRYPTION_KEY": "k8s-key"}
        cfg = config.load(env=env, config_file=write(tmp_path, ""))
        assert cfg.server.backend == "akeyless"
        assert cfg.akeyless.key_name == "/k8s-key"

    def test_config_is_immutable(self, tmp_path: Path) -> None:
        cfg = config.load(env={}, config_file=write(tmp_path, ""))
        with pytest.raises(AttributeError):
            cfg.server.socket = Path("/x")  # type: ignore[misc]


BAD = [
    ({"server.socket": "relative/path.sock"}, "server.socket", "absolute"),
    ({"server.socket": "/" + "a" * 120}, "server.socket", "107 bytes"),
    ({"server.backend": "vault"}, "server.backend", "one of local, akeyless"),
    ({"server.provider_name": "a:b"}, "server.provider_name", "no ':'"),
    ({"server.grace_period": "soon"}, "server.grace_period", "duration"),
    ({"server.grace_period": "9999s"}, "server.grace_period", "between"),
    ({"server.max_concurrent_rpcs": "0"}, "server.max_concurrent_rpcs", "between 1"),
    ({"server.max_concurrent_rpcs": "many"}, "server.max_concurrent_rpcs", "integer"),
    ({"server.allowed_uids": "0,x"}, "server.allowed_uids", "integer"),
    ({"observability.http_listen": "nohost"}, "observability.http_listen", "HOST:PORT"),
    ({"observability.http_listen": "h:99999"}, "observability.http_listen", "HOST:PORT"),
    ({"observability.log_level": "loud"}, "observability.log_level", "one of"),
    ({"cache.enabled": "perhaps"}, "cache.enabled", "boolean"),
    ({"server.backend": "akeyless", "akeyless.key_name": "/k"}, "akeyless.access_id", "required"),
    ({"server.backend": "akeyless", "akeyless.access_id": "p-x"}, "akeyless.key_name", "required"),
]


@pytest.mark.parametrize(("flags", "key", "text"), BAD)
def test_each_validation_error_names_the_key(tmp_path: Path, flags: dict[str, str], key: str,
                                              text: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(flags=flags, env={}, config_file=write(tmp_path, ""))
    assert info.value.key == key
    assert text in info.value.message


@pytest.mark.parametrize(("body", "key"), [
    ("[nosuch]\nx = 1\n", "nosuch"),
    ("[server]\nsockt = '/x'\n", "server.sockt"),
    ("[server\n", "config"),
    ("[server]\nworkers = true\n", "server.workers"),
])
def test_file_errors(tmp_path: Path, body: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(env={}, config_file=write(tmp_path, body))
    assert info.value.key == key


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(env={}, config_file=tmp_path / "absent.toml")


def test_cli_exits_2_with_named_key(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kms_appliance", "serve", "--config",
                           str(write(tmp_path, "")), "--grace-period", "forever"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "server.grace_period" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_describe_covers_every_setting() -> None:
    keys = {row[0] for row in config.describe()}
    assert {"server.socket", "local.keyring", "akeyless.key_name", "cache.ttl"} <= keys
    assert all(row[3] for row in config.describe()), "every setting has a doc line"


def test_configuration_doc_is_current() -> None:
    proc = subprocess.run([sys.executable, "scripts/gen-config-doc.py", "--check"], cwd=REPO, timeout=30)
    assert proc.returncode == 0, "docs/configuration.md is stale: run scripts/gen-config-doc.py"

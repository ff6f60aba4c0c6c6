"""Configuration: precedence, validation messages, exit status 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from kms_appliance import cli, config, errors
from kms_appliance.errors import ConfigError
from tests.support.procs import REPO
from tests.unit.helpers import fifo_error


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

    @pytest.mark.parametrize(("body", "env", "flags", "setting", "value"), [
        ('[server]\nsocket = "/tmp/x/a.sock"\n', {}, {}, "socket", Path("/tmp/x/a.sock")),
        ('[server]\nprovider_name = "p1"\n', {}, {}, "provider_name", "p1"),
        ('[server]\nprovider_name = "p1"\n', {"KMS_APPLIANCE_SERVER_PROVIDER_NAME": "p2"}, {},
         "provider_name", "p2"),
        ('[server]\nprovider_name = "p1"\n', {"KMS_APPLIANCE_SERVER_PROVIDER_NAME": "p2"},
         {"server.provider_name": "p3"}, "provider_name", "p3"),
        ("", {"AKEYLESS_UNIX_SOCKET": "/a/alias.sock", "KMS_APPLIANCE_SERVER_SOCKET": "/a/own.sock"}, {},
         "socket", Path("/a/own.sock")),  # our own variable beats the drop-in alias
    ])
    def test_each_level_beats_the_one_below(self, tmp_path: Path, body: str, env: dict[str, str],
                                            flags: dict[str, str], setting: str, value: object) -> None:
        cfg = config.load(flags=flags, env=env, config_file=write(tmp_path, body))
        assert getattr(cfg.server, setting) == value

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


def test_every_flag_is_declared_once_with_its_setting_and_overrides_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag lives in the setting's declaration: one per setting, none pointing nowhere, and
    given on the command line it wins over the environment."""
    declared = [f.metadata["flag"] for cls in config.SECTIONS.values()
                for f in dataclasses.fields(cls) if f.metadata["flag"]]
    assert len(declared) == len(set(declared)) == len(config.flags())
    keys = {row[0] for row in config.describe()}
    assert {key for key, _ in config.flags().values()} <= keys
    args = cli._parser().parse_args(["serve", "--config", str(write(tmp_path, "")),
                                     "--grace-period", "7s", "--provider-name", "from-flag"])
    monkeypatch.setenv("KMS_APPLIANCE_SERVER_PROVIDER_NAME", "from-env")
    cfg = cli.load_config(args)
    assert (cfg.server.grace_period, cfg.server.provider_name) == (7.0, "from-flag")


def test_configuration_doc_is_current_and_says_what_every_setting_means() -> None:
    """That describe() lists every setting: test_docs_match.py::test_packaged_config_names_every_setting."""
    assert all(row[3] for row in config.describe()), "every setting has a doc line"
    proc = subprocess.run([sys.executable, "scripts/gen-config-doc.py", "--check"], cwd=REPO, timeout=30)
    assert proc.returncode == 0, "docs/configuration.md is stale: run scripts/gen-config-doc.py"


MARKER = "H6-SECRET-MARKER-0a7e"


class TestShownValues:
    """Errors quote values through errors.shown(): never a secret, never unbounded."""

    def test_secret_is_never_shown(self) -> None:
        assert MARKER not in errors.shown(MARKER, secret=True)

    def test_long_value_is_cut_with_a_marker(self) -> None:
        text = errors.shown("x" * 10_000)
        assert len(text) < 120 and "10000 characters, cut" in text

    def test_control_characters_are_escaped(self) -> None:
        assert "\x1b" not in errors.shown("a\x1b[2Jb\nforged log line") and "\n" not in errors.shown("a\nb")

    def test_huge_integer_is_described_not_printed(self) -> None:
        assert "bits" in errors.shown(7 ** 50_000)

    def test_secret_settings_are_marked(self) -> None:
        assert {k for k, *_ in config.describe() if config.is_secret(k)} == {
            "akeyless.access_key", "akeyless.uid_token", "akeyless.proxy"}

    @pytest.mark.parametrize("parser", ["p_bool", "duration", "choice", "int_range", "p_listen", "p_proxy"])
    def test_no_parser_echoes_a_secret_setting(self, parser: str) -> None:
        parse = getattr(config, parser)
        if parser in ("duration", "choice", "int_range"):
            parse = parse("a", "b") if parser == "choice" else parse(0, 1)
        with pytest.raises(ConfigError) as info:
            parse("akeyless.access_key", f"{MARKER}:x")
        assert MARKER not in info.value.message

    @pytest.mark.parametrize(("flags", "key"), [
        ({"server.backend": "x" * 10_000}, "server.backend"),
        ({"server.grace_period": "1" * 10_000}, "server.grace_period"),
        ({"observability.http_listen": "h\x1b[2J" * 3000}, "observability.http_listen"),
        ({"server.max_concurrent_rpcs": "9" * 4000}, "server.max_concurrent_rpcs"),
    ])
    def test_no_error_echoes_a_long_value(self, tmp_path: Path, flags: dict[str, str], key: str) -> None:
        with pytest.raises(ConfigError) as info:
            config.load(flags=flags, env={}, config_file=write(tmp_path, ""))
        assert info.value.key == key and len(info.value.message) < 200
        assert "\x1b" not in info.value.message


class TestProxy:
    """akeyless.proxy is checked at load: a typo is one line, not an SDK traceback."""

    @pytest.mark.parametrize("value", ["", "http://proxy:3128", "https://u:p@proxy.example:8443/",
                                       "http://[::1]:3128"])
    def test_accepted(self, value: str) -> None:
        assert config.p_proxy("akeyless.proxy", value) == value

    @pytest.mark.parametrize("value", ["http://[::1", "http://h:99999", "http://h:0", "ftp://h:21", "h:3128",
                                       "http:///x", "http://h :1", "http://h\n:1", "socks5://h:1080"])
    def test_refused_without_echo(self, value: str) -> None:
        with pytest.raises(ConfigError) as info:
            config.p_proxy("akeyless.proxy", value)
        assert info.value.key == "akeyless.proxy" and value not in info.value.message


def test_socket_path_with_control_characters_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="control characters"):
        config.load(flags={"server.socket": "/run/k\nms.sock"}, env={}, config_file=write(tmp_path, ""))


def test_cli_safety_net_prints_the_type_only(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An unexpected exception in any command: one line, exit 1, no traceback, no exception text."""
    def boom(args: object) -> int:
        raise RuntimeError(f"token={MARKER}")

    monkeypatch.setitem(cli.COMMANDS, "version", boom)
    assert cli.main(["version"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError" in err and MARKER not in err


def test_fifo_as_config_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    error = fifo_error(tmp_path / "config.toml", lambda: config.load(env={}, config_file=tmp_path / "config.toml"), 5)
    assert isinstance(error, ConfigError) and "FIFO" in error.message


def test_huge_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="larger than"):
        config.load(env={}, config_file=write(tmp_path, "#" * (2 << 20)))

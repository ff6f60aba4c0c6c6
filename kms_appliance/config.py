"""One validated, immutable configuration, loaded once.

Sources, highest precedence first: command-line flags, environment
variables, the TOML file (``/etc/kms-appliance/config.toml`` or ``--config``),
built-in defaults. Each setting is declared once, as a dataclass field whose
metadata names its parser and environment variables, so the loader, the
docs (docs/configuration.md) and the error messages cannot drift apart.
Every error is a :class:`ConfigError` naming the setting and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .atomicfile import check_path
from .errors import ConfigError, shown

DEFAULT_CONFIG_FILE = Path("/etc/kms-appliance/config.toml")
ENV_PREFIX = "KMS_APPLIANCE_"
Parser = Callable[[str, Any], Any]
PATH_SHOWN = 160  # an operator's path is worth more of the line than a value, but is still cut


# ---- parsers: (dotted key, raw value) -> typed value, or ConfigError ----------


def _shown(key: str, raw: Any) -> str:
    """A value quoted in an error: never a secret setting's, never unbounded (errors.shown)."""
    return shown(raw, secret=is_secret(key))


def p_str(key: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ConfigError(key, "must be a string")
    return raw


def p_opt_str(key: str, raw: Any) -> str | None:
    value = p_str(key, raw).strip()
    return value or None


def p_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(key, f"must be a boolean (true/false), got {_shown(key, raw)}")


def int_range(lo: int, hi: int) -> Parser:
    def parse(key: str, raw: Any) -> int:
        try:
            value = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw), 10)
        except ValueError:
            raise ConfigError(key, f"must be an integer between {lo} and {hi}") from None
        if not lo <= value <= hi:
            raise ConfigError(key, f"must be between {lo} and {hi}, got {_shown(key, value)}")
        return value

    return parse


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(lo: float, hi: float) -> Parser:
    """Seconds, as a number or a string like ``500ms``, ``3s``, ``5m``, ``1h``."""

    def parse(key: str, raw: Any) -> float:
        match = _DURATION.match(str(raw)) if not isinstance(raw, bool) else None
        if match is None:
            raise ConfigError(key, f"must be a duration such as 3s, 500ms or 5m, got {_shown(key, raw)}")
        value = float(match.group(1)) * _UNIT[match.group(2)]
        if not lo <= value <= hi:
            raise ConfigError(key, f"must be between {lo:g}s and {hi:g}s, got {value:g}s")
        return value

    return parse


def choice(*allowed: str) -> Parser:
    def parse(key: str, raw: Any) -> str:
        value = p_str(key, raw).strip().lower()
        if value not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(allowed)}, got {_shown(key, raw)}")
        return value

    return parse


def p_listen(key: str, raw: Any) -> tuple[str, int] | None:
    """``HOST:PORT`` for the HTTP endpoint; empty disables it."""
    text = p_str(key, raw).strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"must be HOST:PORT (empty disables), got {_shown(key, raw)}")
    return host, int(port)


def p_proxy(key: str, raw: Any) -> str:
    """An http(s) proxy URL, checked here so a typo is a one-line error, not an SDK traceback.

    The value is never quoted back: a proxy URL may carry ``user:password@``.
    """
    text = p_str(key, raw).strip()
    if not text:
        return ""
    problem = "must be an http(s) URL such as http://proxy.example:3128"
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ConfigError(key, problem + " (no spaces or control characters)")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not 0-65535
    except ValueError:
        raise ConfigError(key, problem) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ConfigError(key, problem)
    _urllib3_accepts(key, text, problem)
    return text


def _urllib3_accepts(key: str, text: str, problem: str) -> None:
    """The SDK hands the URL to urllib3, whose parser is stricter than urlsplit's: ask it too."""
    try:
        from urllib3.util import parse_url  # noqa: PLC0415 - only when a proxy is set
    except ImportError:  # pragma: no cover - urllib3 comes with the akeyless SDK
        return
    try:
        parse_url(text)
    except Exception:  # LocationParseError and friends: their text quotes the value
        raise ConfigError(key, problem) from None


def p_uids(key: str, raw: Any) -> tuple[int, ...]:
    items = raw if isinstance(raw, list) else [s for s in re.split(r"[,\s]+", str(raw)) if s]
    check = int_range(0, 2**32 - 2)
    return tuple(sorted({check(key, item) for item in items}))


def p_path(key: str, raw: Any) -> Path:
    text = p_str(key, raw).strip()
    if not text or "\0" in text:
        raise ConfigError(key, "must be a non-empty path")
    if not text.isprintable():  # a path is quoted in errors and log lines: no forged lines
        raise ConfigError(key, "must not contain control characters")
    return Path(text)


def p_socket(key: str, raw: Any) -> Path:
    """A socket path; the ``unix://`` form of the EncryptionConfiguration is accepted."""
    text = p_str(key, raw).strip().removeprefix("unix://")
    path = p_path(key, text)
    if not path.is_absolute():
        raise ConfigError(key, "must be an absolute path")
    if len(os.fsencode(text)) > 107:
        raise ConfigError(key, "is longer than the 107 bytes a UNIX socket path may have")
    return path


def p_audit_log(key: str, raw: Any) -> str:
    """``-`` or a file path within PATH_MAX/NAME_MAX (made absolute: it is reopened on SIGHUP)."""
    text = p_str(key, raw).strip()
    if text == "-":
        return text
    if not text:
        raise ConfigError(key, "must be a file path, or - for stdout")
    return str(check_path(key, text))


def p_opt_path(key: str, raw: Any) -> Path | None:
    return p_path(key, raw) if str(raw).strip() else None


def p_provider(key: str, raw: Any) -> str:
    value = p_str(key, raw).strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", value):
        raise ConfigError(key, "must be 1-63 characters of letters, digits, '.', '_', '-' (no ':')")
    return value


def p_key_name(key: str, raw: Any) -> str:
    value = p_str(key, raw).strip()
    if value and not value.startswith("/"):
        value = "/" + value
    return value


def setting(default: Any, parse: Parser, *env: str, doc: str = "", secret: bool = False,
            flag: str = "") -> Any:
    """Declare a setting: its default, parser, extra env names, one-line doc and command-line flag.

    ``secret`` settings are never quoted in an error message (see :func:`is_secret`).
    ``flag`` (e.g. ``--socket``): the option that sets it on the commands that read the
    configuration; the doc line is its help text (see :func:`flags`).
    """
    return field(default=default, metadata={"parse": parse, "env": env, "doc": doc, "secret": secret,
                                            "flag": flag})


# ---- the sections ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSettings:
    socket: Path = setting(Path("/run/kms-appliance/kms.sock"), p_socket, "AKEYLESS_UNIX_SOCKET",
                           flag="--socket", doc="UNIX socket kube-apiserver dials (unix:// prefix allowed)")
    socket_group: str | None = setting(None, p_opt_str,
                                       flag="--socket-group",
                                       doc="group given rw on the socket (mode 0660); unset means 0600")
    allowed_uids: tuple[int, ...] = setting((), p_uids,
                                            flag="--allowed-uids",
                                            doc="if set, only these peer uids may connect (SO_PEERCRED)")
    provider_name: str = setting("kms-appliance", p_provider,
                                 flag="--provider-name",
                                 doc="name in the EncryptionConfiguration and etcd prefix")
    backend: str = setting("", choice("local", "akeyless"),
                           flag="--backend",
                           doc="local or akeyless; empty picks akeyless if it is configured, "
                               "else local with a warning")
    grace_period: float = setting(10.0, duration(0, 300), flag="--grace-period",
                                  doc="time in-flight calls get at shutdown")
    max_concurrent_rpcs: int = setting(256, int_range(1, 100_000),
                                       doc="calls beyond this are refused with RESOURCE_EXHAUSTED")
    max_connections: int = setting(128, int_range(1, 10_000),
                                   doc="open client connections; more are closed at once")
    max_connection_age: float = setting(300.0, duration(1, 86_400),
                                        doc="every connection is sent a GOAWAY after this long "
                                            "(+-10%) and closed once its calls finished; grpc "
                                            "clients reconnect transparently, so no connection "
                                            "holds a max_connections slot longer")
    max_streams_per_connection: int = setting(256, int_range(1, 1_000),
                                              doc="calls one connection may have open at once "
                                                  "(HTTP/2 max concurrent streams); a client "
                                                  "queues the rest")
    request_read_timeout: float = setting(2.0, duration(0.1, 60),
                                          doc="a call whose request has not fully arrived by "
                                              "then ends with DEADLINE_EXCEEDED; until then it "
                                              "holds no worker")
    max_message_bytes: int = setting(65_536, int_range(4_096, 4_194_304),
                                     doc="largest gRPC message accepted")
    workers: int = setting(32, int_range(1, 1_024),
                           doc="threads serving calls that may wait (Akeyless, or audit records "
                               "written per call); Status, and calls the local backend answers "
                               "from memory, run in the event loop")
    call_timeout: float = setting(3.0, duration(0.1, 60),
                                  doc="budget of one backend call (fits the apiserver's timeout)")


@dataclass(frozen=True, slots=True)
class LocalSettings:
    keyring: Path = setting(Path("/var/lib/kms-appliance/keyring.json"), p_path,
                            flag="--keyring",
                            doc="keyring file of the local backend (0600, owned by the plugin's user)")
    reload_interval: float = setting(5.0, duration(0.1, 3600),
                                     doc="how often the keyring file is checked for a rotation")


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    http_listen: tuple[str, int] | None = setting(("127.0.0.1", 8787), p_listen,
                                                  flag="--http-listen",
                                                  doc="HOST:PORT of /metrics, /livez, /readyz, "
                                                      "/healthz; empty disables")
    audit_log: str = setting("-", p_audit_log, flag="--audit-log", doc="audit log file, or - for stdout")
    audit_required: bool = setting(False, p_bool,
                                   doc="true: Encrypt/Decrypt fail with UNAVAILABLE while audit "
                                       "records cannot be written (default: calls go on, "
                                       "/readyz fails, drops are counted)")
    audit_flush_interval: float = setting(0.02, duration(0, 1),
                                          doc="longest time an audit record waits in memory "
                                              "before it is written (kill -9 can lose this much); "
                                              "0 writes each record before the answer leaves, "
                                              "at ~8% of the throughput under load")
    log_level: str = setting("info", choice("debug", "info", "warning", "error"),
                             flag="--log-level", doc="operational log level (stderr)")
    log_format: str = setting("text", choice("text", "json"), flag="--log-format",
                              doc="operational log format")
    health_interval: float = setting(30.0, duration(1, 3600),
                                     doc="interval of the background wrap/unwrap health probe")


@dataclass(frozen=True, slots=True)
class CacheSettings:
    enabled: bool = setting(True, p_bool, doc="keep unwrapped DEKs in memory (never persisted)")
    size: int = setting(100_000, int_range(1, 10_000_000), doc="maximum cached DEKs")
    ttl: float = setting(3600.0, duration(1, 7 * 86400), doc="lifetime of a cached DEK")


@dataclass(frozen=True, slots=True)
class AkeylessSettings:
    url: str = setting("https://api.akeyless.io", p_str, "AKEYLESS_URL",
                       flag="--akeyless-url", doc="Akeyless API or Gateway URL (e.g. https://gw:8000/api/v2)")
    key_name: str = setting("", p_key_name, "AKEYLESS_KEY_ENCRYPTION_KEY",
                            flag="--key-name", doc="name of the AES key (the KEK) in Akeyless")
    access_id: str = setting("", p_str, "AKEYLESS_ACCESS_ID", flag="--access-id", doc="Akeyless access id")
    access_type: str = setting("", choice("", "access_key", "universal_identity", "aws_iam",
                                          "azure_ad", "gcp", "k8s", "cert"),
                               flag="--access-type", doc="auth method; empty detects it")
    access_key: str = setting("", p_str, "AKEYLESS_ACCESS_KEY", doc="access key (secret)", secret=True)
    access_key_file: Path | None = setting(None, p_opt_path, doc="file holding the access key")
    uid_token: str = setting("", p_str, "AKEYLESS_UID_INIT_TOKEN",
                             doc="initial Universal Identity token (secret)", secret=True)
    uid_token_file: Path | None = setting(None, p_opt_path,
                                          doc="Universal Identity token file, rewritten on rotation")
    uid_rotate_interval: float = setting(900.0, duration(10, 86400),
                                         doc="how often the UID token is rotated")
    azure_object_id: str = setting("", p_str, "AKEYLESS_AZURE_OBJECT_ID",
                                   doc="Azure managed identity object id")
    gcp_audience: str = setting("akeyless.io", p_str, "AKEYLESS_GCP_AUDIENCE",
                                doc="audience of the GCP identity token")
    k8s_auth_config_name: str = setting("", p_str, doc="Akeyless k8s auth config name")
    k8s_token_file: Path = setting(Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
                                   p_path, doc="service-account token file for k8s auth")
    cert_file: Path | None = setting(None, p_opt_path, doc="client certificate (cert auth / mTLS)")
    key_file: Path | None = setting(None, p_opt_path, doc="client certificate key")
    ca_file: Path | None = setting(None, p_opt_path, doc="CA bundle for a Gateway's TLS")
    proxy: str = setting("", p_proxy, doc="HTTP(S) proxy URL for reaching Akeyless", secret=True)
    refresh_interval: float = setting(30.0, duration(1, 60),
                                      doc="how often last_version is re-read (rotation pickup)")
    timeout: float = setting(3.0, duration(0.5, 60), doc="per-request timeout to Akeyless")
    mode: str = setting("direct", choice("direct", "envelope"),
                        doc="direct: every DEK wrapped by Akeyless; envelope: DEKs wrapped by a "
                            "local intermediate key that Akeyless wraps (rides through outages)")


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "local": LocalSettings,
    "observability": ObservabilitySettings,
    "cache": CacheSettings,
    "akeyless": AkeylessSettings,
}


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; built only by :func:`load`."""

    server: ServerSettings = field(default_factory=ServerSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    akeyless: AkeylessSettings = field(default_factory=AkeylessSettings)
    source: str = "defaults"
    backend_explicit: bool = False


def is_secret(key: str) -> bool:
    """True for a setting marked ``secret=True`` (a field without the marker counts as secret)."""
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section)
    if cls is None:
        return False  # not a setting at all (``config``, a section name): no value of its own
    for f in dataclasses.fields(cls):
        if f.name == name:
            return bool(f.metadata.get("secret", True))
    return True


def env_names(section: str, name: str, meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Our own variable first (it wins), then drop-in aliases."""
    return (f"{ENV_PREFIX}{section.upper()}_{name.upper()}", *meta["env"])


def _read_file(path: Path, required: bool) -> dict[str, Any]:
    name = shown(os.fspath(path), limit=PATH_SHOWN)
    try:
        doc = tomllib.loads(_read_bytes(path, name).decode("utf-8"))
    except FileNotFoundError:
        if required:
            raise ConfigError("config", f"file {name} does not exist") from None
        return {}
    except ConfigError:
        raise  # from _read_bytes; a ValueError too, not the long-number case below
    except tomllib.TOMLDecodeError as exc:  # its text names line and column, never the value
        raise ConfigError("config", f"{name} is not valid TOML: {shown(str(exc), limit=120)}") from None
    except UnicodeDecodeError:
        raise ConfigError("config", f"{name} is not UTF-8 text") from None
    except RecursionError:
        raise ConfigError("config", f"{name} is nested too deeply") from None
    except ValueError:
        # Python refuses int() of more than 4300 digits (CVE-2020-10735) inside tomllib.
        raise ConfigError(_long_number_key(path), f"{name} holds a number too long to read "
                                                  "(more than 4300 digits)") from None
    except OSError as exc:
        raise ConfigError("config", f"cannot read {name}: {exc.strerror}") from None
    for section, body in doc.items():
        if section not in SECTIONS or not isinstance(body, dict):
            raise ConfigError(_key(section), f"unknown section; allowed: {', '.join(SECTIONS)}")
    return doc


_SECTION_LINE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_LONG_NUMBER_LINE = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=\s*[+-]?[0-9_]{4301}")


MAX_CONFIG_BYTES = 1 << 20


def _read_bytes(path: Path, name: str) -> bytes:
    """The file's bytes; a FIFO (which would hang start-up) or a huge file is a ConfigError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise ConfigError("config", f"{name} is a FIFO or a socket, not a file")
        data = fh.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("config", f"{name} is larger than {MAX_CONFIG_BYTES} bytes")
    return data


def _long_number_key(path: Path) -> str:
    """Which setting holds the over-long number, when a plain ``key = 123...`` line does."""
    section = ""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "config"
    for line in text.splitlines():
        if head := _SECTION_LINE.match(line):
            section = head.group(1)
        elif hit := _LONG_NUMBER_LINE.match(line):
            return _key(f"{section}.{hit.group(1)}" if section else hit.group(1))
    return "config"


def _key(text: str) -> str:
    """A key name from the file, for an error: a TOML key may be any string, even 10 kB."""
    return text if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text) else shown(text)


def _section_values(section: str, cls: type, file_doc: Mapping[str, Any],
                    env: Mapping[str, str], flags: Mapping[str, Any]) -> tuple[Any, set[str]]:
    body = file_doc.get(section, {})
    names = {f.name for f in dataclasses.fields(cls)}
    for unknown in sorted(set(body) - names):
        raise ConfigError(_key(f"{section}.{unknown}"),
                          f"unknown setting; allowed: {', '.join(sorted(names))}")
    values: dict[str, Any] = {}
    given: set[str] = set()
    for f in dataclasses.fields(cls):
        key = f"{section}.{f.name}"
        raw = _pick(key, f, section, body, env, flags)
        if raw is _UNSET:
            continue
        values[f.name] = f.metadata["parse"](key, raw)
        given.add(key)
    return cls(**values), given


_UNSET = object()


def _pick(key: str, f: dataclasses.Field[Any], section: str, body: Mapping[str, Any],
          env: Mapping[str, str], flags: Mapping[str, Any]) -> Any:
    if flags.get(key) is not None:
        return flags[key]
    for name in env_names(section, f.name, f.metadata):
        if name in env:
            return env[name]
    return body.get(f.name, _UNSET)


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_file: Path | None = None) -> Config:
    """Merge flags over environment over file over defaults, and validate."""
    flags = flags or {}
    env = os.environ if env is None else env
    path = config_file or Path(env.get(f"{ENV_PREFIX}CONFIG", DEFAULT_CONFIG_FILE))
    required = config_file is not None or f"{ENV_PREFIX}CONFIG" in env
    file_doc = _read_file(path, required)
    sections: dict[str, Any] = {}
    given: set[str] = set()
    for name, cls in SECTIONS.items():
        sections[name], section_given = _section_values(name, cls, file_doc, env, flags)
        given |= section_given
    source = str(path) if file_doc else "defaults"
    cfg = Config(**sections, source=source, backend_explicit="server.backend" in given)
    return _finish(cfg, given)


def _finish(cfg: Config, given: set[str]) -> Config:
    """Cross-field rules: pick the backend, require what it needs."""
    backend = cfg.server.backend
    if not backend:
        akeyless_given = any(k.startswith("akeyless.") for k in given)
        backend = "akeyless" if akeyless_given else "local"
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, backend=backend))
    if backend == "akeyless":
        if not cfg.akeyless.access_id:
            raise ConfigError("akeyless.access_id", "is required with the akeyless backend")
        if not cfg.akeyless.key_name:
            raise ConfigError("akeyless.key_name", "is required with the akeyless backend")
    return cfg


def describe() -> list[tuple[str, str, str, str]]:
    """(key, default, env variables, doc) for every setting, for docs and `--help`."""
    rows = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else ""
            envs = ", ".join(env_names(section, f.name, f.metadata))
            rows.append((f"{section}.{f.name}", _show(default), envs, f.metadata["doc"]))
    return rows


def flags() -> dict[str, tuple[str, str]]:
    """``--flag`` -> (dotted setting, help text) for every setting declared with a flag."""
    out = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.metadata["flag"]:
                out[f.metadata["flag"]] = (f"{section}.{f.name}", f.metadata["doc"])
    return out


def _show(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return f"{value[0]}:{value[1]}"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "" if value is None else str(value)

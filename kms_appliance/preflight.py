"""`kms-appliance check`: the preflight an operator runs before wiring the apiserver.

Why: a plugin that starts but cannot wrap makes kube-apiserver fail its own
start-up in ways that are hard to read from the apiserver's logs. This runs
every step the real start-up runs (config, socket directory, auth, key,
a real wrap/unwrap round trip, clock sanity against the token expiry) and
reports each one, so the operator sees *which* precondition fails.
Exit status 0 only when every step passed; a step whose prerequisite failed
is reported as skipped and counts as a failure.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import audit, socketfs
from .config import Config
from .errors import BackendCorruption, ConfigError, KmsError, SetupError, shown
from .metrics import Metrics

if TYPE_CHECKING:
    from .backends.base import KeyBackend



PASSING = ("pass", "warn")


class Warned(Exception):
    """A step passed with a warning; its text is the detail."""


@dataclass(slots=True)
class Result:
    """One line of the report."""

    name: str
    status: str  # pass, warn (passes, but read the detail), fail, skip
    detail: str


class _Run:
    """Runs the steps in order, keeping what later steps need."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.results: list[Result] = []
        self.backend: KeyBackend | None = None

    def step(self, name: str, fn: Callable[[], str], needs: tuple[str, ...] = ()) -> None:
        failed = [r.name for r in self.results if r.name in needs and r.status not in PASSING]
        if failed:
            self.results.append(Result(name, "skip", f"needs {', '.join(failed)}"))
            return
        try:
            detail = fn()
        except KmsError as exc:
            self.results.append(Result(name, "fail", exc.message))
        except OSError as exc:
            self.results.append(Result(name, "fail", f"{type(exc).__name__}: {exc.strerror}"))
        except Warned as exc:
            self.results.append(Result(name, "warn", str(exc)))
        else:
            self.results.append(Result(name, "pass", detail))


def _config(cfg: Config) -> str:
    if cfg.server.backend == "akeyless":
        from .backends.akeyless.client import check_url  # noqa: PLC0415 - no SDK import

        check_url(cfg.akeyless.url)
        if (cfg.akeyless.cert_file is None) != (cfg.akeyless.key_file is None):
            raise ConfigError("akeyless.cert_file", "needs akeyless.key_file too (and vice versa)")
    return f"backend={cfg.server.backend}, source={cfg.source}"


def _socket_dir(cfg: Config) -> str:
    directory = cfg.server.socket.parent
    if not directory.exists():
        return f"{directory} does not exist yet; serve will create it"
    group = cfg.server.socket_group
    socketfs.check_socket_dir(directory, group, create=False)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(dir_fd)
        if socketfs.group_fix_needed(dir_fd, cfg.server.socket, st, group):
            return (f"{directory} is safe; serve will set it to mode 2750 in socket group "
                    f"{shown(group)}, whose members cannot reach the socket today "
                    f"(mode {st.st_mode & 0o7777:04o})")
    finally:
        os.close(dir_fd)
    return f"{directory} is safe"


def _socket_parent(cfg: Config) -> str:
    """Who could replace the socket directory (a warning: it is the operator's layout)."""
    directory = cfg.server.socket.parent
    reason = socketfs.parent_writable(directory)
    if reason is not None:
        raise Warned(reason)
    return f"{directory.parent} is writable only by root or the plugin's user"


def _round_trip(run: _Run) -> str:
    backend = run.backend
    if backend is None:
        raise SetupError("no backend was built")
    seed = os.urandom(32)
    wrapped = backend.wrap(seed)
    back = backend.unwrap(wrapped.ciphertext, wrapped.key_id, wrapped.annotations)
    if back.plaintext != seed:
        raise BackendCorruption("round trip returned different bytes")
    return f"wrapped and unwrapped 32 bytes under key_id {wrapped.key_id}"


def _local_steps(run: _Run) -> None:
    def backend() -> str:
        from .backends import create  # noqa: PLC0415

        run.backend = create(run.cfg, Metrics())
        st = run.backend.status()
        return f"keyring {run.cfg.local.keyring}: key_id {st.key_id}"

    run.step("key", backend, needs=("config",))
    run.step("round_trip", lambda: _round_trip(run), needs=("key",))


def _akeyless_steps(run: _Run) -> None:
    from .backends.akeyless import preflight as ak  # noqa: PLC0415

    ctx = ak.Context(run.cfg)
    run.step("auth", ctx.auth, needs=("config",))
    run.step("key", ctx.key, needs=("auth",))

    def trip() -> str:
        run.backend = ctx.backend
        return _round_trip(run)

    run.step("round_trip", trip, needs=("key",))
    run.step("key_settings", ctx.settings, needs=("key",))
    run.step("clock", ctx.clock, needs=("auth",))
    ctx.close()


def _serving(cfg: Config) -> str:
    """A plugin already on the socket is reported (what it says), not treated as a failure."""
    import stat  # noqa: PLC0415

    path = cfg.server.socket
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return f"nothing serves on {path} yet"
    if not stat.S_ISSOCK(mode):
        raise SetupError(f"{path} exists and is not a socket")
    from .client import KmsClient  # noqa: PLC0415 - grpc only when a socket is there

    client = KmsClient(path, timeout=1.0)
    try:
        st = client.status()
        try:
            name, version = client.runtime()
            runtime = f"{shown(name)} {shown(version)}, "
        except Exception:  # a v2-only plugin: Status said enough
            runtime = ""
    except Exception as exc:  # grpc.RpcError and friends: the type only, never its text
        raise Warned(f"{path} is a socket but Status got no answer ({type(exc).__name__}): "
                     "stale, or another program; serve refuses while a plugin holds it") from None
    finally:
        client.close()
    return (f"a plugin already serves on {path}: {runtime}KMS {shown(st.version)}, "
            f"healthz {shown(st.healthz)}, key_id {shown(st.key_id)}")


def checks(cfg: Config, encryption_config: Path | None = None) -> list[Result]:
    """Run every step; never raises for a failed step."""
    run = _Run(cfg)
    run.step("config", lambda: _config(cfg))
    run.step("serving", lambda: _serving(cfg))
    if encryption_config is not None:
        run.results.append(_encryption_config(cfg, encryption_config))
    run.step("socket_dir", lambda: _socket_dir(cfg))
    run.step("socket_parent", lambda: _socket_parent(cfg))
    run.step("audit_log", lambda: audit.check(cfg.observability.audit_log))
    if cfg.server.backend == "akeyless":
        _akeyless_steps(run)
    else:
        _local_steps(run)
    if run.backend is not None and cfg.server.backend != "akeyless":
        run.backend.close()
    return run.results


def render(results: list[Result], as_json: bool) -> str:
    """The report as a table or JSON."""
    ok = all(r.status in PASSING for r in results)
    if as_json:
        doc = {"ok": ok, "checked_at": int(time.time()), "checks": [asdict(r) for r in results]}
        return json.dumps(doc, indent=2) + "\n"
    width = max(len(r.name) for r in results)
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    lines += [f"{r.name:<{width}}  {r.status.upper():<6}  {r.detail}" for r in results]
    lines.append("all checks passed" if ok else "some checks FAILED")
    return "\n".join(lines) + "\n"


def _encryption_config(cfg: Config, path: Path) -> Result:
    from . import encconfig  # noqa: PLC0415

    try:
        status, detail = encconfig.check(path, cfg.server.provider_name, cfg.server.socket)
    except ConfigError as exc:
        return Result("encryption_config", "fail", exc.message)
    return Result("encryption_config", status, detail)


def run(cfg: Config, as_json: bool, out: TextIO, encryption_config: Path | None = None) -> int:
    """Run the preflight, write the report, return the exit status."""
    results = checks(cfg, encryption_config)
    out.write(render(results, as_json))
    return 0 if all(r.status in PASSING for r in results) else 1

"""Command line: serve, version, keyring, encryption-config, static-pod, check, demo.

``main`` stays a thin shell around subcommand functions that return an exit
status: 0 success, 1 runtime failure (e.g. refused to start), 2 bad
configuration or usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from . import config, logs, manifests, process, unpack, version
from .errors import ConfigError, KmsError, SetupError, shown

log = logging.getLogger("kms_appliance.cli")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file "
                   f"(default {config.DEFAULT_CONFIG_FILE}, or $KMS_APPLIANCE_CONFIG)")
    for flag, (key, text) in config.flags().items():  # each declared with its setting
        p.add_argument(flag, dest=key, default=None, help=text)


def load_config(args: argparse.Namespace) -> config.Config:
    flags = {key: getattr(args, key) for key, _ in config.flags().values()}
    return config.load(flags=flags, config_file=args.config)


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line like every other mistake: argparse would print the whole
    usage and quote the offending value in full (``invalid choice: '<10 kB>'``)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: usage error: {shown(message, limit=200)} (see --help)", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kms-appliance", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    _add_config_flags(sub.add_parser("serve", help="serve KMS v2 and v1beta1 on the socket"))
    v = sub.add_parser("version", help="print build information")
    v.add_argument("--json", action="store_true")
    k = sub.add_parser("keyring", help="manage a local keyring file")
    k.add_argument("action", choices=("init", "rotate", "list"))
    k.add_argument("path", type=Path)
    e = sub.add_parser("encryption-config", help="print an EncryptionConfiguration")
    _add_config_flags(e)
    e.add_argument("--kms-api", choices=("v1", "v2"), default="v2")
    e.add_argument("--timeout", default="3s", help="kms timeout, a positive Go duration (3s, 500ms, 1m30s)")
    _add_output_flag(e)
    sp = sub.add_parser("static-pod", help="print a static pod manifest for a control-plane node")
    _add_config_flags(sp)
    sp.add_argument("--image", required=True, help="container image (distroless, Dockerfile.distroless)")
    sp.add_argument("--name", default="kms-appliance", help="pod and container name (DNS-1123 label)")
    sp.add_argument("--namespace", default="kube-system", help="namespace (DNS-1123 label)")
    sp.add_argument("--memory-limit", default="384Mi",
                    help="Kubernetes quantity, at least the 192Mi request; includes the ~102 MiB "
                         "in-memory unpack dir")
    _add_output_flag(sp)
    c = sub.add_parser("check", help="preflight checks before pointing kube-apiserver here")
    _add_config_flags(c)
    c.add_argument("--json", action="store_true")
    c.add_argument("--encryption-config", type=Path, default=None, metavar="FILE",
                   help="also check this EncryptionConfiguration (JSON, or YAML as "
                        "encryption-config writes it) against this plugin")
    d = sub.add_parser("demo", help="serve on a fresh local keyring and show a round trip")
    d.add_argument("--dir", type=Path, default=None, help="working directory (default: new temp dir)")
    d.add_argument("--http-listen", default="127.0.0.1:8787")
    d.add_argument("--once", action="store_true", help="exit after the round trip")
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    # Before any key is loaded: no core dumps, and die with the frozen binary's bootloaders.
    chain = process.harden()
    cfg = load_config(args)
    logs.setup(cfg.observability.log_level, cfg.observability.log_format)
    unpack.sweep_predecessors()  # room in a pod's emptyDir after a SIGKILLed container
    from .app import App  # noqa: PLC0415 - keep grpc off the start-up of light commands

    App(cfg).serve(chain)
    # Drained and stopped: leave without finalising the interpreter under daemon threads.
    process.exit_now(0)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    info = version.full_info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(f"kms-appliance {info['version']} (commit {info['commit']}, python {info['python']})")
    return 0


def cmd_keyring(args: argparse.Namespace) -> int:
    from .backends import keyring  # noqa: PLC0415

    actions = {"init": keyring.init, "rotate": keyring.rotate, "list": keyring.load}
    ring = actions[args.action](args.path)
    current = ring.current.version
    for entry in sorted(ring.entries, key=lambda e: e.version):
        mark = "*" if entry.version == current else " "
        print(f"{mark} v{entry.version}  {ring.key_id(entry.version)}  created {entry.created}")
    return 0


def _add_output_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="write FILE atomically (mode 0600) instead of stdout; untouched on error")


def _emit(text: str, output: Path | None) -> None:
    """Print a generated document, or put it at ``output`` in one rename.

    Why not a shell redirect: ``> /etc/kubernetes/enc/encryption-config.yaml``
    truncates the file before the generator runs, so a refused value still
    leaves an empty file where kube-apiserver reads its configuration at the
    next restart. With ``--output`` the old file stays until the new one is
    complete.
    """
    if output is None:
        sys.stdout.write(text)
        return
    from . import atomicfile  # noqa: PLC0415

    try:
        atomicfile.write(output, text.encode())
    except OSError as exc:
        raise ConfigError("--output", f"cannot write {atomicfile.show(output)}: "
                                      f"{exc.strerror or type(exc).__name__}") from None


def cmd_encryption_config(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    _emit(manifests.encryption_config(cfg, args.kms_api, args.timeout), args.output)
    return 0


def cmd_static_pod(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    config_file = str(args.config or config.DEFAULT_CONFIG_FILE)
    _emit(manifests.static_pod(cfg, args.image, name=args.name, namespace=args.namespace,
                               config_file=config_file, memory_limit=args.memory_limit), args.output)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    from . import preflight  # noqa: PLC0415

    return preflight.run(cfg, args.json, sys.stdout, args.encryption_config)


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo  # noqa: PLC0415

    return demo.run(args.dir, args.http_listen, args.once)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve, "version": cmd_version, "keyring": cmd_keyring,
    "encryption-config": cmd_encryption_config, "static-pod": cmd_static_pod, "check": cmd_check,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    unpack.hold_own()  # a restarting serve must not sweep a live command's unpack directories
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"kms-appliance: configuration error: {exc.message}", file=sys.stderr)
        return 2
    except SetupError as exc:
        print(f"kms-appliance: refusing to start: {exc.message}", file=sys.stderr)
        return 1
    except KmsError as exc:
        print(f"kms-appliance: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:  # the safety net: one line, never a traceback
        # The type only: an SDK's or the stdlib's text may quote a secret or a 10 kB value.
        print(f"kms-appliance: failed: unexpected {type(exc).__name__}", file=sys.stderr)
        return 1

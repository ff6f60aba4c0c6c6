"""`check --encryption-config FILE`: what kube-apiserver would do with an existing file.

Why: a wrong endpoint, a timeout Go cannot parse, ``cachesize`` under KMS v2 or
``identity`` listed first are found by kube-apiserver only at its own start
(it refuses to start, or silently writes plaintext). This reads the file and
says so before the apiserver is restarted.

Format: JSON, or the YAML subset our ``encryption-config`` generator emits
(block mappings and lists, ``[a, b]`` / ``{}`` flow values, plain or
double-quoted scalars, ``#`` comment lines). Anything else (anchors, block
scalars, multi-documents, single quotes) is refused with the line number:
PyYAML is not a runtime dependency, and guessing at YAML would be worse.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from . import k8svalid
from .errors import ConfigError, shown

API_VERSION = "apiserver.config.k8s.io/v1"
MAX_BYTES = 1 << 20
# The generator's output nests 6 deep; a bound keeps a hostile file from
# exhausting the parser's (or str()'s) recursion instead of being refused.
MAX_DEPTH = 32
MAX_INT_DIGITS = 18  # int() of more digits is refused by Python itself (4300)


class Findings:
    """Problems (kube-apiserver refuses or misbehaves) and notes (what it would do)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []


def load(path: Path) -> Any:
    """Parse the file (JSON, else the YAML subset); a ConfigError names the line."""
    data = _read(path)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ConfigError("--encryption-config", "file is not UTF-8") from None
    return parse(text)


def parse(text: str) -> Any:
    """JSON when it starts with '{', else the YAML subset."""
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError("--encryption-config", f"not valid JSON: {exc}") from None
        _depth(doc)
        return doc
    return parse_yaml(text)


def _read(path: Path) -> bytes:
    """At most 1 MiB of a regular file: a FIFO would block ``open`` (O_NONBLOCK) and ``read``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses directories
            os.close(fd)
            raise ConfigError("--encryption-config", f"{shown(str(path))} is not a regular file")
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError("--encryption-config", f"cannot read {shown(str(path))}: "
                                                 f"{exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError("--encryption-config", "file is over 1 MiB")
    return data


def _depth(doc: Any) -> None:
    """Refuse nesting beyond MAX_DEPTH (iteratively: the check itself must not recurse)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError("--encryption-config", f"nested deeper than {MAX_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value \
            if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)


def _scalar(text: str, line: int, depth: int = 0) -> Any:
    text = text.strip()
    if text == "{}":
        return {}
    if text.startswith("[") and text.endswith("]"):
        _deep(depth, line)
        inner = text[1:-1].strip()
        return [_scalar(t, line, depth + 1) for t in inner.split(",")] if inner else []
    if text.startswith('"'):
        try:
            return json.loads(text)
        except ValueError:
            raise ConfigError("--encryption-config", f"line {line}: bad quoted string") from None
    if not text or text[0] in "'&*!|>%@`{[" or " #" in text:
        raise ConfigError("--encryption-config",
                          f"line {line}: YAML beyond the supported subset (use JSON)")
    if text.isascii() and text.isdigit() and len(text) <= MAX_INT_DIGITS:
        return int(text)
    return text


def _deep(depth: int, line: int) -> None:
    if depth >= MAX_DEPTH:
        raise ConfigError("--encryption-config", f"line {line}: nested deeper than {MAX_DEPTH} levels")


def parse_yaml(text: str) -> Any:
    """The strict subset; returns nested dicts/lists/str/int."""
    lines: list[tuple[int, int, str]] = []  # (line number, indent, content)
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or (stripped == "---" and not lines):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())] or stripped in ("---", "..."):
            raise ConfigError("--encryption-config", f"line {number}: tabs or several documents")
        lines.append((number, len(raw) - len(raw.lstrip(" ")), stripped))
    if not lines:
        raise ConfigError("--encryption-config", "file is empty")
    value, end = _block(lines, 0, lines[0][1], 0)
    if end != len(lines):
        raise ConfigError("--encryption-config", f"line {lines[end][0]}: unexpected indentation")
    return value


def _block(lines: list[tuple[int, int, str]], i: int, indent: int, depth: int) -> tuple[Any, int]:
    _deep(depth, lines[i][0])
    if lines[i][2].startswith("- ") or lines[i][2] == "-":
        out: list[Any] = []
        while i < len(lines) and lines[i][1] == indent and lines[i][2].startswith("-"):
            number, _, content = lines[i]
            rest = content[1:].lstrip()
            if not rest:
                raise ConfigError("--encryption-config", f"line {number}: empty list item")
            # "- key: value" opens a mapping at the item's content column.
            lines[i] = (number, indent + len(content) - len(rest), rest)
            if _is_key(rest):
                item, i = _mapping(lines, i, lines[i][1], depth + 1)
            else:
                item, i = _scalar(rest, number), i + 1
            out.append(item)
        return out, i
    return _mapping(lines, i, indent, depth)


def _is_key(content: str) -> bool:
    head = content.split(":", 1)[0]
    return ":" in content and not content.startswith(('"', "[", "{")) and " " not in head


def _mapping(lines: list[tuple[int, int, str]], i: int, indent: int,
             depth: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    while i < len(lines) and lines[i][1] == indent:
        number, _, content = lines[i]
        if not _is_key(content):
            raise ConfigError("--encryption-config", f"line {number}: expected 'key: value'")
        key, _, rest = content.partition(":")
        if key in out:
            raise ConfigError("--encryption-config", f"line {number}: duplicate key {shown(key)}")
        i += 1
        if rest.strip():
            out[key] = _scalar(rest, number)
        elif i < len(lines) and (lines[i][1] > indent or
                                 (lines[i][1] == indent and lines[i][2].startswith("-"))):
            out[key], i = _block(lines, i, lines[i][1], depth + 1)
        else:
            out[key] = None
    if i < len(lines) and lines[i][1] > indent:
        raise ConfigError("--encryption-config", f"line {lines[i][0]}: unexpected indentation")
    return out, i


def _kind(provider: Any) -> str:
    return next(iter(provider)) if isinstance(provider, dict) and len(provider) == 1 else "?"


def review(doc: Any, provider_name: str, socket: Path) -> Findings:
    """Compare the document with this plugin's provider name and socket."""
    f = Findings()
    if not isinstance(doc, dict):
        f.problems.append("not a mapping")
        return f
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "EncryptionConfiguration":
        f.problems.append(f"apiVersion/kind must be {API_VERSION} EncryptionConfiguration")
    resources = doc.get("resources")
    if not isinstance(resources, list) or not resources:
        f.problems.append("no resources list")
        return f
    ours = 0
    for entry in resources:
        ours += _review_entry(entry, provider_name, socket, f)
    if not ours:
        f.problems.append(f"no kms provider named {shown(provider_name)}: kube-apiserver would "
                          "not use this plugin")
    return f


def _review_entry(entry: Any, name: str, socket: Path, f: Findings) -> int:
    if not isinstance(entry, dict) or not isinstance(entry.get("providers"), list) \
            or not entry["providers"] or not isinstance(entry.get("resources"), list):
        f.problems.append("a resources entry lacks resources or providers")
        return 0
    what = shown(", ".join(str(r) for r in entry["resources"]))
    providers = entry["providers"]
    kinds = [_kind(p) for p in providers]
    first = kinds[0]
    found = 0
    for index, p in enumerate(providers):
        kms = p.get("kms") if isinstance(p, dict) else None
        if isinstance(kms, dict) and kms.get("name") == name:
            found += 1
            _review_kms(kms, socket, what, f)
            role = "writes and reads" if index == 0 else "reads only (an earlier provider writes)"
            f.notes.append(f"{what}: {role} with kms {shown(str(kms.get('apiVersion', 'v1')))} "
                           f"{shown(name)}")
    if first == "identity" and found:
        f.warnings.append(f"{what}: identity is first, so new writes are stored in plaintext "
                          "(fine only while migrating; list this plugin first)")
    elif first not in ("kms", "identity"):
        f.notes.append(f"{what}: new writes use {shown(first)}")
    if found and "identity" not in kinds:
        f.notes.append(f"{what}: no identity provider: data written before encryption can't be read")
    return found


def _review_kms(kms: dict[str, Any], socket: Path, what: str, f: Findings) -> None:
    api = kms.get("apiVersion", "v1")
    want = f"unix://{socket}"
    if kms.get("endpoint") != want:
        f.problems.append(f"{what}: endpoint is {shown(str(kms.get('endpoint')))}, this plugin "
                          f"serves {shown(want)}")
    if api not in ("v1", "v2"):
        f.problems.append(f"{what}: kms apiVersion must be v1 or v2, got {shown(str(api))}")
    elif api == "v2" and "cachesize" in kms:
        f.problems.append(f"{what}: cachesize is not allowed with kms v2 (kube-apiserver refuses)")
    elif api == "v1":
        f.warnings.append(f"{what}: kms v1 is deprecated (disabled by default since Kubernetes "
                          "1.29); use v2")
    if api == "v2" and ":" in str(kms.get("name")):
        f.problems.append(f"{what}: a kms v2 name may not contain ':'")
    timeout = kms.get("timeout", "3s")
    try:
        k8svalid.kms_timeout("timeout", str(timeout))
    except ConfigError as exc:
        f.problems.append(f"{what}: {exc.message}")


def check(path: Path, provider_name: str, socket: Path) -> tuple[str, str]:
    """(status, detail) for the preflight: fail, warn or pass."""
    f = review(load(path), provider_name, socket)
    if f.problems:
        return "fail", "; ".join(f.problems)
    detail = "; ".join(f.warnings + f.notes)
    return ("warn" if f.warnings else "pass"), detail

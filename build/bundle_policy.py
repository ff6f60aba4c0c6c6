"""What may and may not go into the frozen binary.

Why one module: the spec (at analysis time) and check_bundle.py (on the
finished archive) must agree on the rule, and an auditor should find it in
one place. Only the standard library is used so both Python environments can
import it.
"""

from __future__ import annotations

# Top-level modules that must never be bundled: test tooling, code
# generators, packaging machinery, the emulator, and interactive/GUI parts of
# the standard library that a daemon never uses.
FORBIDDEN_TOPLEVEL: frozenset[str] = frozenset({
    "akeyless_emulator", "tests", "bench",
    "pytest", "_pytest", "pluggy", "hypothesis", "iniconfig",
    "grpc_tools", "mypy", "ruff", "akeyless_cloud_id",
    "setuptools", "pkg_resources", "_distutils_hack", "distutils", "pip", "wheel",
    "PyInstaller", "staticx", "elftools",
    "tkinter", "_tkinter", "idlelib", "lib2to3", "pydoc_data", "test", "turtle", "turtledemo",
    "ensurepip", "venv",
})

# Modules the analysis would otherwise drag in through optional imports
# (profile/pstats: waitress.profile(), a debugging helper the plugin never calls).
EXCLUDES: tuple[str, ...] = tuple(sorted(FORBIDDEN_TOPLEVEL | {
    "unittest", "doctest", "pdb", "pydoc", "xmlrpc", "curses", "sqlite3", "_sqlite3",
    "readline", "lzma", "_lzma", "bz2", "_bz2", "profile", "pstats", "cProfile",
}))


def toplevel(name: str) -> str:
    """``a.b.c`` -> ``a``; the unit the policy speaks about."""
    return name.split(".", 1)[0]


def forbidden(names: list[str]) -> list[str]:
    """The module names among *names* whose top-level package is forbidden."""
    return sorted(n for n in names if toplevel(n) in FORBIDDEN_TOPLEVEL)

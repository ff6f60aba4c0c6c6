"""The documentation every artefact ships (.deb, .rpm, offline bundle): README.md and docs/*.md,
laid out as in the repository so the links between them work."""

from __future__ import annotations

from pathlib import Path

from .support import REPO

# Relative path -> the repository file it must equal.
DOCS = {"README.md": REPO / "README.md",
        **{f"docs/{p.name}": p for p in sorted((REPO / "docs").glob("*.md"))}}
# What an operator needs; named so that a lost glob cannot pass unnoticed.
REQUIRED = ("README.md", "docs/troubleshooting.md", "docs/akeyless-permissions.md", "docs/backup.md",
            "docs/k3s-rke2.md", "docs/configuration.md", "docs/deployment.md", "docs/akeyless.md",
            "docs/verify.md")


def assert_shipped(directory: Path) -> None:
    """Every document is in ``directory``, byte for byte the repository's."""
    assert set(REQUIRED) <= set(DOCS), f"missing from the repository: {set(REQUIRED) - set(DOCS)}"
    for rel, source in DOCS.items():
        shipped = directory / rel
        assert shipped.is_file(), f"{shipped} missing"
        assert shipped.read_bytes() == source.read_bytes(), f"{shipped} differs from {source}"

"""A reader for the block-style YAML subset the product writes by hand (it has no YAML library):
block mappings and sequences, JSON scalars and flow lists of plain words. Tests read the
generated documents with it so a change in what manifests.py writes is seen field by field."""

from __future__ import annotations

import json
from typing import Any


def _scalar(text: str) -> Any:
    text = text.strip()
    if text == "{}":
        return {}
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("[") and not text.startswith("[\""):
        return [item.strip() for item in text[1:-1].split(",")]  # flow list of plain words
    if text.startswith(("\"", "[")) or text.lstrip("-").isdigit():
        return json.loads(text)
    return text


def parse(doc: str) -> Any:
    """Block mappings and sequences, JSON scalars/flow lists: what manifests.py writes."""
    lines = [(len(raw) - len(raw.lstrip(" ")), raw.strip()) for raw in doc.splitlines() if raw.strip()]
    value, end = _block(lines, 0, lines[0][0])
    assert end == len(lines), f"unparsed line {end}: {lines[end]}"
    return value


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- "):
        items: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            # "- key: v" opens a mapping whose keys sit two columns further in.
            sub = [(indent + 2, lines[i][1][2:])]
            j = i + 1
            while j < len(lines) and lines[j][0] > indent:
                sub.append(lines[j])
                j += 1
            if ":" in sub[0][1] and not sub[0][1].startswith(("\"", "[", "{")):
                items.append(_block(sub, 0, indent + 2)[0])
            else:
                items.append(_scalar(sub[0][1]))
            i = j
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
        key, _, rest = lines[i][1].partition(":")
        assert key not in mapping, f"duplicate key {key}"
        if rest.strip():
            mapping[key] = _scalar(rest)
            i += 1
        else:
            mapping[key], i = _block(lines, i + 1, lines[i + 1][0])
    return mapping, i

"""Which akeyless model modules the plugin can reach, found without importing the SDK.

Why: the SDK ships ~1,300 generated model modules; kms_appliance imports the
few it needs by name at run time (backends/akeyless/sdk.py), so PyInstaller's
analysis sees none of them. ``closure_modules`` starts from the operations the
client calls (``OPERATIONS`` in backends/akeyless/client.py, read with ast so
it follows that file: request model and response type per operation) and
follows ``openapi_types`` to every nested model. Everything is parsed from
source: importing ``akeyless`` would execute all 1,300 modules.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

_CLASS = re.compile(r"^class (\w+)\(object\):", re.M)
_TYPE_NAME = re.compile(r"[A-Za-z_]\w*")
_PRIMITIVES = frozenset({"str", "int", "float", "bool", "object", "date", "datetime", "list", "dict",
                         "file", "bytearray", "bytes"})
CLIENT = Path(__file__).resolve().parent.parent / "kms_appliance/backends/akeyless/client.py"


def sdk_dir() -> Path:
    """The installed akeyless package directory (found, not executed)."""
    spec = importlib.util.find_spec("akeyless")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the akeyless SDK is not installed in the freeze environment")
    return Path(next(iter(spec.submodule_search_locations)))


def all_model_modules() -> list[str]:
    """Every ``akeyless.models.*`` module, sorted."""
    return sorted(f"akeyless.models.{p.stem}" for p in (sdk_dir() / "models").glob("*.py")
                  if p.stem != "__init__")


def _class_index() -> dict[str, Path]:
    index = {}
    for path in sorted((sdk_dir() / "models").glob("*.py")):
        for name in _CLASS.findall(path.read_text(encoding="utf-8")):
            index[name] = path
    return index


def _openapi_types(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "openapi_types"
                                                 for t in node.targets)):
            return list(ast.literal_eval(node.value).values())
    return []


def client_operations() -> dict[str, tuple[str, str]]:
    """``OPERATIONS`` from the client module: operation -> (request model, response type)."""
    tree = ast.parse(CLIENT.read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "OPERATIONS" and node.value is not None:
            return dict(ast.literal_eval(node.value))
    raise SystemExit(f"OPERATIONS not found in {CLIENT}")


def closure_modules() -> list[str]:
    """Model modules reachable from the client's operations, sorted.

    ``OPERATIONS`` maps operation -> (request model, response type); every
    name in it must be a model class of the installed SDK, else the build
    stops (a renamed model would otherwise fail only at run time).
    """
    index = _class_index()
    todo = []
    for names in client_operations().values():
        for name in names:
            if name not in index:
                raise SystemExit(f"OPERATIONS names {name!r}, which is no akeyless model class")
            todo.append(name)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in _PRIMITIVES or name not in index:
            continue
        seen.add(name)
        for type_text in _openapi_types(index[name]):
            todo.extend(t for t in _TYPE_NAME.findall(type_text) if t not in _PRIMITIVES)
    return sorted(f"akeyless.models.{index[n].stem}" for n in seen)


if __name__ == "__main__":
    mods = closure_modules()
    print(f"{len(mods)} of {len(all_model_modules())} model modules reachable")
    for m in mods:
        print(m)

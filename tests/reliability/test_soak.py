"""The soak in CI form: 100,000 mixed calls, same driver and verdict as `make soak` (1,000,000)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.reliability import soak
from tests.support import figures, ledger

CALLS = int(os.environ.get("KMS_APPLIANCE_SOAK_CALLS", "100000"))


def test_soak(tmp_path: Path) -> None:
    kept: list[soak.Soak] = []
    result = soak.run(CALLS, 6, tmp_path, keep=kept)
    s = kept[0]
    ledger.secrets(seed for seed, _, _ in s.v2_set)
    ledger.secrets(dek for dek, _ in s.v1_set)
    state = json.loads((s.emu.state_dir / "state.json").read_text())
    ledger.secrets(_strings_named(state, ("token", "value", "material", "access_key")))
    for key, value in result.items():
        figures.put("soak", key, value)
    problems = soak.verdict(result)
    assert result["calls"] == CALLS
    assert result["encrypt_key_ids_seen"] >= 2, "rotations must show up as new key_ids"
    assert not problems, problems


def _strings_named(doc: object, names: tuple[str, ...]) -> list[str]:
    """Every string under a key of those names, anywhere in the emulator's state."""
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in names and isinstance(v, str):
                out.append(v)
            else:
                out += _strings_named(v, names)
    elif isinstance(doc, list):
        for v in doc:
            out += _strings_named(v, names)
    return out

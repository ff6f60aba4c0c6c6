"""Against the emulator: the KEK version's creation date travels from describe-item into the
backend's state and status (the item's protection and rotation settings: test_akeyless_check.py)."""

from __future__ import annotations

import datetime as dt

from akeyless_emulator import Emulator
from tests.support.emulator import KEY


def _ts(when: dt.datetime) -> float:
    return float(int(when.timestamp()))  # describe-item states whole seconds


def test_created_follows_the_current_version(emu: Emulator, ak_env, make_backend):
    backend = make_backend(ak_env)
    v1 = _ts(emu.key(KEY).versions[1].creation_date)
    assert backend.status().created == v1
    emu.key(KEY).versions[1].creation_date = emu.key(KEY).versions[1].creation_date.replace(year=2020)
    emu.rotate_key(KEY)
    backend.refresh()
    key = emu.key(KEY)
    assert backend.status().key_version == "2"
    assert backend.status().created == _ts(key.versions[2].creation_date)
    assert backend.state.created[1] == _ts(key.versions[1].creation_date) < v1

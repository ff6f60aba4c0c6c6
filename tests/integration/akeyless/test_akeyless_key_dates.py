"""Against the emulator: the KEK version's creation date and the item's protection and
rotation settings travel from describe-item into the backend's state and status."""

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


def test_settings_are_reported(emu: Emulator, ak_env, make_backend):
    st = make_backend(ak_env).state
    assert (st.delete_protection, st.auto_rotate, st.rotation_interval) == (False, False, 0)
    key = emu.key(KEY)
    key.delete_protection, key.auto_rotate, key.rotation_interval = True, True, 30
    st = make_backend(ak_env).state
    assert (st.delete_protection, st.auto_rotate, st.rotation_interval) == (True, True, 30)

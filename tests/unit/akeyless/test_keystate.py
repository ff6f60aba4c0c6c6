"""KeyState: start-up rules, key_id, creation dates, and who is to blame when Akeyless refuses to
decrypt data labelled with a version."""

from __future__ import annotations

import datetime as dt
import types

import pytest

from kms_appliance.backends.akeyless import keystate
from kms_appliance.backends.akeyless.keystate import KeyState
from kms_appliance.errors import BackendCorruption

STATE = KeyState(name="/k", item_id=7, item_type="AES256GCM", last_version=4, enabled=True,
                 versions={1: "Disabled", 2: "PendingDeletion", 4: "Enabled"})


@pytest.mark.parametrize(("version", "blame"), [
    (2, "is PendingDeletion"),
    (3, "no longer exists"),  # within the key's history but gone: deleted
])
def test_refusal(version: int, blame: str | None) -> None:
    """The ciphertext blamed for a version never had (0, beyond the last) or enabled, and a disabled
    one named: through the real SDK in tests/integration/akeyless/test_rejected_ciphertext.py."""
    assert STATE.refusal(version) == blame


def test_without_version_list_the_ciphertext_is_blamed() -> None:
    bare = KeyState(name="/k", item_id=7, item_type="AES256GCM", last_version=4, enabled=True)
    assert bare.refusal(3) is None


def _item(**kw: object) -> types.SimpleNamespace:
    """An SDK describe-item answer; ``kw`` overrides its fields."""
    versions = [types.SimpleNamespace(version=1, item_version_state="Disabled",
                                      creation_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)),
                types.SimpleNamespace(version=2, item_version_state="Enabled",
                                      creation_date="2026-03-01T12:00:00Z")]
    base = {"item_id": 7, "last_version": 2, "item_type": "AES256GCM", "is_enabled": True,
            "item_state": "Enabled", "item_versions": versions, "item_name": "/k",
            "delete_protection": True, "auto_rotate": True, "rotation_interval": 90}
    return types.SimpleNamespace(**{**base, **kw})


class TestKeyState:
    """Start-up rules and key_id."""

    def test_usable_key(self):
        st = keystate.from_item(_item(), "/k")
        assert st.problem() is None and st.key_id == "akeyless:7:2"
        assert st.version_state(1) == "Disabled"

    @pytest.mark.parametrize(("kw", "words"), [({"item_type": "RSA2048"}, "not an AES key"),
                                               ({"is_enabled": False}, "disabled"),
                                               ({"last_version": 1}, "version 1 Disabled")])
    def test_problems(self, kw, words):
        assert words in keystate.from_item(_item(**kw), "/k").problem()

    def test_impossible_answer_is_corruption(self):
        with pytest.raises(BackendCorruption):
            keystate.from_item(_item(last_version=None), "/k")


class TestDates:
    """The KEK version's creation date as Akeyless states it (the "key not rotated" alert's source)."""

    @pytest.mark.parametrize(("value", "expected"), [
        (dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC), 1772366400.0),
        (dt.datetime(2026, 3, 1, 12, 0), 1772366400.0),  # naive: Akeyless answers in UTC
        ("2026-03-01T12:00:00Z", 1772366400.0),  # raw JSON from a partial (frozen) bundle
        ("2026-03-01T13:00:00+01:00", 1772366400.0),
        ("yesterday", None), ("", None), (None, None), (1772366400, None),
    ])
    def test_timestamp(self, value, expected):
        assert keystate.timestamp(value) == expected

    def test_missing_fields_are_unknown_not_false(self):
        st = keystate.from_item(_item(delete_protection=None, auto_rotate="yes",
                                      rotation_interval=True, item_versions=None), "/k")
        assert st.created == {}
        assert (st.delete_protection, st.auto_rotate, st.rotation_interval) == (None, None, None)

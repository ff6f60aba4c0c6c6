"""KeyState: start-up rules, key_id, and who is to blame when Akeyless refuses to decrypt data
labelled with a version."""

from __future__ import annotations

import types

import pytest

from kms_appliance.backends.akeyless import keystate
from kms_appliance.backends.akeyless.keystate import KeyState
from kms_appliance.errors import BackendCorruption

STATE = KeyState(name="/k", item_id=7, item_type="AES256GCM", last_version=4, enabled=True,
                 versions={1: "Disabled", 2: "PendingDeletion", 4: "Enabled"})


@pytest.mark.parametrize(("version", "blame"), [
    (0, None),  # versions start at 1: a forged header
    (5, None),  # beyond the last version: never existed, relabelled
    (2**32 - 1, None),
    (4, None),  # enabled: the ciphertext was tampered with
    (1, "is Disabled"),
    (2, "is PendingDeletion"),
    (3, "no longer exists"),  # within the key's history but gone: deleted
])
def test_refusal(version: int, blame: str | None) -> None:
    assert STATE.refusal(version) == blame


def test_without_version_list_the_ciphertext_is_blamed() -> None:
    bare = KeyState(name="/k", item_id=7, item_type="AES256GCM", last_version=4, enabled=True)
    assert bare.refusal(3) is None


class TestKeyState:
    """Start-up rules and key_id."""

    def _item(self, **kw):
        base = {"item_id": 7, "last_version": 2, "item_type": "AES256GCM", "is_enabled": True,
                "item_state": "Enabled", "item_name": "/k", "item_versions": [
                    types.SimpleNamespace(version=1, item_version_state="Disabled"),
                    types.SimpleNamespace(version=2, item_version_state="Enabled")]}
        return types.SimpleNamespace(**{**base, **kw})

    def test_usable_key(self):
        st = keystate.from_item(self._item(), "/k")
        assert st.problem() is None and st.key_id == "akeyless:7:2"
        assert st.version_state(1) == "Disabled"

    @pytest.mark.parametrize(("kw", "words"), [({"item_type": "RSA2048"}, "not an AES key"),
                                               ({"is_enabled": False}, "disabled"),
                                               ({"last_version": 1}, "version 1 Disabled")])
    def test_problems(self, kw, words):
        assert words in keystate.from_item(self._item(**kw), "/k").problem()

    def test_impossible_answer_is_corruption(self):
        with pytest.raises(BackendCorruption):
            keystate.from_item(self._item(last_version=None), "/k")

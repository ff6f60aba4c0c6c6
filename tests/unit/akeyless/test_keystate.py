"""KeyState.refusal: who is to blame when Akeyless refuses to decrypt data labelled with a version."""

from __future__ import annotations

import pytest

from kms_appliance.backends.akeyless.keystate import KeyState

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

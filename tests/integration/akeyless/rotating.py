"""A key that rotates after each of the first ``times`` encrypts: the bound on re-wrapping."""

from __future__ import annotations

import threading
from collections.abc import Callable

from akeyless_emulator import Emulator
from tests.support.emulator import KEY


def error_while_rotating(emu: Emulator, call: Callable[[], object], times: int = 3) -> BaseException:
    """Run ``call`` in a thread, rotate the key after each of its first ``times`` encrypts (the
    caller holds each describe back with a latency fault), and return what ``call`` raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    try:
        for n in range(1, times + 1):
            assert emu.wait_for("encrypt", calls=n, timeout=10)
            emu.rotate_key(KEY)
    finally:
        t.join(15)
    (err,) = errors
    return err

"""A key rotated while a call is in flight, between an encrypt and the check after it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from akeyless_emulator import Emulator
from tests.support.emulator import KEY


def rotated_during_check(emu: Emulator, call: Callable[..., Any], *args: Any) -> Any:
    """What ``call(*args)`` returned, the key rotated once while the describe-item after its
    encrypt was in flight (the caller holds that back with a latency fault)."""
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(call, *args)
        assert emu.wait_for("describe-item", in_flight=1, timeout=10), "no check after the encrypt"
        emu.rotate_key(KEY)
        return running.result(15)  # in the pool's block: its exit waits without a bound


def error_while_rotating(emu: Emulator, call: Callable[..., object], *args: Any, times: int = 3) -> BaseException:
    """What ``call(*args)`` raised, the key rotated after each of its first ``times`` encrypts (the
    caller holds each describe back with a latency fault): the bound on re-wrapping."""
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(call, *args)
        for n in range(1, times + 1):
            assert emu.wait_for("encrypt", calls=n, timeout=10)
            emu.rotate_key(KEY)
        err = running.exception(15)  # in the pool's block: its exit waits without a bound
    assert err is not None, "the call never failed"
    return err

"""Key descriptions made after a given moment, shared by the callers waiting for one.

Why: direct mode labels each new ciphertext with the item version Akeyless
used, but /encrypt does not say which version that was (its ciphertext is
opaque). Versions only grow, so a description held from before the encrypt
(v_before) and one made after the encrypt answered (v_after) bound the
version used: v_before <= used <= v_after. When both agree the label is
exact. Every encrypt needs a description that *started* after it answered;
one such description serves every encrypt that had answered by then, so a
burst of N concurrent encrypts costs a few describes, not N.

Single flight: at most one describe runs at a time. A caller arriving while
one is running waits for the next (the running one may have started before
its encrypt answered), which it then shares with everyone who arrived meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ...errors import BackendUnavailable, KmsError
from .keystate import KeyState


class FreshDescriber:
    """``after_now(timeout)``: a KeyState from a describe that started after the call.

    ``timeout`` bounds the describe this caller makes (its deadline starts when
    it starts); a caller waiting for others waits at most two of them: the one
    running when it arrived, then the one it shares.
    """

    def __init__(self, describe: Callable[[float], KeyState]) -> None:
        self._describe = describe
        self._cond = threading.Condition()
        self._started = 0  # describes started so far (generation numbers)
        self._done = 0  # generation of the last describe that finished with an answer
        self._running = False
        self._result: KeyState | KmsError | None = None

    def after_now(self, timeout: float) -> KeyState:
        """Describe, or join the next describe to start; raises its KmsError."""
        wait_until = time.monotonic() + 2 * timeout
        with self._cond:
            need = self._started + 1
            while self._done < need and self._running:
                left = wait_until - time.monotonic()
                if left <= 0:
                    raise BackendUnavailable("Akeyless describe-item: call deadline exceeded")
                self._cond.wait(left)
            if self._done >= need:
                return _answer(self._result)
            self._started += 1
            generation = self._started
            self._running = True
        return self._lead(generation, time.monotonic() + timeout)

    def _lead(self, generation: int, deadline: float) -> KeyState:
        result: KeyState | KmsError | None = None
        try:
            try:
                result = self._describe(deadline)
            except KmsError as exc:
                result = exc
                raise
            return result
        finally:
            with self._cond:
                self._running = False
                if result is not None:  # anything else: the next caller describes again
                    self._done, self._result = generation, result
                self._cond.notify_all()


def _answer(result: KeyState | KmsError | None) -> KeyState:
    if isinstance(result, KeyState):
        return result
    if isinstance(result, KmsError):  # a new instance per waiter: tracebacks stay apart
        raise type(result)(result.message) from None
    raise AssertionError("a finished describe left no result")

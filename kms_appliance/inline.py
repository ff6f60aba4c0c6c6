"""Calls answered in the event loop, and the way out for one that would wait.

Why: a worker hand-off costs a call more than the work itself when the answer
is already in memory (a held intermediate key, a cached DEK). So the server
first runs Encrypt and Decrypt in its event loop; a backend that finds it
would have to wait there (a remote call, another caller's load, a lock held
across I/O) raises :class:`NeedsWorker` *before* changing any state, and the
server hands that call to a worker, which runs it again from the start.
Only the event loop thread is marked; everywhere else :func:`may_wait` is a
no-op, so backends behave the same when called directly (tests, refresh).
"""

from __future__ import annotations

import threading

_here = threading.local()


class NeedsWorker(Exception):
    """This call would wait on the event loop thread: serve it in a worker instead."""


def mark_event_loop() -> None:
    """Declare the current thread the server's event loop (it must never wait)."""
    _here.loop = True


def may_wait() -> None:
    """Call right before anything that may wait; raises NeedsWorker in the event loop."""
    if getattr(_here, "loop", False):
        raise NeedsWorker

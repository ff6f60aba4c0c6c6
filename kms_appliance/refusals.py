"""Refused peers, reported at a bounded rate with exact counts.

Why: a refused peer can connect tens of thousands of times a second (one
measured 162k audit records in 5 s, ~1 TB a day), and each refusal used to
write an audit record and a warning line. The refusal itself stays cheap
and every one is still counted (``kms_appliance_peer_refusals_total`` is
incremented by the caller, per refusal); what is written is aggregated per
(reason, uid): the first refusal of a key is reported at once (count 1),
later ones are summed and reported at most once per ``interval`` with their
``count`` and the last peer's pid and gid. A key quiet for a whole interval
is forgotten, so its next refusal is again reported at once. The counts of
all reports add up to the metric once :meth:`RefusalThrottle.flush` has
run with ``force=True`` (at shutdown).

Keys are bounded: beyond ``max_keys`` (reason, uid) pairs, further uids are
summed under uid -1 (only root can make many uids, but memory stays bounded
whatever happens).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .peercred import Peer

INTERVAL = 10.0
MAX_KEYS = 256
OTHER_UIDS = -1


@dataclass(frozen=True, slots=True)
class Report:
    """One refusal report: ``count`` refusals of ``reason`` from ``uid`` over ``seconds``.

    ``pid``/``gid`` are the last refused peer's. ``seconds`` is 0 for the
    immediate report of a key's first refusal.
    """

    reason: str
    uid: int
    pid: int
    gid: int
    count: int
    seconds: float


@dataclass(slots=True)
class _Window:
    since: float  # when this key was last reported
    count: int = 0  # refusals since then, not yet reported
    pid: int = 0
    gid: int = 0


class RefusalThrottle:
    """Aggregates refusals per (reason, uid); ``report`` is called outside the lock."""

    def __init__(self, report: Callable[[Report], None], interval: float = INTERVAL,
                 max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic) -> None:
        self._report = report
        self._interval = interval
        self._max_keys = max_keys
        self._clock = clock
        self._windows: dict[tuple[str, int], _Window] = {}
        self._lock = threading.Lock()

    def refused(self, peer: Peer, reason: str, count: int = 1) -> None:
        """``count`` refusals, ``peer`` the last; the first is reported now if its key is new."""
        now = self._clock()
        with self._lock:
            key = (reason, peer.uid)
            win = self._windows.get(key)
            if win is None and len(self._windows) >= self._max_keys:
                key = (reason, OTHER_UIDS)
                win = self._windows.get(key)
            if win is not None:
                win.count += count
                win.pid, win.gid = peer.pid, peer.gid
                return
            self._windows[key] = _Window(now, count - 1, peer.pid, peer.gid)
        self._report(Report(reason, key[1], peer.pid, peer.gid, 1, 0.0))

    def flush(self, force: bool = False) -> None:
        """Report the sums whose interval is over (all of them if ``force``); forget quiet keys."""
        now = self._clock()
        due: list[Report] = []
        with self._lock:
            for key, win in list(self._windows.items()):
                if not force and now - win.since < self._interval:
                    continue
                if win.count:
                    due.append(Report(key[0], key[1], win.pid, win.gid, win.count, now - win.since))
                    win.since, win.count = now, 0
                else:
                    del self._windows[key]
        for report in due:
            self._report(report)

    def pending(self) -> int:
        """Refusals counted but not yet reported."""
        with self._lock:
            return sum(w.count for w in self._windows.values())

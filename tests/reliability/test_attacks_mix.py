"""Every attack at once, briefly, while a real client calls.

The short CI version of ``python -m tests.reliability.attack_mix`` (``make attack-run`` is the
10-minute one): the same drivers, real client and verdict, which attack_mix explains.
Connection counts are halved (``SCALE``) and ``server.max_connection_age`` is 10 s, so the real
client's connection is recycled ~4 times under attack within the run.
"""

from __future__ import annotations

import json
import os
import sys

from tests.reliability import attack_mix
from tests.support import attacks, figures, ledger

SECONDS = 45.0
AGE = 10.0
SETTLE = 40.0
SCALE = 0.5


def test_every_attack_at_once_leaves_the_real_client_unharmed() -> None:
    assert os.geteuid() == 0, "the refused-peer flood runs as uid 65534: run the reliability suite as root"
    with attacks.traversable() as top:  # what the plugin wrote is scanned at the end of the session
        report = attack_mix.run(top / "g", SECONDS, age=AGE, settle=SETTLE, scale=SCALE, on_secret=ledger.secret,
                                log=lambda line: print(line, file=sys.stderr))
    rc = report["real_client"]
    figures.put("attack mix", f"{SECONDS:g} s, every attack at once",
                f"real client {rc['calls']} calls, {rc['failed']} failed, {len(rc['over_1s'])} over 1 s; RSS {report['rss_mib']['baseline']}"
                f" -> peak {report['rss_mib']['peak']} MiB; fds {report['fds']['baseline']}/"
                f"{report['fds']['peak']}/{report['fds']['after']}, threads {report['threads']['baseline']}/"
                f"{report['threads']['peak']}/{report['threads']['after']} (baseline/peak/after); load average "
                f"{report['load_before'][0]:.1f} -> {report['load_after'][0]:.1f}")
    assert report["attack_volumes"], "the attacks did not run"
    assert report["failed"] == [], json.dumps(report, indent=1, default=str)[:6000]

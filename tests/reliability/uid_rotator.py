"""Child of the crash-safety test: the real Akeyless backend, built as ``serve`` builds it, rotating
its UID token every 50 ms (the setting's floor is 10 s, so it is set on the parsed config).
Prints READY once up, then wraps and unwraps until killed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from kms_appliance import config
from kms_appliance.backends import akeyless
from kms_appliance.metrics import Metrics


def main() -> int:
    cfg = config.load(env=dict(os.environ), config_file=None)
    cfg = dataclasses.replace(cfg, akeyless=dataclasses.replace(cfg.akeyless, uid_rotate_interval=0.05))
    backend = akeyless.create(cfg, Metrics())
    print("READY", flush=True)
    while True:
        seed = os.urandom(32)
        w = backend.wrap(seed)
        assert backend.unwrap(w.ciphertext, w.key_id, w.annotations).plaintext == seed
        time.sleep(0.005)


if __name__ == "__main__":
    sys.exit(main())

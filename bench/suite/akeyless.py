"""The Akeyless backend against the emulator (a loopback HTTPS process, tests/support/emulator.py).

The emulator's control plane adds latency to its encrypt/decrypt endpoints,
so the plugin can be measured as if Akeyless were 0 or 20 ms away. A scenario
that cannot have the emulator or the plugin on it reports "not available".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.emulator import EmulatorProcess
from tests.support.emulator import start_emulator as start_process

from . import servers
from .servers import Server

KEY = "bench-kek"


class Unavailable(Exception):
    """The emulator, or the plugin on it, did not start (the message says which)."""


class Emulator(EmulatorProcess):
    """The emulator process with the two conditions the scenarios set."""

    def latency(self, seconds: float) -> None:
        """Every encrypt/decrypt/describe-item call waits ``seconds`` before answering.

        describe-item too: a direct-mode encrypt is followed by one (the
        version check), so "Akeyless N ms away" must delay it as well.
        """
        self.control("clear-faults")
        if seconds > 0:
            for endpoint in ("encrypt", "decrypt", "describe-item"):
                self.control("fault", {"endpoint": endpoint, "kind": "latency", "delay": seconds})

    def outage(self) -> None:
        """Every endpoint answers 503, as an unreachable Akeyless behind a gateway would."""
        self.control("clear-faults")
        self.control("fault", {"endpoint": "*", "kind": "status", "status": 503})


def start_emulator() -> Emulator:
    try:
        return start_process(servers.new_home("emulator"), key=KEY, kind=Emulator)
    except (RuntimeError, TimeoutError):
        raise Unavailable("the emulator did not start") from None


@contextmanager
def plugin_on_emulator(name: str, settings: dict[str, str] | None = None
                       ) -> Iterator[tuple[Emulator, Server]]:
    """The appliance with ``--backend akeyless`` on a new emulator (access-key auth), both
    stopped at the end; ``settings``: extra KMS_APPLIANCE_* environment (e.g. the mode)."""
    emu = start_emulator()
    try:
        srv = servers.start_plugin(name, emulator=emu, env=settings)
    except RuntimeError as exc:
        emu.stop()
        raise Unavailable(f"the plugin did not start ({str(exc).splitlines()[0]})") from None
    try:
        yield emu, srv
    finally:
        srv.stop()
        emu.stop()

"""What each mode measures and for how long (all runs bounded in time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .build import BENCH, WORK
from .load import Shape, Window
from .matrix import Config


@dataclass(frozen=True)
class Plan:
    configs: tuple[Config, ...]
    window: Window
    reps: int
    out: Path
    dek_counts: tuple[int, ...] = ()
    restart_deks: int = 5000
    scenario_window: Window = field(default_factory=lambda: Window(1.0, 5.0))
    startup_runs: int = 3
    ablation: bool = False
    akeyless_dek_max: int = 10_000
    akeyless_inflight: tuple[int, ...] = (1, 16)
    paired_reps: int = 10
    paired_window: Window = field(default_factory=lambda: Window(0.5, 1.5))


def _cfgs(spec: dict[str, tuple[Shape, ...]]) -> tuple[Config, ...]:
    return tuple(Config(m, s) for m, shapes in spec.items() for s in shapes)


ONE, SIXTEEN, SIXTY_FOUR, MULTI = Shape(1), Shape(16), Shape(64), Shape(16, procs=4)

CORE = _cfgs({m: (ONE, SIXTEEN) for m in ("status", "v2enc", "v2dec", "v1enc")})

PLANS = {
    "core": Plan(CORE, Window(1.5, 5.0), 2, WORK / "results-core"),
    "quick": Plan(_cfgs({"status": (ONE, SIXTEEN), "v2enc": (ONE, SIXTEEN)}),
                  Window(0.5, 2.0), 1, WORK / "results-quick", dek_counts=(1, 100, 1000),
                  restart_deks=100, scenario_window=Window(0.5, 2.0), startup_runs=1,
                  akeyless_dek_max=100, akeyless_inflight=(1,), paired_reps=2,
                  paired_window=Window(0.3, 1.0)),
    "full": Plan(_cfgs({"status": (ONE, SIXTEEN), "v2enc": (ONE, SIXTEEN, SIXTY_FOUR, MULTI),
                        "v2dec": (ONE, SIXTEEN, SIXTY_FOUR), "v1enc": (ONE, SIXTEEN),
                        "v1dec": (ONE, SIXTEEN)}),
                 Window(1.0, 4.0), 2, BENCH / "results",
                 dek_counts=(1, 100, 1000, 10_000, 100_000), restart_deks=5000,
                 scenario_window=Window(1.0, 5.0), ablation=True),
}

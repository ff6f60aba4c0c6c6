"""The benchmark's paired statistics and the verdicts drawn from them."""

from __future__ import annotations

from typing import Any

from bench.suite import paired, targets


def _run(calls: float, p50: float) -> dict[str, Any]:
    return {"calls_per_s": calls, "p50_us": p50, "errors": 0}


def test_ratios_are_taken_within_each_pair() -> None:
    # The machine halves its speed between pairs; within a pair the plugin is always 0.95x.
    pairs = [(_run(950 * k, 100 / k), _run(1000 * k, 100 / k)) for k in (1, 2, 1, 2, 1, 2)]
    row = paired._row("v2enc", paired.Shape(16), pairs)
    assert row["throughput_ratio"] == 0.95
    assert row["throughput_ci90"] == [0.95, 0.95]
    assert row["p50_ratio"] == 1.0
    assert row["pairs"] == 6


def test_interval_widens_with_noise_and_brackets_the_median() -> None:
    steady = paired.ci90([0.95, 0.96, 0.94, 0.95, 0.95, 0.96, 0.94, 0.95])
    noisy = paired.ci90([0.7, 1.2, 0.8, 1.1, 0.95, 0.6, 1.3, 0.9])
    assert steady[0] <= 0.95 <= steady[1]
    assert noisy[1] - noisy[0] > 4 * (steady[1] - steady[0])
    assert paired.ci90([0.7, 1.2, 0.8, 1.1]) == paired.ci90([0.7, 1.2, 0.8, 1.1])  # seeded


def test_issue_2_verdicts_come_from_the_paired_runs() -> None:
    """p50 from the back-to-back pairs at 1 in flight, throughput from the co-runs at 16."""
    rows = [{"method": m, "shape": shape, "pairs": 10, "throughput_ratio": 1.0,
             "throughput_ci90": [0.7, 1.3], "corun_throughput_ratio": tput,
             "corun_ci90": [tput - 0.01, tput + 0.01], "p50_ratio": p50,
             "p50_ci90": [p50 - 0.05, p50 + 0.05]}
            for m in ("status", "v2enc", "v2dec", "v1enc", "v1dec")
            for shape, tput, p50 in (("1", 1.0, 1.2 if m == "v1enc" else 1.0),
                                     ("16", 0.85 if m == "v2dec" else 0.95, 1.0))]
    got = {t["target"]: t["met"] for t in targets.core_targets({"paired": {"rows": rows}})}
    assert len(got) == 10
    assert got["plugin v2dec calls/s (16 in flight) vs bare"] is False
    assert got["plugin v1enc p50 (1 in flight) vs bare"] is False
    assert sum(got.values()) == 8

"""Percentiles and the printed table every benchmark shares."""

from __future__ import annotations

import statistics

UNLIMITED = {"SANDLOT_RATE_LIMIT_PER_SECOND": "0"}
"""Benchmarks measure the platform, not the per-key request limiter."""


def crowd_env(sandboxes: int) -> dict[str, str]:
    """A cold server (no warm pool) that lets one organisation hold `sandboxes`, more
    than its default quota, on an overcommitted host."""
    return {
        **UNLIMITED,
        "SANDLOT_WARM_POOL_SIZE": "0",
        "SANDLOT_ORG_MAX_SANDBOXES": str(sandboxes),
        "SANDLOT_ORG_MAX_VCPUS": str(sandboxes),
        "SANDLOT_MEMORY_OVERCOMMIT": "8",
    }


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), percentile(samples, 99)


def print_row(
    name: str,
    ours: list[float],
    baseline: list[float],
    baseline_name: str,
    tail: int | None = 99,
) -> None:
    """`tail` None leaves the tail percentile out, for runs too few to have one."""

    def column(samples: list[float], width: int) -> str:
        text = f"p50 {statistics.median(samples):{width}.2f} ms"
        if tail is None:
            return text
        return f"{text}  p{tail} {percentile(samples, tail):{width}.2f} ms"

    ratio = statistics.median(ours) / statistics.median(baseline)
    print(
        f"{name:<34} {column(ours, 8)} | {baseline_name:<26} {column(baseline, 7)}"
        f" | ratio p50 {ratio:5.2f}x"
    )


def print_throughput(
    name: str, nbytes: int, ours_ms: float, base_ms: float, base_name: str
) -> None:
    ours, base = nbytes / ours_ms / 1000, nbytes / base_ms / 1000
    print(
        f"{name:<34} {ours:8.1f} MB/s | {base_name:<26} {base:8.1f} MB/s"
        f" | ratio {base / ours:5.2f}x slower"
    )

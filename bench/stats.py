"""Percentiles and the printed table every benchmark shares."""

from __future__ import annotations

import statistics

UNLIMITED = {"SANDLOT_RATE_LIMIT_PER_SECOND": "0"}
"""Benchmarks measure the platform, not the per-key request limiter."""


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), percentile(samples, 99)


def print_row(name: str, ours: list[float], baseline: list[float], baseline_name: str) -> None:
    p50, p99 = summary(ours)
    b50, b99 = summary(baseline)
    print(
        f"{name:<34} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms | {baseline_name:<26} "
        f"p50 {b50:7.2f} ms  p99 {b99:7.2f} ms | ratio p50 {p50 / b50:5.2f}x"
    )


def print_throughput(
    name: str, nbytes: int, ours_ms: float, base_ms: float, base_name: str
) -> None:
    ours, base = nbytes / ours_ms / 1000, nbytes / base_ms / 1000
    print(
        f"{name:<34} {ours:8.1f} MB/s | {base_name:<26} {base:8.1f} MB/s"
        f" | ratio {base / ours:5.2f}x slower"
    )

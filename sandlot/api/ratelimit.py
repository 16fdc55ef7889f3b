"""Per-key request rate limits: a token bucket for each API key, in memory.

Buckets refill continuously at `rate` tokens a second up to `burst`. A request finding
its bucket empty is refused with RATE_LIMITED and told, in Retry-After, when a token
will be there. One server process holds the buckets; behind several API servers each
enforces its own share, which is the usual trade for not touching the store per request.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sandlot.errors import RateLimitedError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.burst > 0

    def check(self, key_id: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        bucket = self._buckets.setdefault(key_id, _Bucket(float(self.burst), now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        wait = (1 - bucket.tokens) / self.rate
        raise RateLimitedError(
            f"this API key is limited to {self.rate:g} requests a second (bursts of "
            f"{self.burst}); retry in {wait:.2f} s",
            details={"retryAfter": max(1, math.ceil(wait)), "retryAfterSeconds": round(wait, 3)},
        )

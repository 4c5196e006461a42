"""Rate limits: a token bucket per key (a credential's digest, a client address), kept in this process.

Each key may make `burst` requests at once and `rate` per second after that; a refused request learns how
many seconds to wait (`Retry-After`). The buckets live in memory, bounded: past `max_keys` the least
recently seen keys are forgotten (a forgotten key starts again with a full bucket). Several server
processes each limit on their own, so the limit a client meets is per process; behind a load balancer
that spreads requests, divide the figures by the number of processes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class RateLimiter:
    """Token buckets by key. `rate` <= 0 turns the limiter off (every request allowed)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate)
        self.burst = max(float(burst), 1.0)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[Any, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def hit(self, key: Any) -> float:
        """Take one request from the key's bucket: 0.0 when allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            # the clock is read under the lock: read before it, a thread that waited for the lock would
            # refill the bucket by a negative time (a 429 for nothing at high rates)
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = [self.burst, now]
                self._buckets[key] = bucket
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                tokens = bucket[0] + max(0.0, now - bucket[1]) * self.rate
                bucket[0] = tokens if tokens < self.burst else self.burst
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / self.rate

    def blocked(self, key: Any) -> float:
        """The seconds to wait before the key may spend again (0.0: it may), without spending."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def keys(self) -> int:
        """How many keys have a bucket now."""
        return len(self._buckets)


class RateLimited(Exception):
    """Over a rate limit: answered 429 with Retry-After."""

    def __init__(self, wait: float, detail: str = "too many requests; slow down") -> None:
        super().__init__(detail)
        self.wait = wait
        self.detail = detail


def retry_after(wait: float) -> str:
    """The Retry-After header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))

"""Timing for the benchmark scripts (never for assertions in tests)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time in seconds of ``repeats`` calls of ``fn``, after one warm-up call."""
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

"""Timing for the benchmark scripts (never for assertions in tests)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from cuneidet.utils.io import write_json


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


def report_figures(figures: Mapping[str, Any], json_path: str | None = None) -> None:
    """Print a benchmark's figures one per line and, with ``json_path``, write them as JSON."""
    width = max((len(key) for key in figures), default=0) + 2
    for key, value in figures.items():
        print(f"{key:<{width}}{value}")
    if json_path:
        write_json(json_path, dict(figures))

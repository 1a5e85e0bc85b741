"""Timing helpers shared by the benchmark scripts (run as ``python scripts/NAME.py``, which puts this folder on the path)."""

from __future__ import annotations

import statistics
import time


def median_ms(fn, repeats: int = 15) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 3)

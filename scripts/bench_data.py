"""Time loading the tutorial's data: the stdlib JSON parse, a cold load (parse + cache build), a warm load.

    python scripts/bench_data.py [--data ../shared/data/mnist.json.gz] [--warm-repeats 5]

Prints one JSON object.  The cold and warm loads use a fresh temporary cache dir.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared/data/mnist.json.gz",
        help="the tutorial's mnist.json.gz (default: ../shared/data/mnist.json.gz)",
    )
    parser.add_argument(
        "--warm-repeats", type=int, default=5, help="warm loads to time; the median is reported (default: 5)"
    )
    parser.add_argument("--skip-stdlib", action="store_true", help="skip the slow stdlib json.load baseline")
    args = parser.parse_args()

    os.environ["PADDLE_MNIST_CACHE"] = tempfile.mkdtemp(prefix="bench-data-cache-")
    from paddle_mnist.data import splits

    report = {"file": str(args.data), "python": platform.python_version(), "cpus": os.cpu_count()}
    if not args.skip_stdlib:
        report["cold_stdlib_json_s"] = round(timed(lambda: json.load(gzip.open(args.data)))[0], 3)
    cold, data = timed(lambda: splits.load(args.data))
    report["cold_cache_build_s"] = round(cold, 3)
    warm = []
    for _ in range(args.warm_repeats):
        warm.append(timed(lambda: splits.load(args.data))[0])
    report["warm_s"] = round(statistics.median(warm), 4)
    report["images"] = sum(len(s.class_ids) for s in data.splits.values())
    print(json.dumps(report))


if __name__ == "__main__":
    main()

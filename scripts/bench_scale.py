"""Data-parallel scaling on this machine: training images/s with 1 process and with N, through Paddle's launcher.

    python scripts/bench_scale.py [--data ../shared/data/mnist.json.gz] [--nproc 2] [--images 10000]

Each configuration trains the tutorial network for one epoch on the first
--images training images (global batch 100) and reads images/s from the
run's history.csv.  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import tempfile
from pathlib import Path


def images_per_s(nproc: int, data: str, images: int, model: str, work: Path) -> float:
    from paddle_mnist import parallel

    out = work / f"nproc{nproc}"
    train = [
        str(parallel.console_script()),
        "train",
        "--data",
        data,
        "--limit-train",
        str(images),
        "--epochs",
        "1",
        "--model",
        model,
        "--out",
        str(out),
    ]
    if nproc > 1:
        train = [*parallel.launcher(nproc, work / f"logs{nproc}"), *train]
    subprocess.run(train, check=True, capture_output=True)
    with open(out / "history.csv") as f:
        return float(next(csv.DictReader(f))["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[2] / "shared/data/mnist.json.gz"),
        help="the data file (default: ../shared/data/mnist.json.gz)",
    )
    parser.add_argument(
        "--nproc", type=int, nargs="+", default=[2], help="process counts to compare with 1 (default: 2)"
    )
    parser.add_argument("--images", type=int, default=10_000, help="training images per run (default: 10000)")
    parser.add_argument("--model", default="cnn", help="network (default: cnn, the tutorial's)")
    args = parser.parse_args()
    report = {"cpus": os.cpu_count(), "images": args.images, "model": args.model, "images_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in [1, *args.nproc]:
            report["images_per_s"][str(nproc)] = round(
                images_per_s(nproc, args.data, args.images, args.model, Path(tmp))
            )
    base = report["images_per_s"]["1"]
    report["speedup"] = {n: round(v / base, 2) for n, v in report["images_per_s"].items()}
    print(json.dumps(report))


if __name__ == "__main__":
    main()

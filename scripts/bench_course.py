"""Paddle's MNIST course, question by question: each one ``paddle-mnist compare``, and the tables of docs/course.md.

    python scripts/bench_course.py --data ../shared/data/mnist.json.gz --out course [--only code optimizers ...]

Every question is a comparison over seeds 0-2 written to OUT/QUESTION/; a finished run is reused, so a
second call only prints.  ``code`` is the table of the course code's README (awesome-DeepLearning
``junior_class/chapter-2-step_to_deep_learning/code``, SGD, batch 32, 10 epochs): each of its rows
trained with the course code's loss (``softmax_twice``: its networks end in a softmax that
``F.cross_entropy`` applies again) and with plain cross-entropy.  The course's trainer prints the
validation accuracy after each epoch, so the table gives the last epoch's validation accuracy beside
this package's figure (eval accuracy of the best-validation epoch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SEEDS = ("--seeds", "0", "1", "2")


@dataclass(frozen=True)
class CodeRow:
    """A row of the course code's table and the flags that train it here."""

    network: str
    activation: str
    l2: bool
    lr: str
    published: float  # the course's accuracy, %
    flags: tuple[str, ...]


FEED_FORWARD = ("--optimizer", "sgd", "--batch-size", "32", "--epochs", "10")
CODE_ROWS = {
    f"code{i}": row
    for i, row in enumerate(
        [
            CodeRow("single-layer", "sigmoid", False, "0.1", 85.03, ("--model", "mlp1", "--activation", "sigmoid")),
            CodeRow("single-layer", "sigmoid", False, "1", 95.87, ("--model", "mlp1", "--activation", "sigmoid")),
            CodeRow("single-layer", "relu", False, "0.1", 96.18, ("--model", "mlp1", "--activation", "relu")),
            CodeRow(
                "multi-layer",
                "relu",
                False,
                "0.1",
                97.10,
                (
                    "--model",
                    "mlp",
                ),
            ),
            CodeRow("multi-layer", "relu", True, "0.1", 97.18, ("--model", "mlp", "--weight-decay", "5e-4")),
        ],
        1,
    )
}
# The chapters' own questions, each trained as the course's chapter trains it: 10 epochs (the recipe's
# default), the minimal version at the course's lr 0.001, the four optimizers 3 epochs, L2 with Adam at 0.01
# for 5 epochs; momentum is the course's plain Momentum 0.9, nesterov its look-ahead variant.
QUESTIONS = {
    "minimal": ("--model", "linear", "--lr", "0.001", "--vary", "loss", "mse", "cross_entropy"),
    "network": ("--loss", "mse", "--vary", "model", "course_mlp", "cnn"),
    "optimizers-lr": ("--vary", "lr", "0.01", "0.001", "0.0001"),
    "optimizers": ("--epochs", "3", "--vary", "optimizer", "sgd", "momentum", "nesterov", "adagrad", "adam"),
    "l2": ("--optimizer", "adam", "--lr", "0.01", "--epochs", "5", "--vary", "weight-decay", "0", "1e-5"),
}


def code_flags(row: CodeRow) -> tuple[str, ...]:
    return (*row.flags, *FEED_FORWARD, "--lr", row.lr, "--vary", "loss", "softmax_twice", "cross_entropy")


def run(flags: tuple[str, ...], data: str, out: Path) -> dict:
    """One comparison (reusing finished runs): its results.json, with the wall time of this call."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "paddle_mnist.compare", "--data", data, *flags, *SEEDS, "--out", str(out)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text()) | {"wall": time.perf_counter() - start}


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def code_table(results: dict[str, dict]) -> str:
    lines = [
        "| network | activation | L2 | lr | course | `softmax_twice`: eval | `softmax_twice`: valid, epoch 10 "
        "| `cross_entropy`: eval |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in CODE_ROWS.items():
        runs = results[name]["runs"]
        cells = {
            loss: (
                [100 * r["final_eval_acc"] for r in runs if r["value"] == loss],
                [100 * r["valid_acc"][-1] for r in runs if r["value"] == loss],
            )
            for loss in ("softmax_twice", "cross_entropy")
        }
        lines.append(
            f"| {row.network} | {row.activation} | {'yes' if row.l2 else 'no'} | {row.lr} | {row.published:.2f} % "
            f"| {mean_std(cells['softmax_twice'][0])} | {mean_std(cells['softmax_twice'][1])} "
            f"| {mean_std(cells['cross_entropy'][0])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the tutorial's mnist.json.gz")
    parser.add_argument("--out", type=Path, default=Path("course"), help="where the comparisons go (default: course)")
    parser.add_argument(
        "--only", nargs="+", choices=("code", *QUESTIONS), help="these questions only (default: every one)"
    )
    args = parser.parse_args()
    wanted = args.only or ("code", *QUESTIONS)
    if "code" in wanted:
        results = {name: run(code_flags(row), args.data, args.out / name) for name, row in CODE_ROWS.items()}
        print("## code\n\n" + code_table(results) + "\n")
        for name, row in CODE_ROWS.items():
            print(f"{name}: paddle-mnist compare {' '.join(code_flags(row))}  ({results[name]['wall']:.0f} s)")
    for name in (q for q in QUESTIONS if q in wanted):
        result = run(QUESTIONS[name], args.data, args.out / name)
        summary = (args.out / name / "summary.md").read_text()
        print(f"\n## {name} (paddle-mnist compare {' '.join(QUESTIONS[name])}; {result['wall']:.0f} s)\n\n{summary}")


if __name__ == "__main__":
    main()

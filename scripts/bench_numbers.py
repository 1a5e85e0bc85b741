"""How well ``predict`` reads whole numbers: photos of 2 to 6 MNIST digits written side by side.

    python scripts/bench_numbers.py --model-dir runs/fast [--model-dir runs/best ...] [--n 100] [--seed 1]

The digits come from the first 5,000 eval digits only.  Each set holds ``--n`` numbers of one kind of
gap (``testing.numbers.GAPS``: touching, narrow, ordinary, wide) as ink-on-paper PNGs or noisy JPEGs,
with slightly different digit sizes, a drifting baseline and a few degrees of rotation.  The generator
itself is varied (``VARIETIES``: its sizes, drift and rotation), so that a figure is not an artefact of
one generator; the tables give each variety and the spread.  Then numbers drawn on the page's wide pad
(``testing.drawn_digits.number``: the drawn digits' templates, tilts and tremor), read as the picture
the page drew and as the strokes it sends.  Prints a Markdown table per model: the share of numbers
read exactly and of digits read right (by edit distance), per set, and per row "within reach": the share
of its numbers (over the row's varieties) whose every digit the model reads right when given the digit as
its own 28x28 array, the most that a perfect reading of the photos could read with this model.

The constants of ``reading`` and ``segment`` were chosen on other seeds (100 and up) of these sets;
the default ``--seed 1`` is the one the docs report.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_mnist import strokes
from paddle_mnist.data import splits
from paddle_mnist.predict import Predictor
from paddle_mnist.testing import drawn_digits
from paddle_mnist.testing.numbers import GAPS, Variety, number_photo

FIRST_EVAL = 5_000
VARIETIES = {
    "base": Variety(),
    "small, tilted": Variety(height=(28, 60), rotation=5.0, drift=0.08),
    "large, steady": Variety(height=(120, 220), sizes=0.05, drift=0.02, rotation=1.0),
}


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


@dataclass(frozen=True)
class Number:
    """One picture of a number to read: the picture (photo bytes, or a ``strokes.Drawing``), the number it
    shows, and which of the first eval digits it is written with (none for a drawing)."""

    item: object
    text: str
    digits: tuple[int, ...] = ()


def number_set(pixels, labels, gap: str, style: str, variety: Variety, n: int, seed: int) -> list[Number]:
    """``n`` photos of numbers of 2 to 6 digits."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        picks = rng.integers(0, len(pixels), int(rng.integers(2, 7)))
        text = "".join(str(int(labels[i])) for i in picks)
        photo = number_photo([pixels[i] for i in picks], gap, rng, style, variety)
        out.append(Number(photo, text, tuple(int(i) for i in picks)))
    return out


def drawn_set(n: int, seed: int) -> tuple[list[Number], list[Number]]:
    """``n`` numbers of 2 to 6 digits drawn on the wide pad: as the pad's pictures, and as their strokes."""
    rng = np.random.default_rng(seed)
    pictures, drawings = [], []
    for _ in range(n):
        labels = [int(k) for k in rng.integers(0, 10, int(rng.integers(2, 7)))]
        text, drawn = "".join(map(str, labels)), drawn_digits.number(labels, rng)
        pictures.append(Number(drawn_digits.as_png(drawn, drawn_digits.WIDE_PAD), text))
        drawings.append(Number(strokes.Drawing(tuple(drawn), *drawn_digits.WIDE_PAD), text))
    return pictures, drawings


def score(predictor: Predictor, numbers: list[Number]) -> tuple[float, float]:
    """(the share of ``numbers`` read exactly, the share of their digits read right by edit distance)."""
    items = [n.item if isinstance(n.item, strokes.Drawing) else Image.open(io.BytesIO(n.item)) for n in numbers]
    read = [r.text or "" for r in predictor.predict(items)]
    exact = np.mean([got == n.text for got, n in zip(read, numbers)])
    digits = sum(max(0, len(n.text) - edit_distance(got, n.text)) for got, n in zip(read, numbers))
    return float(exact), digits / sum(len(n.text) for n in numbers)


def arrays_read(predictor: Predictor, pixels: np.ndarray) -> np.ndarray:
    """The digit the model reads in each of ``pixels`` (uint8 [N,28,28]) given as its own array, as its eval
    accuracy counts (the closest digit, none refused)."""
    inputs = predictor.encoding.to_floats(pixels)[:, None].astype(np.float32)
    return np.concatenate(
        [predictor.loss.digits(predictor.forward(inputs[k : k + 256])) for k in range(0, len(inputs), 256)]
    )


def within_reach(numbers: list[Number], right: np.ndarray) -> float:
    """The share of ``numbers`` whose every digit the model reads ``right`` as its array: the most any
    reading of the photos could read, the model being what it is."""
    return float(np.mean([right[list(n.digits)].all() for n in numbers]))


def eval_pngs(model_dir: Path, eval_split, n: int, reject: bool = True) -> str:
    """The first ``n`` eval digits saved as 28x28 PNGs (the stored pixels) and read by ``paddle-mnist predict``
    (the command, every digit it finds; ``reject`` False: with ``--no-reject``, the closest digit of each, as
    the model's accuracy counts), against the model's own reading of the arrays."""
    import json
    import subprocess
    import sys
    import tempfile

    predictor = Predictor.from_dir(model_dir)
    pixels, labels = eval_split.pixels[:n], eval_split.class_ids[:n]
    own = arrays_read(predictor, pixels)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, digit in enumerate(pixels):
            paths.append(Path(tmp) / f"{i:05d}.png")
            Image.fromarray(digit).save(paths[-1])
        command = [
            sys.executable,
            "-m",
            "paddle_mnist.predict",
            *map(str, paths),
            "--model-dir",
            str(model_dir),
            "--json",
            *([] if reject else ["--no-reject"]),
        ]
        rows = [
            json.loads(line) for line in subprocess.run(command, capture_output=True, text=True).stdout.splitlines()
        ]
    read = np.array([row.get("text", "") == str(label) for row, label in zip(rows, labels)])
    return f"{n:,} eval digits as 28x28 PNGs through predict: {read.mean():.2%}; the model on the arrays: {(own == labels).mean():.2%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, action="append", required=True, help="a trained run (repeatable)")
    parser.add_argument("--data", default=None, help="the MNIST data (default: the package's search)")
    parser.add_argument("--n", type=int, default=100, help="numbers per set (default: 100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generator (default: 1)")
    parser.add_argument(
        "--eval-pngs", type=int, default=0, help="also read this many eval digits saved as PNGs (default: 0)"
    )
    parser.add_argument(
        "--no-reject",
        action="store_true",
        help="read the closest digit of every mark, as predict --no-reject, in the numbers and the eval PNGs "
        "(default: a mark the model's calibration refuses reads '?', a miss)",
    )
    args = parser.parse_args()
    eval_split = splits.load(args.data).splits["eval"]
    for model_dir in args.model_dir if args.eval_pngs else []:
        print(f"{model_dir}: {eval_pngs(model_dir, eval_split, args.eval_pngs, not args.no_reject)}", flush=True)
    pixels, labels = eval_split.pixels[:FIRST_EVAL], eval_split.class_ids[:FIRST_EVAL]
    sets = {
        (variety, gap, style): number_set(pixels, labels, gap, style, VARIETIES[variety], args.n, args.seed + k)
        for k, (variety, gap, style) in enumerate((v, g, s) for v in VARIETIES for g in GAPS for s in ("paper", "jpeg"))
    }
    drawn_pictures, drawn_strokes = drawn_set(args.n, args.seed)
    for model_dir in args.model_dir:
        predictor = Predictor.from_dir(model_dir)
        predictor = predictor.without_rejection() if args.no_reject else predictor
        right = arrays_read(predictor, pixels) == labels
        print(f"\n{model_dir} ({predictor.summary.model}, {predictor.summary.engine}), {args.n} numbers a set\n")
        print(
            "| gap | style | "
            + " | ".join(f"{v}: numbers / digits" for v in VARIETIES)
            + " | spread of numbers | within reach |"
        )
        print("| --- | --- |" + " --- |" * (len(VARIETIES) + 2))
        for gap in GAPS:
            for style in ("paper", "jpeg"):
                figures = [score(predictor, sets[(v, gap, style)]) for v in VARIETIES]
                cells = " | ".join(f"{e:.1%} / {d:.1%}" for e, d in figures)
                exact = [e for e, _ in figures]
                reach = np.mean([within_reach(sets[(v, gap, style)], right) for v in VARIETIES])
                print(f"| {gap} | {style} | {cells} | {min(exact):.1%}-{max(exact):.1%} | {reach:.1%} |", flush=True)
        for name, numbers in (("pictures", drawn_pictures), ("strokes", drawn_strokes)):
            exact, digits = score(predictor, numbers)
            print(f"\ndrawn on the wide pad, as {name}: {exact:.1%} of numbers, {digits:.1%} of digits", flush=True)


if __name__ == "__main__":
    main()

"""Accuracy on digits drawn on the page's pad, sent as the PNG the page drew or as its strokes.

    python scripts/bench_drawn.py --model-dir runs/quick runs/fast [--n 600] [--pens 0.08 0.1 0.12]

The drawings are ``tests/drawn_digits.py``'s: each digit in the ways people write it, from small in
a corner to filling the pad, tilted, squashed, with the pad's 20 px pen.  ``raster`` is the server's
path for an image (``preprocess.mnist_like`` of the PNG), ``strokes`` its path for a drawing sent as
strokes (``strokes.render``), at each pen width of ``--pens`` (a fraction of the 20 px box).  Prints
one JSON object: accuracy and misread count per model and path, and the misread drawings' labels
and styles.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from paddle_mnist.testing import drawn_digits


def main() -> None:
    from paddle_mnist import preprocess, strokes
    from paddle_mnist.predict import Predictor

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, nargs="+", required=True, help="trained runs to score")
    parser.add_argument("--n", type=int, default=600, help="drawings (default: 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawings (default: 0)")
    parser.add_argument("--pens", type=float, nargs="+", default=[strokes.PEN], help="pen widths to try")
    args = parser.parse_args()
    items = drawn_digits.benchmark(args.n, args.seed)
    labels = np.array([label for label, _, _ in items])
    inputs = {"raster": [preprocess.mnist_like(preprocess.open_image_bytes(drawn_digits.as_png(s))) for *_, s in items]}
    for pen in args.pens:
        drawings = [strokes.parse(drawn_digits.as_json(s)) for *_, s in items]
        inputs[f"strokes pen {pen:g}"] = [strokes.render(d, pen) for d in drawings]
    report = {"drawings": len(items), "models": {}}
    for model_dir in args.model_dir:
        predictor = Predictor.from_dir(model_dir)
        scores = {}
        for path, pixels in inputs.items():
            batch = np.stack([predictor.encoding.to_floats(p)[None] for p in pixels]).astype(np.float32)
            read = predictor.loss.digits(predictor.forward(batch))
            wrong = np.flatnonzero(read != labels)
            scores[path] = {
                "accuracy": round(float((read == labels).mean()), 4),
                "misread": len(wrong),
                "errors": [f"{items[i][0]} ({items[i][1]}) -> {int(read[i])}" for i in wrong],
            }
        report["models"][str(model_dir)] = scores
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

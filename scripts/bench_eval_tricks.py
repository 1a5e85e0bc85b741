"""What evaluation-time changes give trained models on the eval split: precise BatchNorm and shifted views.

    python scripts/bench_eval_tricks.py --data ../shared/data/mnist.json.gz RUN_DIR [RUN_DIR ...]

For each run's kept weights, eval accuracy (%):
- ``plain``: as trained, what ``paddle-mnist train`` reports;
- ``precise_bn``: the BatchNorm statistics recomputed on the first ``--bn-images`` un-augmented
  training images (Wu & Johnson 2021, "precise BN"): training keeps a running mean over the last
  few augmented batches, which need not be the statistics of clean digits under the final weights;
- ``shift5`` / ``shift9``: test-time augmentation, the mean softmax over the image and its copies
  shifted by one pixel in 4 or 8 directions (one model, 5 or 9 forward passes per image).
Prints one JSON object per run.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

import paddle_mnist  # noqa: F401  # isort: skip  (before paddle: MKL's CPU type and the warning filters)
import paddle  # isort: skip

from paddle_mnist import losses, models, rundir, train
from paddle_mnist.data import load_datasets

SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]


@paddle.no_grad()
def precise_batchnorm(model: paddle.nn.Layer, images: np.ndarray, batch: int = 500) -> None:
    """Replace every BatchNorm layer's running statistics by their mean over batches of ``images``."""
    layers = [layer for layer in model.sublayers() if isinstance(layer, (paddle.nn.BatchNorm1D, paddle.nn.BatchNorm2D))]
    sums = {id(layer): [0.0, 0.0] for layer in layers}
    for layer in layers:
        layer._momentum = 0.0     # each forward leaves exactly this batch's statistics
    model.train()
    batches = range(0, len(images), batch)
    for first in batches:
        model(paddle.to_tensor(images[first:first + batch]))
        for layer in layers:
            sums[id(layer)][0] += layer._mean.numpy()
            sums[id(layer)][1] += layer._variance.numpy()
    for layer in layers:
        mean, variance = sums[id(layer)]
        layer._mean.set_value(mean / len(batches))
        layer._variance.set_value(variance / len(batches))
        layer._momentum = 0.9
    model.eval()


def shifted(images: np.ndarray, dy: int, dx: int, background: float) -> np.ndarray:
    """``images`` [N,1,28,28] moved by (dy, dx) pixels, the uncovered border blank."""
    out = np.full_like(images, background)
    h, w = images.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories of paddle-mnist train (cross_entropy models)")
    parser.add_argument("--data", help="data file or IDX directory (default: the README's search)")
    parser.add_argument("--bn-images", type=int, default=10_000,
                        help="un-augmented training images for precise BN (default: 10000)")
    args = parser.parse_args()
    _, splits = load_datasets(args.data, train_on_valid=True)
    evaluation, clean = splits["eval"], splits["train"].images[:args.bn_images]
    background = evaluation.encoding.background
    loss = losses.LOSSES["cross_entropy"]
    for run in args.runs:
        info, state = rundir.read_with_weights(run, "best")
        model = models.build(info.model, info.outputs)
        model.set_state_dict(state)
        views = [loss.scores(train.predict_outputs(model, shifted(evaluation.images, dy, dx, background)))
                 for dy, dx in SHIFTS]
        accuracy = {"plain": views[0], "shift5": np.mean(views[:5], axis=0), "shift9": np.mean(views, axis=0)}
        accuracy = {name: round(100 * float((p.argmax(axis=1) == evaluation.class_ids).mean()), 2)
                    for name, p in accuracy.items()}
        precise_batchnorm(model, clean)
        accuracy["precise_bn"] = round(100 * train.evaluate(model, loss, evaluation)["acc"], 2)
        print(json.dumps({"run": run, **accuracy}), flush=True)


if __name__ == "__main__":
    main()

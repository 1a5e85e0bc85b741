"""What evaluation-time changes give trained models: precise BatchNorm and test-time views.

    python scripts/bench_eval_tricks.py --data ../shared/data/mnist.json.gz RUN_DIR [RUN_DIR ...]
    python scripts/bench_eval_tricks.py --split valid RUN_DIR ...   # runs that did not train on valid

For each run's kept weights, accuracy (%) on ``--split``:
- ``plain``: as trained, what ``paddle-mnist train`` reports;
- test-time augmentation, the mean softmax over the image and transformed copies, one forward
  pass per view: ``zoom``, ``shifts``, ``rotate`` and ``all``, the view sets of
  ``paddle-mnist predict --tta`` (``paddle_mnist.views``);
- ``precise_bn``: the BatchNorm statistics recomputed on the first ``--bn-images`` un-augmented
  training images (Wu & Johnson 2021, "precise BN"): training keeps a running mean over the last
  few augmented batches, which need not be the statistics of clean digits under the final weights.
Choosing among these on the eval split is choosing on the test set. Two fairer checks: ``--split
valid`` with runs that kept the valid split out of training (but valid digits are by the training
set's writers, eval digits by others), and ``halves``, each figure on the split's first and second
halves, so a choice made on one half can be checked on the other. One JSON object per run.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from paddle_mnist import losses, rundir, trainer, views
from paddle_mnist._paddle import paddle  # the package first, as everywhere: MKL's CPU type is set before paddle loads
from paddle_mnist.data import load_datasets
from paddle_mnist.predictor import on_paddle


@paddle.no_grad()
def precise_batchnorm(model: paddle.nn.Layer, images: np.ndarray, batch: int = 500) -> None:
    """Replace every BatchNorm layer's running statistics by their mean over batches of ``images``."""
    layers = [layer for layer in model.sublayers() if isinstance(layer, (paddle.nn.BatchNorm1D, paddle.nn.BatchNorm2D))]
    sums = {id(layer): [0.0, 0.0] for layer in layers}
    for layer in layers:
        layer._momentum = 0.0  # each forward leaves exactly this batch's statistics
    model.train()
    batches = range(0, len(images), batch)
    for first in batches:
        model(paddle.to_tensor(images[first : first + batch]))
        for layer in layers:
            sums[id(layer)][0] += layer._mean.numpy()
            sums[id(layer)][1] += layer._variance.numpy()
    for layer in layers:
        mean, variance = sums[id(layer)]
        layer._mean.set_value(mean / len(batches))
        layer._variance.set_value(variance / len(batches))
        layer._momentum = 0.9
    model.eval()


def view_accuracies(model: paddle.nn.Layer, split, loss: losses.Loss) -> dict:
    """Accuracy as trained and under each of ``views.VIEW_SETS``, on the whole split and on its
    two halves (``halves``); every view is computed once."""
    scores = {}

    def probabilities(theta: np.ndarray | None) -> np.ndarray:
        key = None if theta is None else theta.tobytes()
        if key not in scores:
            images = split.images if theta is None else views.warp(split.images, theta, split.encoding.background)
            scores[key] = loss.scores(trainer.predict_outputs(model, images))
        return scores[key]

    plain = probabilities(None)
    mean = {
        "plain": plain,
        **{
            name: np.mean([plain] + [probabilities(t) for t in thetas], axis=0)
            for name, thetas in views.VIEW_SETS.items()
            if thetas
        },
    }
    correct = {name: p.argmax(axis=1) == split.class_ids for name, p in mean.items()}
    half = len(split.class_ids) // 2
    return {
        **{name: percent(right) for name, right in correct.items()},
        "halves": {name: [percent(right[:half]), percent(right[half:])] for name, right in correct.items()},
    }


def percent(correct: np.ndarray) -> float:
    return round(100 * float(correct.mean()), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories of paddle-mnist train (cross_entropy models)")
    parser.add_argument("--data", help="data file or IDX directory (default: the search of docs/data.md)")
    parser.add_argument(
        "--split",
        choices=("eval", "valid"),
        default="eval",
        help="where to score: the official test images, or the valid split (default: eval)",
    )
    parser.add_argument(
        "--bn-images", type=int, default=10_000, help="un-augmented training images for precise BN (default: 10000)"
    )
    args = parser.parse_args()
    if args.split == "valid":
        for run in args.runs:
            if rundir.read(run).config.get("train_on_valid"):
                parser.error(f"{run}: trained on the valid split, so --split valid would score training images")
    _, splits = load_datasets(args.data, train_on_valid=args.split == "eval")
    split, clean = splits[args.split], splits["train"].images[: args.bn_images]
    loss = losses.LOSSES["cross_entropy"]
    for run in args.runs:
        model = on_paddle(rundir.open_run(run, "best")).network
        accuracy = view_accuracies(model, split, loss)
        precise_batchnorm(model, clean)
        accuracy["precise_bn"] = round(100 * trainer.evaluate(model, loss, split).acc, 2)
        print(json.dumps({"run": run, "split": args.split, **accuracy}), flush=True)


if __name__ == "__main__":
    main()

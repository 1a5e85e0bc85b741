"""Test-time views: the model also reads each digit slightly rescaled, moved or turned, and its
class probabilities are averaged over the views (test-time augmentation).

MNIST's test digits come from other writers than its training digits. Read at 0.9, 1 and 1.1
times its size, each `best` model misreads fewer of them (docs/results.md, "How `best` reached
99.70 %"): one model, one forward pass per view. The views warp the model's 28x28 input, so they
work with every engine.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from paddle_mnist import augment
from paddle_mnist._paddle import paddle


def affine(dy: int = 0, dx: int = 0, degrees: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """The map [2,3] (normalised coordinates, as ``augment`` uses) that moves a digit (dy, dx)
    pixels, turns it and scales it about the centre."""
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    step = 2 / augment.SIZE
    return np.array([[cos, -sin, -dx * step], [sin, cos, -dy * step]], np.float32)


_ONE_PIXEL = [affine(1, 0), affine(-1, 0), affine(0, 1), affine(0, -1)]
_DIAGONAL = [affine(1, 1), affine(-1, -1), affine(1, -1), affine(-1, 1)]
_ZOOM = [affine(scale=0.9), affine(scale=1.1)]
_ROTATE = [affine(degrees=-5), affine(degrees=5)]
_FURTHER = [affine(2, 0), affine(-2, 0), affine(0, 2), affine(0, -2), affine(degrees=-10), affine(degrees=10)]

# The views besides the digit as given, by name.
VIEW_SETS: dict[str, list[np.ndarray]] = {
    "none": [],
    "zoom": _ZOOM,
    "shifts": _ONE_PIXEL + _DIAGONAL,
    "rotate": _ROTATE,
    "all": _ONE_PIXEL + _DIAGONAL + _ZOOM + _ROTATE + _FURTHER,
}
DESCRIPTIONS = {
    "none": "the digit as given",
    "zoom": "also at 0.9x and 1.1x its size (3 forward passes)",
    "shifts": "also moved one pixel in 8 directions (9 passes)",
    "rotate": "also turned by -5 and 5 degrees (3 passes)",
    "all": "all of those, 2-pixel moves and 10-degree turns too (19 passes)",
}


def add_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--tta`` flag, the same for every command that predicts."""
    parser.add_argument(
        "--tta",
        choices=tuple(VIEW_SETS),
        default="none",
        help="test-time views whose probabilities are averaged: "
        + "; ".join(f"{name} = {text}" for name, text in DESCRIPTIONS.items())
        + " (default: none)",
    )


@paddle.no_grad()
def warp(images: np.ndarray, theta: np.ndarray, background: float) -> np.ndarray:
    """``images`` [N,1,28,28] all warped by one map, what moves in from outside the frame blank."""
    thetas = np.repeat(theta[None], len(images), axis=0)
    return augment.apply_affine(paddle.to_tensor(images), thetas, background).numpy()


def log_mean(probabilities: list[np.ndarray]) -> np.ndarray:
    """log of the mean of several [N,10] probability arrays: a softmax of it is that mean again."""
    return np.log(np.maximum(np.mean(probabilities, axis=0), 1e-30))


def averaged(engine: Callable, scores: Callable, background: float, name: str) -> Callable:
    """An engine: ``engine``'s class probabilities (``scores`` of its outputs) averaged over the
    batch and its views, returned as their log."""
    views = VIEW_SETS[name]

    def run(batch: np.ndarray) -> np.ndarray:
        return log_mean([scores(engine(batch))] + [scores(engine(warp(batch, theta, background))) for theta in views])

    return run

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

SIZE = 28  # the model input's side


def affine(dy: int = 0, dx: int = 0, degrees: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """The map [2,3] (normalised coordinates, as ``augment`` uses) that moves a digit (dy, dx)
    pixels, turns it and scales it about the centre."""
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    step = 2 / SIZE
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


def warp(images: np.ndarray, theta: np.ndarray, background: float) -> np.ndarray:
    """``images`` [N,1,H,W] all warped by one map, what moves in from outside the frame blank.

    The same bilinear sample as ``augment.apply_affine`` (paddle's ``affine_grid`` and ``grid_sample``,
    ``align_corners=False``, zeros outside), in numpy: a prediction on onnxruntime never imports paddle.
    One map for the whole batch, so the four source pixels and weights of each output pixel are
    computed once and gathered for all images at a time.
    """
    height, width = images.shape[-2:]
    ys, xs = np.meshgrid(
        (2 * np.arange(height) + 1) / height - 1, (2 * np.arange(width) + 1) / width - 1, indexing="ij"
    )
    theta = theta.astype(np.float64)
    source_x = ((theta[0, 0] * xs + theta[0, 1] * ys + theta[0, 2] + 1) * width - 1) / 2
    source_y = ((theta[1, 0] * xs + theta[1, 1] * ys + theta[1, 2] + 1) * height - 1) / 2
    left, top = np.floor(source_x).astype(np.int64), np.floor(source_y).astype(np.int64)
    right_weight, bottom_weight = source_x - left, source_y - top
    ink = images - background
    warped = np.zeros_like(ink)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        y, x = top + dy, left + dx
        weight = (bottom_weight if dy else 1 - bottom_weight) * (right_weight if dx else 1 - right_weight)
        weight = weight * ((y >= 0) & (y < height) & (x >= 0) & (x < width))
        warped += ink[..., np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)] * weight.astype(ink.dtype)
    return warped + background


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

"""Numbers written with touching training digits, and the pieces the reading of numbers cuts them into
(``reading.plan``, as for a model that refuses pairs).  The wrong pieces, a digit with a share of its
neighbour, are trained as non-digits (``notdigits.misfits``, under ``--outliers``); the right ones, each one
digit with maybe a bit of its neighbour's ink and a cut edge, as that digit (``cut_digits``, under
``--cut-digits``): the model learns digits as the reading hands them over, not only as MNIST centred them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from paddle_mnist import reading

# A piece holding this share of one digit's columns, and less than the rest of any other's, is that digit cut
# right.  What lies between (a digit short of a loop, a tail of a neighbour) is trained as neither.
HOLD = 0.85
PER_NUMBER = 2  # right pieces of one number at most: a number's pieces are much alike


@dataclass(frozen=True)
class TouchingNumber:
    """A picture of training digits written touching, dark on white, with each digit's columns in it and its
    index among the digits it was drawn from."""

    picture: Image.Image
    spans: list[tuple[int, int]]
    picks: np.ndarray


def number(digits: np.ndarray, rng: np.random.Generator) -> TouchingNumber:
    """2 or 3 of ``digits`` (uint8 [N,28,28]) written touching (their boxes overlapping by up to 15 % of
    their height) or nearly.  Plainer than the benchmark's photos (``testing.numbers``): no paper, no
    rotation, other sizes and overlaps."""
    height = float(rng.uniform(40, 90))
    picks = rng.integers(0, len(digits), int(rng.integers(2, 4)))
    crops = [scaled(digits[int(k)], height, rng) for k in picks]
    margin = int(height * 0.5)
    ink = np.zeros((int(height * 1.5) + 2 * margin, sum(c.shape[1] for c in crops) + 2 * margin), np.float32)
    x, spans = margin, []
    for crop in crops:
        top = margin + height * 1.3 - crop.shape[0] + rng.normal(0, 0.04) * height  # a baseline that wavers
        top = int(np.clip(top, 0, ink.shape[0] - crop.shape[0]))
        region = ink[top : top + crop.shape[0], x : x + crop.shape[1]]  # the margins leave room for every crop
        np.maximum(region, crop, out=region)
        spans.append((x, x + crop.shape[1]))
        x += crop.shape[1] + int(height * rng.uniform(-0.15, 0.02))
    return TouchingNumber(Image.fromarray(np.uint8(245 - 225 * ink)), spans, picks)


def scaled(digit: np.ndarray, height: float, rng: np.random.Generator) -> np.ndarray:
    """A uint8 [28,28] MNIST digit cropped to its ink and scaled to about ``height`` pixels for its 20-pixel box
    (give or take 10 %), floats in [0, 1]."""
    rows, columns = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    crop = digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].astype(np.float32) / 255
    h = max(4, round(height * crop.shape[0] / 20 * rng.uniform(0.9, 1.1)))
    w = max(2, round(h * crop.shape[1] / crop.shape[0]))
    return np.asarray(Image.fromarray(crop, mode="F").resize((w, h), Image.BICUBIC)).clip(0, 1)


def pieces(picture: Image.Image, spans: list[tuple[int, int]]) -> list[tuple[np.ndarray, tuple, np.ndarray]]:
    """Every piece the reading may cut ``picture`` into (``reading.plan``, as for a model that refuses pairs, cut as
    the training's pieces are: ``training``): its pixels, its box, and the share of each digit's columns
    (``spans``) that the box holds."""
    planned = reading.plan(picture, refuses_pairs=True, training=True)
    return [(pixels, box, held(box, spans)) for pixels, box in zip(planned.pixels, planned.boxes)]


def held(box: tuple[int, int, int, int], spans: list[tuple[int, int]]) -> np.ndarray:
    """The share of each digit's columns (``spans``) that a piece's ``box`` holds."""
    x0, _, x1, _ = box
    return np.array([max(0, min(x1, end) - max(x0, start)) / (end - start) for start, end in spans])


def right_pieces(picture: Image.Image, spans: list[tuple[int, int]], labels: list[int]) -> list[tuple[np.ndarray, int]]:
    """(pixels, digit) of the pieces the reading may cut ``picture`` into that hold one digit (``HOLD``): the
    digit whose columns are ``spans[k]`` is ``labels[k]``."""
    right = []
    for pixels, _, shares in pieces(picture, spans):
        first, second = np.argsort(-shares, kind="stable")[:2]
        if shares[first] >= HOLD and shares[second] < 1 - HOLD:
            right.append((pixels, int(labels[first])))
    return right


def cut_digits(pixels: np.ndarray, class_ids: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` training digits as the reading cuts them out of touching numbers made of ``pixels`` (their digits
    ``class_ids``): uint8 [n,28,28] and their digits, made from ``seed`` (~50 s for 10,000)."""
    rng = np.random.default_rng([seed, 77])
    made, digits = [], []
    while len(made) < n:
        drawn = number(pixels, rng)
        right = right_pieces(drawn.picture, drawn.spans, [int(class_ids[k]) for k in drawn.picks])
        for k in rng.permutation(len(right))[:PER_NUMBER]:
            made.append(right[k][0])
            digits.append(right[k][1])
    return np.stack(made[:n]), np.array(digits[:n], dtype=class_ids.dtype)

"""Which digits a picture holds, as model inputs: the picture cut into its digits (``segment``), touching
digits split where the model reads both sides best, each digit prepared as MNIST's were (``preprocess``).

A picture found to hold one digit, with no specks dropped, is prepared exactly as a single digit always
was (the whole ink map, cropped, fitted and centred).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_mnist import preprocess, segment
from paddle_mnist.errors import UserError

SPLIT_DEPTH = 3  # a wide part is split at most this many times over: up to 8 touching digits


@dataclass(frozen=True)
class Digits:
    """The model inputs of a picture's digits, left to right, and where each lies in the picture."""

    inputs: list[np.ndarray]  # float32 [1,28,28] each, scaled as the model's training data
    boxes: list[tuple[int, int, int, int] | None]  # x0, y0, x1, y1 in the upright picture's pixels
    left_out: int = 0  # marks past ``max_digits``, not read


def digits_of(predictor, item, naive: bool = False, single: bool = False, max_digits: int = 12) -> Digits:
    """The digits in ``item`` (a path, a PIL image or an array) as ``predictor``'s inputs.  ``naive`` is the
    tutorial's preprocessing of the whole picture; ``single`` reads the whole picture as one digit."""
    image = item_image(item)
    whole = (0, 0, image.width, image.height)
    if naive:
        return Digits([preprocess.naive(image)[None]], [whole])
    ink, scale = preprocess.ink_map(image)
    if preprocess.in_mnist_form(ink):
        return Digits([_encoded(predictor, np.rint(ink * 255).astype(np.uint8))], [whole])
    levelled = preprocess.level_background(ink)
    if single:
        return Digits([_encoded(predictor, preprocess.digit_pixels(levelled))], [whole])
    found = segment.find_parts(levelled, max_digits)
    parts = [piece for part in found.parts for piece in _split(predictor, levelled, part, found.line_height)]
    left_out = found.left_out + max(0, len(parts) - max_digits)
    parts = parts[:max_digits]
    inputs = [_encoded(predictor, preprocess.digit_pixels(_only(levelled, part))) for part in parts]
    return Digits(inputs, [_box(part, scale) for part in parts], left_out)


def _split(predictor, ink: np.ndarray, part: segment.Part, line_height: int, depth: int = SPLIT_DEPTH) -> list:
    """``part`` as the digits it holds: itself, or, when it is wide and the model reads the two sides of a cut
    better than the whole (the product of their probabilities against the whole's), the digits of each side."""
    if depth == 0 or not segment.is_wide(part, line_height):
        return [part]
    options = [pair for pair in segment.cuts(ink, part) if pair[0].mass > 0 and pair[1].mass > 0]
    if not options:
        return [part]
    crops = [part] + [side for pair in options for side in pair]
    batch = np.stack([_encoded(predictor, preprocess.digit_pixels(c.crop(ink))) for c in crops])
    confidence = predictor.loss.scores(predictor.forward(batch)).max(axis=1)
    sides = confidence[1:].reshape(-1, 2).prod(axis=1)
    best = int(np.argmax(sides))
    if sides[best] <= confidence[0]:
        return [part]
    left, right = options[best]
    return _split(predictor, ink, left, line_height, depth - 1) + _split(predictor, ink, right, line_height, depth - 1)


def _only(ink: np.ndarray, part: segment.Part) -> np.ndarray:
    """``ink`` with everything outside ``part`` blanked (specks, the other digits): the same map, so that a
    picture of one digit with nothing dropped is prepared exactly as a single digit always was."""
    kept = np.zeros_like(ink)
    kept[part.y0 : part.y1, part.x0 : part.x1] = part.crop(ink)
    return kept


def _encoded(predictor, pixels: np.ndarray) -> np.ndarray:
    return predictor.encoding.to_floats(pixels)[None].astype(np.float32)


def _box(part: segment.Part, scale: float) -> tuple[int, int, int, int]:
    return tuple(int(round(v * scale)) for v in (part.x0, part.y0, part.x1, part.y1))


def item_image(item) -> Image.Image:
    """A PIL image from a path, a PIL image, or a grey array: integers 0..255, or floats in [0, 1] (1 = white)."""
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, Path)):
        return preprocess.open_image(Path(item))
    return Image.fromarray(gray_levels(np.asarray(item)), mode="L")


def gray_levels(array: np.ndarray) -> np.ndarray:
    """uint8 [H, W] from an array of grey values, with one line for each way it can be unusable."""
    shape = list(array.shape)
    if array.ndim > 2 and np.prod(array.shape[:-2]) == 1:
        array = array.reshape(array.shape[-2:])
    if array.ndim != 2 or array.size == 0:
        raise UserError(f"an image array must be a non-empty [H, W], got shape {shape}")
    if array.size > preprocess.MAX_PIXELS:
        raise UserError(f"an image array of {array.size:,} pixels is over the {preprocess.MAX_PIXELS:,}-pixel limit")
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.uint8) * 255
    if kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise UserError(f"an integer image array must hold grey levels 0..255, got {array.min()}..{array.max()}")
        return array.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UserError("a float image array must hold finite values in [0, 1]")
        return np.rint(array * 255).astype(np.uint8)
    raise UserError(f"an image array must hold numbers, got dtype {array.dtype}")

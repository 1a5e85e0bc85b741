"""Pictures of numbers made of MNIST digits side by side, in dark ink on paper (issue 31's test pictures)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def number_picture(
    digits: list[np.ndarray], gap: int = 6, scale: int = 4, specks: int = 0, seed: int = 0
) -> Image.Image:
    """Grey picture of uint8 [28,28] MNIST ``digits`` (white on black) written left to right, each cropped to
    its ink's columns, ``gap`` MNIST pixels apart (0 or less: touching), enlarged ``scale`` times, dark on
    light paper; ``specks`` single dots of dirt scattered over the margins."""
    crops = []
    for digit in digits:
        columns = np.flatnonzero(digit.any(axis=0))
        crops.append(digit[:, columns[0] : columns[-1] + 1].astype(np.float32) / 255)
    width = sum(c.shape[1] for c in crops) + gap * (len(crops) - 1) + 24
    ink = np.zeros((28 + 24, width), np.float32)
    x = 12
    for crop in crops:
        ink[12:40, x : x + crop.shape[1]] = np.maximum(ink[12:40, x : x + crop.shape[1]], crop)
        x += crop.shape[1] + gap
    rng = np.random.default_rng(seed)
    for _ in range(specks):
        row = int(rng.choice([rng.integers(0, 8), rng.integers(44, 52)]))
        ink[row, int(rng.integers(0, width))] = 1.0
    paper = np.uint8(240 - 215 * ink)
    return Image.fromarray(paper).resize((width * scale, ink.shape[0] * scale), Image.BICUBIC)

"""Pictures of numbers made of MNIST digits written side by side (issue 31): for tests, exactly placed
(``number_picture``), and for ``scripts/bench_numbers.py``, as photos with the variety of real ones
(``number_photo``: gaps from touching to wide, digits of slightly different sizes, a drifting baseline,
a few degrees of rotation, ink on paper under uneven light, noisy JPEGs)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

GAPS = {"touching": (-0.12, -0.02), "narrow": (0.03, 0.1), "ordinary": (0.1, 0.3), "wide": (0.3, 0.8)}  # x height


def ink_crop(digit: np.ndarray) -> np.ndarray:
    """A uint8 [28,28] MNIST digit (white on black) cropped to its ink, as floats in [0, 1]."""
    rows, columns = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].astype(np.float32) / 255


def number_picture(
    digits: list, gap: int = 6, scale: int = 4, specks: int = 0, seed: int = 0, margin: int = 12
) -> Image.Image:
    """Grey picture of MNIST ``digits`` written left to right on a common baseline, ``gap`` MNIST pixels
    apart (0 or less: touching), with ``margin`` pixels around, enlarged ``scale`` times, dark on light
    paper; ``specks`` dots of dirt scattered over the margins above and below."""
    crops = [ink_crop(d) for d in digits]
    width = sum(c.shape[1] for c in crops) + gap * (len(crops) - 1) + 2 * margin
    ink = np.zeros((28 + 2 * margin, width), np.float32)
    x = margin
    for crop in crops:
        top = margin + 24 - crop.shape[0]
        region = ink[top : margin + 24, x : x + crop.shape[1]]
        np.maximum(region, crop, out=region)
        x += crop.shape[1] + gap
    rng = np.random.default_rng(seed)
    for _ in range(specks):
        row = int(rng.choice([rng.integers(0, margin - 4), rng.integers(margin + 32, 2 * margin + 28)]))
        ink[row, int(rng.integers(0, width))] = 1.0
    paper = np.uint8(240 - 215 * ink)
    return Image.fromarray(paper).resize((width * scale, ink.shape[0] * scale), Image.BICUBIC)


def digit_columns(digits: list, gap: int = 6, scale: int = 4, margin: int = 12) -> list[tuple[int, int]]:
    """Each digit's columns [x0, x1) in ``number_picture(digits, gap, scale, margin=margin)``: where the pieces
    of a right reading lie."""
    widths = [ink_crop(d).shape[1] for d in digits]
    starts = margin + np.cumsum([0] + [w + gap for w in widths[:-1]])
    return [(scale * int(x), scale * int(x + w)) for x, w in zip(starts, widths)]


@dataclass(frozen=True)
class Variety:
    """How much one set of number photos varies: the generator's knobs, so a benchmark can vary them."""

    height: tuple[int, int] = (50, 140)  # digit height in pixels
    sizes: float = 0.1  # each digit's height varies by this share
    drift: float = 0.06  # the baseline wanders by this share of the height, digit to digit
    rotation: float = 3.0  # degrees, either way
    margin: tuple[float, float] = (0.3, 1.5)  # around the number, in digit heights


def number_photo(digits: list, gap: str, rng: np.random.Generator, style: str = "paper", variety=Variety()) -> bytes:
    """A photo (PNG, or JPEG for ``style`` "jpeg") of MNIST ``digits`` written left to right with gaps of the
    kind ``gap`` (a key of ``GAPS``), varied by ``variety``."""
    height = float(rng.uniform(*variety.height))
    crops = []
    for digit in digits:
        crop = ink_crop(digit)
        h = max(4, round(height * crop.shape[0] / 20 * rng.uniform(1 - variety.sizes, 1 + variety.sizes)))
        w = max(2, round(h * crop.shape[1] / crop.shape[0]))
        crops.append(np.asarray(Image.fromarray(crop, mode="F").resize((w, h), Image.BICUBIC)).clip(0, 1))
    margin = int(height * rng.uniform(*variety.margin)) + 2
    gaps = [int(height * rng.uniform(*GAPS[gap])) for _ in crops[1:]] + [0]
    width = sum(c.shape[1] for c in crops) + sum(gaps) + 2 * margin
    ink = np.zeros((int(height * 1.6) + 2 * margin, max(width, 8)), np.float32)
    x, baseline = margin, margin + int(height * 1.3)
    for crop, gap_after in zip(crops, gaps):
        top = int(np.clip(baseline - crop.shape[0], 0, ink.shape[0] - crop.shape[0]))
        region = ink[top : top + crop.shape[0], x : x + crop.shape[1]]
        np.maximum(region, crop[: region.shape[0], : region.shape[1]], out=region)
        x += crop.shape[1] + gap_after
        baseline += int(height * rng.uniform(-variety.drift, variety.drift))
    ink = np.asarray(
        Image.fromarray(ink, mode="F").rotate(rng.uniform(-1, 1) * variety.rotation, Image.BICUBIC, expand=True)
    )
    return _on_paper(ink.clip(0, 1), style, rng)


def _on_paper(ink: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    from paddle_mnist.rendering import on_paper as paper  # the single-digit photos' paper and pen

    rgb = paper(ink, rng)
    out = io.BytesIO()
    if style == "jpeg":
        noisy = rgb.astype(np.float32) + rng.normal(0, 10, ink.shape + (1,))
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=int(rng.integers(50, 85)))
    else:
        Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()

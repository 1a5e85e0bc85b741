"""Strokes far thicker than MNIST's, thinned before a digit is fitted into MNIST's box.

A marker, or the pad's pen on a small digit, draws strokes far thicker than MNIST's: fitted into the
20 px box, the loops fill (an 8 reads 0, a flagged 1 reads 8).  ``preprocess.digit_pixels`` thins such a
digit first, whether it is a picture, a piece of a number or an outlier made for training.

Widths are in pixels of the box, measured with the digit's long side at ``SIZE`` times the box
(``stroke_width``): 5,000 MNIST training digits 2.66 at the median, 4.03 at the 95th percentile, 2.6 %
over ``THICK``.  Thinning from 5.0 or 5.6 read fewer thick digits; from 4.4, 1-2 points fewer thick
scribbles and clothes as pictures are refused (docs/results.md, "Real pictures").
"""

from __future__ import annotations

import numpy as np

THICK = 4.4  # strokes wider than this are thinned ...
THIN_TO = 3.5  # ... to about this width
SIZE = 4  # the digit is measured and thinned at 4 times the box: a few pixels of erosion, whatever its size


def stroke_width(ink: np.ndarray) -> float:
    """The mean width of ``ink``'s strokes in its pixels: twice the area of its ink (above half strength) over
    the pixels of its outline (a band w wide and L long: 2wL / 2L)."""
    inked = ink > 0.5
    inner = np.zeros_like(inked)
    inner[1:-1, 1:-1] = inked[1:-1, 1:-1] & inked[:-2, 1:-1] & inked[2:, 1:-1] & inked[1:-1, :-2] & inked[1:-1, 2:]
    return 2 * int(inked.sum()) / max(1, int((inked & ~inner).sum()))


def thinned(work: np.ndarray) -> np.ndarray:
    """A digit cropped to its ink and scaled to ``SIZE`` times the box it will be fitted into: its strokes
    eroded to about ``THIN_TO`` box pixels when they are wider than ``THICK``, and cropped again so that the
    thinned digit fills the box as MNIST's do; else ``work`` itself, untouched."""
    width = stroke_width(work) / SIZE  # in box pixels
    radius = round((width - THIN_TO) / 2 * SIZE)  # in work pixels, on each side of a stroke
    if width <= THICK or radius < 1:
        return work
    eroded = eroded_square(work, radius)
    if eroded.max() <= 0.5:  # no stroke survives: nothing thinner to read
        return work
    rows, columns = np.flatnonzero(eroded.any(axis=1)), np.flatnonzero(eroded.any(axis=0))
    return eroded[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def eroded_square(ink: np.ndarray, radius: int) -> np.ndarray:
    """``ink``'s grey erosion by a (2 radius + 1)-pixel square: the least ink around each pixel, rows then columns."""
    size = 2 * radius + 1
    padded = np.pad(ink, radius)  # paper beyond the edges
    rows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=0).min(axis=-1)
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1).min(axis=-1)

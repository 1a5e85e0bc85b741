"""Pixel encodings: how a data file turned a uint8 pixel into the float it stores.

Kept apart from the readers so the predictor can rebuild a model's input
scaling from its metadata without importing the data-loading stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddle_mnist.errors import DataError


@dataclass(frozen=True)
class Encoding:
    """A uint8 pixel ``p`` is stored as ``p / scale + offset``."""

    name: str
    scale: float
    offset: float

    def to_floats(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels as the floats the model was trained on."""
        out = pixels.astype(np.float32) / np.float32(self.scale)
        return out + np.float32(self.offset) if self.offset else out

    @property
    def background(self) -> float:
        """The stored value of an empty (0) pixel: what augmentation and shifts fill uncovered pixels with."""
        return float(self.to_floats(np.zeros(1, np.uint8))[0])


ENCODINGS = {
    e.name: e
    for e in (
        Encoding("pixel/256", 256.0, 0.0),  # the tutorial's file and mnist.pkl.gz
        Encoding("pixel/255", 255.0, 0.0),
        Encoding("[-1,1]", 127.5, -1.0),
        Encoding("0..255", 1.0, 0.0),
    )
}
TUTORIAL_ENCODING = ENCODINGS["pixel/256"]


def detect_encoding(values: np.ndarray, path: Path) -> tuple[Encoding, np.ndarray]:
    """Find which pixel encoding produced ``values`` and recover the uint8 pixels (same shape).

    A file in another normalisation (say [-1,1]) is recognised and named rather
    than mis-scaled; values that fit no known encoding are an error.  Works a
    slice at a time, so the temporaries stay small next to ``values``.
    """
    for encoding in ENCODINGS.values():
        pixels = _encode(values, encoding)
        if pixels is not None:
            return encoding, pixels
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    known = ", ".join(e.name for e in ENCODINGS.values())
    hint = " (it looks standardised by mean/std)" if lo < 0 < hi and hi > 1 else ""
    raise DataError(
        f"{path}: pixel values span [{lo:.4g}, {hi:.4g}], which fits no known pixel encoding ({known}){hint}"
    )


def _encode(values: np.ndarray, encoding: Encoding, rows: int = 8192) -> np.ndarray | None:
    """uint8 pixels if every value is ``p / scale + offset`` for an integer p in 0..255 (within 0.02), else None."""
    out = np.empty(values.shape, dtype=np.uint8)
    for start in range(0, len(values), rows):
        pixels = (values[start : start + rows].astype(np.float64) - encoding.offset) * encoding.scale
        rounded = np.rint(pixels)
        if (
            rounded.min(initial=0) < 0
            or rounded.max(initial=0) > 255
            or np.abs(pixels - rounded).max(initial=0) >= 0.02
        ):
            return None
        out[start : start + rows] = rounded
    return out

"""The three splits (train / valid / eval) as compact arrays, from either source format.

Everything is held as uint8 pixels plus the file's pixel encoding, so the JSON
and IDX sources give identical arrays and one cache format serves both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddle_mnist import cache, idx, locate, tutorial_json
from paddle_mnist.errors import DataError

SPLITS = tutorial_json.SPLIT_NAMES
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CLASSES = {"mnist": MNIST_CLASSES, "fashion-mnist": FASHION_CLASSES}


@dataclass(frozen=True)
class Encoding:
    """How a file turned a uint8 pixel ``p`` into a float: ``p / scale + offset``."""
    name: str
    scale: float
    offset: float

    def decode(self, pixels: np.ndarray) -> np.ndarray:
        out = pixels.astype(np.float32) / np.float32(self.scale)
        return out + np.float32(self.offset) if self.offset else out


ENCODINGS = {e.name: e for e in (
    Encoding("pixel/256", 256.0, 0.0),   # the tutorial's file and mnist.pkl.gz
    Encoding("pixel/255", 255.0, 0.0),
    Encoding("[-1,1]", 127.5, -1.0),
    Encoding("0..255", 1.0, 0.0),
)}
TUTORIAL_ENCODING = ENCODINGS["pixel/256"]


@dataclass(frozen=True)
class Split:
    pixels: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # uint8 [N]


@dataclass(frozen=True)
class MnistData:
    splits: dict[str, Split]
    encoding: Encoding
    dataset: str
    source: Path

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES[self.dataset]


def detect_encoding(values: np.ndarray, path: Path) -> tuple[Encoding, np.ndarray]:
    """Find which pixel encoding produced ``values`` and recover the uint8 pixels.

    A file in another normalisation (say [-1,1]) is recognised and named rather
    than mis-scaled; values that fit no known encoding are an error.
    """
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    for encoding in ENCODINGS.values():
        pixels = (values - encoding.offset) * encoding.scale
        rounded = np.rint(pixels)
        if rounded.min(initial=0) >= 0 and rounded.max(initial=0) <= 255 and np.abs(pixels - rounded).max(initial=0) < 0.02:
            return encoding, rounded.astype(np.uint8)
    known = ", ".join(f"{e.name}" for e in ENCODINGS.values())
    hint = " (it looks standardised by mean/std)" if lo < 0 < hi and hi > 1 else ""
    raise DataError(f"{path}: pixel values span [{lo:.4g}, {hi:.4g}], which fits no known pixel encoding ({known}){hint}")


def _from_json(path: Path) -> tuple[dict[str, np.ndarray], Encoding]:
    images, labels = tutorial_json.parse(tutorial_json.read_text(path), path)
    sizes = [len(x) for x in images]
    encoding, pixels = detect_encoding(np.concatenate(images) if sum(sizes) else np.zeros(0), path)
    pixels = np.split(pixels.reshape(-1, 28, 28), np.cumsum(sizes)[:-1])
    arrays = {}
    for name, split_pixels, split_labels in zip(SPLITS, pixels, labels):
        arrays[f"{name}_pixels"], arrays[f"{name}_labels"] = split_pixels, split_labels.astype(np.uint8)
    return arrays, encoding


def from_idx(directory: Path) -> tuple[dict[str, np.ndarray], Encoding]:
    """The tutorial's split policy: the last sixth of the training files (50,000..59,999) is valid."""
    train_x, train_y = idx.read_pair(directory, "train_images", "train_labels")
    test_x, test_y = idx.read_pair(directory, "test_images", "test_labels")
    cut = len(train_x) - len(train_x) // 6
    arrays = {
        "train_pixels": train_x[:cut], "train_labels": train_y[:cut],
        "valid_pixels": train_x[cut:], "valid_labels": train_y[cut:],
        "eval_pixels": test_x, "eval_labels": test_y,
    }
    return arrays, TUTORIAL_ENCODING


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        return [idx.find_file(source, stem) for stem in idx.FILES.values()]
    return [source]


def _decode_cached(arrays: dict[str, np.ndarray]) -> tuple[dict[str, Split], Encoding]:
    splits = {}
    for name in SPLITS:
        pixels, labels = arrays[f"{name}_pixels"], arrays[f"{name}_labels"]
        if pixels.dtype != np.uint8 or pixels.shape[1:] != (28, 28) or labels.shape != (len(pixels),):
            raise ValueError(f"bad {name} arrays")
        splits[name] = Split(pixels, labels)
    return splits, ENCODINGS[str(arrays["encoding"])]


_loaded: dict[tuple[str, str], MnistData] = {}


def load(path: str | Path | None = None, dataset: str = "mnist", *, use_cache: bool = True) -> MnistData:
    """Locate, validate and return all three splits, through the cache when possible."""
    if dataset not in CLASSES:
        raise DataError(f"unknown dataset {dataset!r}: choose {' or '.join(CLASSES)}")
    source = locate.find(path, dataset)
    key = cache.content_key(source_files(source))
    if use_cache and (key, dataset) in _loaded:
        return _loaded[key, dataset]
    cached = cache.load(key, _decode_cached) if use_cache else None
    if cached is None:
        arrays, encoding = from_idx(source) if source.is_dir() else _from_json(source)
        arrays["encoding"] = np.array(encoding.name)
        if use_cache:
            cache.save(key, arrays)
        cached = _decode_cached(arrays)
    splits, encoding = cached
    data = MnistData(splits, encoding, dataset, source)
    if use_cache:
        _loaded[key, dataset] = data
    return data

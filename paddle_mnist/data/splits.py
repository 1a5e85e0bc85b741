"""The three splits (train / valid / eval) of a data source, read once and cached.

Everything is held as uint8 pixels and uint8 class ids plus the file's pixel
encoding, so the JSON and IDX sources give identical arrays and one cache
format serves both.  Arrays from the cache pass the same checks as a fresh
parse before anything uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddle_mnist.data import cache, idx, locate, tutorial_json
from paddle_mnist.data.classes import CLASSES
from paddle_mnist.data.encoding import ENCODINGS, TUTORIAL_ENCODING, Encoding, detect_encoding
from paddle_mnist.errors import DataError

SPLITS = tutorial_json.SPLIT_NAMES


@dataclass(frozen=True)
class Split:
    pixels: np.ndarray  # uint8 [N, 28, 28], as stored (white digit on black)
    class_ids: np.ndarray  # uint8 [N], 0..9


@dataclass(frozen=True)
class MnistData:
    splits: dict[str, Split]
    encoding: Encoding
    dataset: str
    source: Path  # the JSON file or IDX directory the search settled on
    origin: str  # which step of the search found it

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES[self.dataset]


def _from_json(path: Path) -> dict[str, np.ndarray]:
    parsed = tutorial_json.read(path)
    encoding, pixels = detect_encoding(parsed.images, path)
    del parsed.images  # the float copy is the largest array a load holds
    bounds = np.cumsum([0] + parsed.sizes)
    arrays = {"encoding": np.array(encoding.name)}
    for name, start, stop in zip(SPLITS, bounds, bounds[1:]):
        arrays[f"{name}_pixels"] = pixels[start:stop].reshape(-1, 28, 28)
        arrays[f"{name}_class_ids"] = parsed.labels[start:stop].astype(np.uint8)
    return arrays


def from_idx(directory: Path) -> dict[str, np.ndarray]:
    """The tutorial's split policy: the last sixth of the training files (50,000..59,999) is valid."""
    train_x, train_y = idx.read_pair(directory, "train_images", "train_labels")
    test_x, test_y = idx.read_pair(directory, "test_images", "test_labels")
    cut = len(train_x) - len(train_x) // 6
    return {
        "train_pixels": train_x[:cut],
        "train_class_ids": train_y[:cut],
        "valid_pixels": train_x[cut:],
        "valid_class_ids": train_y[cut:],
        "eval_pixels": test_x,
        "eval_class_ids": test_y,
        "encoding": np.array(TUTORIAL_ENCODING.name),
    }


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        return [idx.find_file(source, stem) for stem in idx.FILES.values()]
    return [source]


def check_arrays(arrays: dict[str, np.ndarray]) -> tuple[dict[str, Split], Encoding]:
    """The splits and encoding the arrays describe, or a ValueError saying what is off."""
    splits = {}
    for name in SPLITS:
        pixels, class_ids = arrays.get(f"{name}_pixels"), arrays.get(f"{name}_class_ids")
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape[1:] != (28, 28):
            raise ValueError(f"{name} pixels are not uint8 [N,28,28]")
        if not isinstance(class_ids, np.ndarray) or class_ids.dtype != np.uint8 or class_ids.shape != (len(pixels),):
            raise ValueError(f"{name} class ids are not uint8 [{len(pixels)}]")
        if class_ids.size and class_ids.max() > 9:
            raise ValueError(f"{name} holds a class id above 9")
        splits[name] = Split(pixels, class_ids)
    name = str(arrays.get("encoding", ""))
    if name not in ENCODINGS:
        raise ValueError(f"unknown pixel encoding {name!r}")
    return splits, ENCODINGS[name]


def load(path: str | Path | None = None, dataset: str = "mnist", *, use_cache: bool = True) -> MnistData:
    """Locate, read and validate all three splits, through the cache when possible."""
    if dataset not in CLASSES:
        raise DataError(f"unknown dataset {dataset!r}: choose {' or '.join(CLASSES)}")
    found = locate.find(path, dataset)
    key = cache.content_key(source_files(found.path))
    checked = _cached(key) if use_cache else None
    if checked is None:
        arrays = from_idx(found.path) if found.path.is_dir() else _from_json(found.path)
        checked = check_arrays(arrays)
        if use_cache:
            cache.save(key, arrays)
    splits, encoding = checked
    return MnistData(splits, encoding, dataset, found.path, found.origin)


def _cached(key: str) -> tuple[dict[str, Split], Encoding] | None:
    arrays = cache.load(key)
    if arrays is None:
        return None
    try:
        return check_arrays(arrays)
    except ValueError as e:
        cache.discard(key, str(e))
        return None

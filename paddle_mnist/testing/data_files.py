"""Small data sets written to disk in the formats the data layer reads: the tutorial's gzip JSON and IDX
directories, of random pixels or of a pattern a network learns in one epoch."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np

from paddle_mnist.data import idx

SIZES = {"train": 12, "valid": 6, "eval": 6}


def random_splits(seed: int = 0, sizes: dict[str, int] = SIZES):
    """uint8 pixels [N,28,28] and labels [N] per split."""
    rng = np.random.default_rng(seed)
    return {
        name: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8))
        for name, n in sizes.items()
    }


def json_payload(splits, scale: float = 256.0, offset: float = 0.0) -> list:
    return [
        [(pixels.reshape(len(pixels), -1) / scale + offset).tolist(), labels.tolist()]
        for pixels, labels in splits.values()
    ]


def write_json(path: Path, payload, **dump_args) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(payload, f, **dump_args)
    return path


def write_idx_dir(directory: Path, train, test, compress: bool = True) -> Path:
    """The four IDX files for (pixels, labels) pairs ``train`` and ``test``."""
    directory.mkdir(parents=True, exist_ok=True)
    for (images, labels), key in ((train, "train"), (test, "test")):
        write_idx_file(directory / idx.FILES[f"{key}_images"], idx.IMAGES_MAGIC, images, compress)
        write_idx_file(directory / idx.FILES[f"{key}_labels"], idx.LABELS_MAGIC, labels, compress)
    return directory


def write_idx_file(stem_path: Path, magic: int, array: np.ndarray, compress: bool = True, header=None) -> Path:
    dims = header if header is not None else array.shape
    data = struct.pack(">" + "i" * (1 + len(dims)), magic, *dims) + np.ascontiguousarray(array, np.uint8).tobytes()
    if compress:
        path = stem_path.with_name(stem_path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path = stem_path
        path.write_bytes(data)
    return path


def learnable_splits(seed: int = 0, sizes=None):
    """Noisy images where digit k is a bright 8x8 block at its own place: learnable in one epoch."""
    sizes = sizes or {"train": 300, "valid": 100, "eval": 100}
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in sizes.items():
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            r, c = 2 + 8 * (k // 4), 2 + 8 * (k % 4)
            pixels[i, r : r + 8, c : c + 8] = 250
        out[name] = (pixels, labels)
    return out

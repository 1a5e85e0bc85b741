"""The IDX format of the official MNIST and Fashion-MNIST files, gzip-compressed or raw.

IDX: big-endian int32 magic (2051 images, 2049 labels), int32 count, for
images int32 rows and cols, then uint8 data row-major.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from paddle_mnist.errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_file(directory: Path, stem: str) -> Path | None:
    """The file for ``stem`` in ``directory``, gzip-compressed or raw (also ``.idx3-ubyte`` names)."""
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    return None


def missing_files(directory: Path) -> list[str]:
    return [stem for stem in FILES.values() if find_file(directory, stem) is None]


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (the compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip data ({e})") from None


def read_images(path: Path) -> np.ndarray:
    """uint8 array [N, 28, 28]; the header must match the file's size exactly."""
    data = _read_bytes(path)
    if len(data) < 16:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX image header")
    magic, count, rows, cols = struct.unpack(">iiii", data[:16])
    if magic != IMAGES_MAGIC:
        raise DataError(f"{path}: magic number {magic}, expected {IMAGES_MAGIC} for IDX images")
    if (rows, cols) != (28, 28):
        raise DataError(f"{path}: images are {rows}x{cols}, expected 28x28")
    expected = 16 + count * rows * cols
    if len(data) != expected:
        raise DataError(f"{path}: {len(data)} bytes, but the header's {count} images need {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_labels(path: Path) -> np.ndarray:
    """uint8 array [N] of digits 0..9."""
    data = _read_bytes(path)
    if len(data) < 8:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX label header")
    magic, count = struct.unpack(">ii", data[:8])
    if magic != LABELS_MAGIC:
        raise DataError(f"{path}: magic number {magic}, expected {LABELS_MAGIC} for IDX labels")
    if len(data) != 8 + count:
        raise DataError(f"{path}: {len(data)} bytes, but the header's {count} labels need {8 + count}")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{path}: label {bad} is {labels[bad]}, expected 0..9")
    return labels


def read_pair(directory: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = find_file(directory, FILES[images_key])
    labels_path = find_file(directory, FILES[labels_key])
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(f"{directory}: {images_path.name} has {len(images)} images but {labels_path.name} has {len(labels)} labels")
    return images, labels

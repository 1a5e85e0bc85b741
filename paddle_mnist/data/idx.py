"""The IDX format of the official MNIST and Fashion-MNIST files, gzip-compressed or raw.

IDX: big-endian int32 magic (2051 images, 2049 labels), int32 count, for
images int32 rows and cols, then uint8 data row-major.  The header says how
many bytes follow, so a file is checked against it before its data is read.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from paddle_mnist.data.files import max_bytes, open_data
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


def _read_header(stream: BinaryIO, path: Path, fields: int, what: str) -> tuple[int, ...]:
    size = 4 * fields
    head = stream.read(size)
    if len(head) < size:
        raise DataError(f"{path}: {len(head)} bytes is too short for an IDX {what} header")
    return struct.unpack(">" + "i" * fields, head)


def _read_body(stream: BinaryIO, path: Path, header_size: int, count: int, item_size: int, what: str) -> np.ndarray:
    """Exactly ``count * item_size`` bytes after the header, refused before reading when implausible."""
    expected = header_size + count * item_size
    if count < 0 or count * item_size > max_bytes():
        raise DataError(f"{path}: the header announces {count} {what}, over the size limit for MNIST-family data")
    body = stream.read(count * item_size + 1)
    if len(body) < count * item_size:
        raise DataError(f"{path}: {header_size + len(body)} bytes, but the header's {count} {what} need {expected}")
    if len(body) > count * item_size:
        raise DataError(f"{path}: longer than the {expected} bytes the header's {count} {what} need")
    return np.frombuffer(body, dtype=np.uint8)


def read_images(path: Path) -> np.ndarray:
    """uint8 array [N, 28, 28]; the header must match the file's size exactly."""
    with open_data(path) as stream:
        magic, count, rows, cols = _read_header(stream, path, 4, "image")
        if magic != IMAGES_MAGIC:
            raise DataError(f"{path}: magic number {magic}, expected {IMAGES_MAGIC} for IDX images")
        if (rows, cols) != (28, 28):
            raise DataError(f"{path}: images are {rows}x{cols}, expected 28x28")
        return _read_body(stream, path, 16, count, rows * cols, "images").reshape(count, rows, cols)


def read_labels(path: Path) -> np.ndarray:
    """uint8 array [N] of digits 0..9."""
    with open_data(path) as stream:
        magic, count = _read_header(stream, path, 2, "label")
        if magic != LABELS_MAGIC:
            raise DataError(f"{path}: magic number {magic}, expected {LABELS_MAGIC} for IDX labels")
        labels = _read_body(stream, path, 8, count, 1, "labels")
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{path}: label {bad} is {labels[bad]}, expected 0..9")
    return labels


def read_pair(directory: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = find_file(directory, FILES[images_key])
    labels_path = find_file(directory, FILES[labels_key])
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{directory}: {images_path.name} has {len(images)} images but {labels_path.name} has {len(labels)} labels"
        )
    return images, labels

"""IDX directories: the split policy, and a one-line error for each kind of bad file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from paddle_mnist.data import idx, splits
from paddle_mnist.errors import DataError
from paddle_mnist.testing.data_files import random_splits, write_idx_dir, write_idx_file


def idx_fixture(tmp_path, compress=True):
    raw = random_splits(sizes={"train": 18, "test": 5})
    return raw, write_idx_dir(tmp_path / "idx", raw["train"], raw["test"], compress=compress)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_dir_uses_the_tutorial_split(tmp_path, compress):
    raw, directory = idx_fixture(tmp_path, compress)
    data = splits.load(directory)
    (train_x, train_y), (test_x, _) = raw["train"], raw["test"]
    np.testing.assert_array_equal(data.splits["train"].pixels, train_x[:15])
    np.testing.assert_array_equal(data.splits["valid"].class_ids, train_y[15:])
    np.testing.assert_array_equal(data.splits["eval"].pixels, test_x)
    assert data.encoding.name == "pixel/256"


def rewrite(directory, key, magic, array, header=None):
    stem = directory / idx.FILES[key]
    stem.with_name(stem.name + ".gz").unlink()
    write_idx_file(stem, magic, array, header=header)


def test_bad_magic(tmp_path):
    raw, directory = idx_fixture(tmp_path)
    rewrite(directory, "train_images", 2049, raw["train"][0])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: magic number 2049, expected 2051"):
        splits.load(directory)


def test_count_disagrees_with_size(tmp_path):
    raw, directory = idx_fixture(tmp_path)
    rewrite(directory, "test_images", idx.IMAGES_MAGIC, raw["test"][0], header=(6, 28, 28))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: 3936 bytes, but the header's 6 images need 4720"):
        splits.load(directory)


def test_wrong_image_size(tmp_path):
    raw, directory = idx_fixture(tmp_path)
    rewrite(directory, "test_images", idx.IMAGES_MAGIC, raw["test"][0], header=(5, 32, 24))
    with pytest.raises(DataError, match="images are 32x24, expected 28x28"):
        splits.load(directory)


def test_label_out_of_range(tmp_path):
    raw, directory = idx_fixture(tmp_path)
    labels = raw["train"][1].copy()
    labels[4] = 12
    rewrite(directory, "train_labels", idx.LABELS_MAGIC, labels)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: label 4 is 12, expected 0..9"):
        splits.load(directory)


def test_images_and_labels_disagree(tmp_path):
    raw, directory = idx_fixture(tmp_path)
    rewrite(directory, "train_labels", idx.LABELS_MAGIC, raw["train"][1][:-1])
    with pytest.raises(DataError, match="has 18 images but train-labels-idx1-ubyte.gz has 17 labels"):
        splits.load(directory)


def test_truncated_gzip(tmp_path):
    _, directory = idx_fixture(tmp_path)
    path = directory / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: truncated gzip"):
        splits.load(directory)


def test_short_header(tmp_path):
    _, directory = idx_fixture(tmp_path)
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00"))
    with pytest.raises(DataError, match="too short for an IDX label header"):
        splits.load(directory)


def test_incomplete_dir_names_missing_files(tmp_path):
    _, directory = idx_fixture(tmp_path)
    (directory / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-images-idx3-ubyte"):
        splits.load(directory)

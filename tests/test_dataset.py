"""MnistDataset: the tutorial's item contract, the whole-split arrays, and the real files."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from paddle_mnist import data
from paddle_mnist.data import splits
from paddle_mnist.data.encoding import TUTORIAL_ENCODING
from paddle_mnist.errors import DataError
from paddle_mnist.testing.data_files import json_payload, random_splits, write_json


@pytest.fixture
def tiny(tmp_path):
    raw = random_splits()
    return raw, write_json(tmp_path / "m.json.gz", json_payload(raw))


def test_item_contract(tiny):
    raw, path = tiny
    ds = data.MnistDataset("train", path)
    image, label = ds[3]
    assert image.shape == (1, 28, 28) and image.dtype == np.float32
    assert label.shape == (1,) and label.dtype == np.int64 and label[0] == raw["train"][1][3]
    np.testing.assert_array_equal(image[0], raw["train"][0][3] / np.float32(256))
    assert len(ds) == 12 and len(data.MnistDataset("valid", path)) == 6


def test_regression_labels_and_test_alias(tiny):
    raw, path = tiny
    ds = data.MnistDataset("test", path, label_dtype="float32")
    assert ds.mode == "eval" and ds[0][1].dtype == np.float32 and ds[0][1][0] == raw["eval"][1][0]


def test_train_plus_valid_is_both_splits_in_order(tiny):
    raw, path = tiny
    ds = data.MnistDataset("train+valid", path)
    assert ds.mode == "train+valid" and len(ds) == 18
    np.testing.assert_array_equal(ds[12][0][0], raw["valid"][0][0] / np.float32(256))
    assert ds[12][1][0] == raw["valid"][1][0] and ds[11][1][0] == raw["train"][1][11]
    assert len(data.MnistDataset("train+valid", path, limit=5)) == 5


def test_whole_split_arrays_match_items(tiny):
    _, path = tiny
    ds = data.MnistDataset("valid", path)
    assert ds.images.shape == (6, 1, 28, 28) and ds.labels.shape == (6, 1)
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds.images[i], ds[i][0])
        np.testing.assert_array_equal(ds.labels[i], ds[i][1])


def test_works_with_paddle_dataloader(tiny):
    _, path = tiny
    loader = paddle.io.DataLoader(data.MnistDataset("train", path), batch_size=5, shuffle=False, drop_last=True)
    images, labels = next(iter(loader()))
    assert images.shape == [5, 1, 28, 28] and labels.shape == [5, 1] and labels.dtype == paddle.int64


def test_transform_is_applied(tiny):
    _, path = tiny
    ds = data.MnistDataset("train", path, transform=lambda x: 1 - x)
    np.testing.assert_allclose(ds[0][0], 1 - data.MnistDataset("train", path)[0][0])


def test_bad_arguments(tiny):
    _, path = tiny
    with pytest.raises(DataError, match="unknown mode 'training': choose train, valid, eval"):
        data.MnistDataset("training", path)
    with pytest.raises(DataError, match="unknown label dtype"):
        data.MnistDataset("train", path, label_dtype="int32")
    with pytest.raises(DataError, match="unknown dataset 'kmnist'"):
        data.MnistDataset("train", path, dataset="kmnist")


# --- the real files --------------------------------------------------------


def test_real_json_matches_the_tutorial(shared_json):
    train = data.MnistDataset("train", shared_json)
    assert len(train) == 50_000 and train[0][1][0] == 5
    expected = np.array([3, 18, 18, 18, 126, 136, 175, 26, 166, 255, 247, 127]) / 256
    np.testing.assert_array_equal(train[0][0][0, 5, 12:24], expected.astype(np.float32))
    assert len(data.MnistDataset("valid", shared_json)) == 10_000
    evaluation = data.MnistDataset("eval", shared_json)
    assert len(evaluation) == 10_000 and evaluation[0][1][0] == 7


def test_idx_and_json_hold_identical_arrays(shared_json, shared_idx):
    from_json, from_idx = splits.load(shared_json), splits.load(shared_idx)
    assert from_json.encoding == from_idx.encoding == TUTORIAL_ENCODING
    for name in splits.SPLITS:
        np.testing.assert_array_equal(from_json.splits[name].pixels, from_idx.splits[name].pixels)
        np.testing.assert_array_equal(from_json.splits[name].class_ids, from_idx.splits[name].class_ids)


def test_prepare_reproduces_the_shared_json(shared_json, shared_idx, tmp_path):
    out = tmp_path / "prepared.json.gz"
    assert data.main(["prepare", "--idx", str(shared_idx), "--out", str(out)]) == 0
    prepared, original = splits.load(out), splits.load(shared_json)
    for name in splits.SPLITS:
        np.testing.assert_array_equal(prepared.splits[name].pixels, original.splits[name].pixels)
        np.testing.assert_array_equal(prepared.splits[name].class_ids, original.splits[name].class_ids)


def test_fashion_mnist_from_debian(debian_fashion):
    train = data.MnistDataset("train", dataset="fashion-mnist")
    assert train.source == debian_fashion
    assert len(train) == 50_000 and len(data.MnistDataset("eval", dataset="fashion-mnist")) == 10_000
    assert train.classes[9] == "Ankle boot" and train.classes[train.class_ids[0]] == "Ankle boot"
    assert np.bincount(data.MnistDataset("eval", dataset="fashion-mnist").class_ids).tolist() == [1000] * 10

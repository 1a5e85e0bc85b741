"""The data search order, and the message when nothing is found."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from paddle_mnist.data import cache, locate
from paddle_mnist.errors import DataError
from paddle_mnist.testing.data_files import json_payload, random_splits, write_idx_dir, write_json


@pytest.fixture
def everywhere(tmp_path):
    """A data source in every place the search visits."""
    raw = random_splits(sizes={"train": 6, "test": 2})
    places = {
        "explicit": write_json(tmp_path / "given.json.gz", json_payload(random_splits())),
        "env": write_json(tmp_path / "env.json.gz", json_payload(random_splits())),
        "work": write_json(Path("work") / "mnist.json.gz", json_payload(random_splits())),
        "cache json": write_json(cache.cache_dir() / "mnist.json.gz", json_payload(random_splits())),
        "cache idx": write_idx_dir(cache.cache_dir() / "mnist-idx", raw["train"], raw["test"]),
        "paddle cache": write_idx_dir(Path.home() / locate.PADDLE_CACHE_SUBDIR, raw["train"], raw["test"]),
    }
    return places


def test_search_order(everywhere, monkeypatch):
    monkeypatch.setenv("PADDLE_MNIST_DATA", str(everywhere["env"]))
    assert locate.find(everywhere["explicit"]) == locate.Found(everywhere["explicit"], "the path given")
    order = ["env", "work", "cache json", "cache idx", "paddle cache"]
    for name in order:
        assert locate.find(None).path.resolve() == everywhere[name].resolve(), name
        if name == "env":
            monkeypatch.delenv("PADDLE_MNIST_DATA")
        elif everywhere[name].is_dir():
            shutil.rmtree(everywhere[name])
        else:
            everywhere[name].unlink()
    with pytest.raises(DataError, match="no MNIST data found.*pass --data PATH.*PADDLE_MNIST_DATA"):
        locate.find(None)


def test_directory_holding_the_json_file(tmp_path):
    path = write_json(tmp_path / "d" / "mnist.json.gz", json_payload(random_splits()))
    assert locate.find(tmp_path / "d").path == path


def test_bad_explicit_paths(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"nope\.json\.gz: no such file or directory \(from the path given\)"):
        locate.find(tmp_path / "nope.json.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: neither mnist.json.gz nor a complete set of IDX files"):
        locate.find(tmp_path / "empty")
    monkeypatch.setenv("PADDLE_MNIST_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"gone: no such file or directory \(from \$PADDLE_MNIST_DATA\)"):
        locate.find(None)


def test_fashion_search(tmp_path, monkeypatch):
    monkeypatch.setattr(locate, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError, match="no Fashion-MNIST data found.*apt-get install dataset-fashion-mnist"):
        locate.find(None, "fashion-mnist")
    raw = random_splits(sizes={"train": 6, "test": 2})
    directory = write_idx_dir(tmp_path / "fashion", raw["train"], raw["test"])
    monkeypatch.setenv("PADDLE_MNIST_FASHION_DATA", str(directory))
    assert locate.find(None, "fashion-mnist") == locate.Found(directory, "$PADDLE_MNIST_FASHION_DATA")

"""The parsed-data cache: a hit skips parsing, a changed source misses, a corrupt file is rebuilt."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mnist.data import cache, splits, tutorial_json
from paddle_mnist.testing.data_files import json_payload, random_splits, write_json


@pytest.fixture
def source(tmp_path):
    return write_json(tmp_path / "m.json.gz", json_payload(random_splits()))


def cache_files():
    return sorted(cache.cache_dir().glob("splits-*.npz"))


def count_parses(monkeypatch):
    calls = []
    real = tutorial_json.read
    monkeypatch.setattr(tutorial_json, "read", lambda *a: calls.append(1) or real(*a))
    return calls


def reload(path):
    return splits.load(path)


def test_miss_then_hit(source, monkeypatch):
    parses = count_parses(monkeypatch)
    first = reload(source)
    assert len(parses) == 1 and len(cache_files()) == 1
    second = reload(source)
    assert len(parses) == 1, "a warm load must not parse the JSON again"
    np.testing.assert_array_equal(first.splits["train"].pixels, second.splits["train"].pixels)
    assert second.encoding == first.encoding


def test_changed_source_is_a_miss(source, monkeypatch):
    reload(source)
    write_json(source, json_payload(random_splits(seed=9)))
    parses = count_parses(monkeypatch)
    data = reload(source)
    assert len(parses) == 1 and len(cache_files()) == 2
    np.testing.assert_array_equal(data.splits["eval"].class_ids, random_splits(seed=9)["eval"][1])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong arrays"])
def test_corrupt_cache_is_rebuilt(source, monkeypatch, capsys, damage):
    reload(source)
    [path] = cache_files()
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    else:
        np.savez(path, key=np.array(cache.content_key([source])), train_pixels=np.zeros(3))
    parses = count_parses(monkeypatch)
    data = reload(source)
    assert len(parses) == 1
    assert "unreadable" in capsys.readouterr().err
    np.testing.assert_array_equal(data.splits["train"].pixels, random_splits()["train"][0])
    assert reload(source).splits["train"].pixels.shape == (12, 28, 28) and len(parses) == 1


def test_failed_write_leaves_no_file(source, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    reload(source)
    assert cache_files() == [] and list(cache.cache_dir().iterdir()) == []


def test_the_same_data_under_another_name_hits_the_cache(shared_json, tmp_path, monkeypatch):
    """A link or a copy of the data under another name is the same content: one cache file, no parse."""
    import shutil
    import time

    splits.load(shared_json)  # the session's cache is warm from here on
    before = cache_files()
    alias = tmp_path / "another-name.json.gz"
    alias.symlink_to(shared_json)
    copy = shutil.copy(shared_json, tmp_path / "copy.json.gz")
    parses = count_parses(monkeypatch)
    for path in (alias, copy):
        start = time.perf_counter()
        data = splits.load(path)
        seconds = time.perf_counter() - start
        assert len(data.splits["train"].pixels) == 50_000 and seconds < 3, seconds  # a cold parse takes ~10 s
    assert parses == [] and cache_files() == before

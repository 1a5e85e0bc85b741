"""The download path, against an http.server on 127.0.0.1 that each test starts and stops."""
from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from fixtures import random_splits, write_idx_dir
from paddle_mnist.data import cache, download, idx, splits
from paddle_mnist.errors import DataError


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path):
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def md5_of_gz(path: Path) -> str:
    return hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest()


@pytest.fixture
def mirrors(tmp_path, monkeypatch):
    """A good mirror and one whose train labels are corrupted, both of tiny fixture files."""
    raw = random_splits(sizes={"train": 12, "test": 4})
    good = write_idx_dir(tmp_path / "good", raw["train"], raw["test"])
    monkeypatch.setattr(download, "OFFICIAL_MD5", {stem: md5_of_gz(good / (stem + ".gz")) for stem in idx.FILES.values()})
    bad = write_idx_dir(tmp_path / "bad", raw["train"], raw["test"])
    labels = bad / "train-labels-idx1-ubyte.gz"
    flipped = bytearray(gzip.decompress(labels.read_bytes()))
    flipped[-1] ^= 1
    labels.write_bytes(gzip.compress(bytes(flipped)))
    with serve(good) as good_url, serve(bad) as bad_url:
        yield raw, good_url, bad_url


def enable_download(monkeypatch, urls):
    monkeypatch.delenv("PADDLE_MNIST_OFFLINE")
    monkeypatch.setenv("PADDLE_MNIST_MIRRORS", ",".join(urls))


def test_download_through_the_locator(mirrors, monkeypatch, capsys):
    raw, good_url, _ = mirrors
    enable_download(monkeypatch, [good_url])
    data = splits.load()
    assert data.source == cache.cache_dir() / "mnist-idx"
    np.testing.assert_array_equal(data.splits["eval"].pixels, raw["test"][0])
    assert "downloading train-images-idx3-ubyte.gz 100%" in capsys.readouterr().err


def test_corrupted_file_is_rejected_and_next_mirror_used(mirrors, monkeypatch):
    raw, good_url, bad_url = mirrors
    enable_download(monkeypatch, [bad_url, good_url])
    data = splits.load()
    np.testing.assert_array_equal(data.splits["train"].class_ids, raw["train"][1][:10])


def test_only_corrupted_mirror_fails_and_caches_nothing(mirrors, monkeypatch):
    _, _, bad_url = mirrors
    enable_download(monkeypatch, [bad_url])
    with pytest.raises(DataError, match=r"could not download train-labels-idx1-ubyte.gz from any mirror: .*uncompressed MD5"):
        splits.load()
    target = cache.cache_dir() / "mnist-idx"
    assert not (target / "train-labels-idx1-ubyte.gz").exists()
    assert sorted(p.name for p in target.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_unreachable_mirror_is_retried_then_reported(tmp_path, monkeypatch):
    with serve(tmp_path) as url:
        pass  # the server is gone: connections are refused
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz from any mirror"):
        download.download_idx(tmp_path / "dest", [url], retries=2, backoff=0.01, timeout=2)
    with serve(tmp_path) as url:  # 404: a client error is not retried
        with pytest.raises(DataError, match="HTTP 404"):
            download.download_idx(tmp_path / "dest", [url], retries=3, backoff=10, timeout=2)


def test_real_files_verify_against_the_canonical_md5s(shared_idx, tmp_path):
    """The official checksums (not patched) accept the real files served over HTTP."""
    with serve(shared_idx) as url:
        dest = download.download_idx(tmp_path / "dest", [url])
    assert idx.missing_files(dest) == []

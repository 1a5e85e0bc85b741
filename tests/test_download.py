"""The download path, against an http.server on 127.0.0.1 that each test starts and stops."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import http.server
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from paddle_mnist.data import cache, download, idx, locate, splits
from paddle_mnist.errors import DataError
from paddle_mnist.testing.data_files import random_splits, write_idx_dir


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def running(handler):
    """An HTTP server on 127.0.0.1 (a free port) with ``handler``; its base URL.  On exit it stops
    without waiting for slow handlers, whose own loops are bounded."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.block_on_close = True, False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve(directory: Path):
    return running(functools.partial(QuietHandler, directory=str(directory)))


def patch_official(monkeypatch, dataset: str, **fields):
    """The canonical checksums or sizes replaced for this test (tiny fixture files stand in for the real ones)."""
    monkeypatch.setitem(download.OFFICIAL, dataset, dataclasses.replace(download.OFFICIAL[dataset], **fields))


def md5_of_gz(path: Path) -> str:
    return hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest()


@pytest.fixture
def mirrors(tmp_path, monkeypatch):
    """A good mirror and one whose train labels are corrupted, both of tiny fixture files."""
    raw = random_splits(sizes={"train": 12, "test": 4})
    good = write_idx_dir(tmp_path / "good", raw["train"], raw["test"])
    patch_official(monkeypatch, "mnist", md5={stem: md5_of_gz(good / (stem + ".gz")) for stem in idx.FILES.values()})
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
    with pytest.raises(
        DataError, match=r"could not download train-labels-idx1-ubyte.gz from any mirror: .*uncompressed MD5"
    ):
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


# --- hostile mirrors ------------------------------------------------------------------------


class HostileHandler(http.server.BaseHTTPRequestHandler):
    """``/endless/...`` streams zeros with no length; ``/huge/...`` announces 10 GB; ``/drip/...`` sends a
    byte every 0.2 s.  Every loop is bounded, so a broken client cannot keep the test running."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode = self.path.split("/")[1]
        self.send_response(200)
        if mode == "huge":
            self.send_header("Content-Length", str(10 << 30))
        self.end_headers()
        try:
            for _ in range(200 if mode == "endless" else 50):
                self.wfile.write(b"\0" * (1 << 16) if mode == "endless" else b"\0")
                self.wfile.flush()
                if mode == "drip":
                    time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.mark.parametrize(
    "mode, message, deadline",
    [
        ("endless", "sent more than the real file's", 60),
        ("huge", "announces 10,737,418,240 bytes, more than the real file's", 60),
        ("drip", "not finished after 1 s", 1),
        ("drip", r"bytes in \d+ s, under 1,024 bytes/s", 60),
    ],
)
def test_hostile_mirrors_are_bounded(tmp_path, monkeypatch, mode, message, deadline):
    patch_official(monkeypatch, "mnist", sizes={stem: 100_000 for stem in download.IDX_SIZES})
    monkeypatch.setattr(download, "STALL_AFTER_S", 1.0)
    start = time.monotonic()
    with running(HostileHandler) as base:
        with pytest.raises(DataError, match=message):
            download.download_idx(tmp_path / "dest", [f"{base}{mode}/"], retries=1, timeout=5, deadline=deadline)
    assert time.monotonic() - start < 10
    assert list((tmp_path / "dest").iterdir()) == [], "no partial or temporary file is kept"


def test_sigterm_mid_download_removes_the_temp_file(tmp_path):
    code = (
        "import sys; from pathlib import Path; from paddle_mnist.data import download; "
        "download.download_idx(Path(sys.argv[1]), [sys.argv[2]], retries=1, timeout=5, deadline=60)"
    )
    with running(HostileHandler) as base:
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "dest"), f"{base}drip/"], stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60  # generous: CI's 2 cores may be busy
        while not any((tmp_path / "dest").glob(".*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any((tmp_path / "dest").glob(".*.tmp")), "the download should be under way"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 128 + signal.SIGTERM, child.stderr.read().decode()[-2000:]
    assert list((tmp_path / "dest").iterdir()) == []


def test_fashion_mnist_downloads_through_the_locator(tmp_path, monkeypatch):
    raw = random_splits(sizes={"train": 12, "test": 4})
    mirror = write_idx_dir(tmp_path / "fashion-mirror", raw["train"], raw["test"])
    patch_official(
        monkeypatch, "fashion-mnist", md5={stem: md5_of_gz(mirror / (stem + ".gz")) for stem in idx.FILES.values()}
    )
    monkeypatch.setattr(locate, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.delenv("PADDLE_MNIST_OFFLINE")
    with serve(mirror) as url:
        monkeypatch.setenv("PADDLE_MNIST_FASHION_MIRRORS", url)
        data = splits.load(dataset="fashion-mnist")
    assert data.source == cache.cache_dir() / "fashion-mnist-idx" and data.origin == "a download"
    np.testing.assert_array_equal(data.splits["eval"].pixels, raw["test"][0])
    assert data.classes[9] == "Ankle boot"


def test_real_fashion_files_verify_against_their_checksums(debian_fashion, tmp_path):
    with serve(debian_fashion) as url:
        dest = download.download_idx(tmp_path / "dest", [url], dataset="fashion-mnist")
    assert idx.missing_files(dest) == []

"""Download the four official IDX files of MNIST or Fashion-MNIST from a list of mirrors, verified by MD5.

A file only reaches its final name after its uncompressed MD5 matches the
canonical one, so a corrupted or truncated download is never cached.  A mirror
is untrusted: each file is capped near its known size (compressed and
decompressed), each attempt has a connect/read timeout, an overall deadline and
a minimum average rate, and the temporary file is removed on any failure,
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from paddle_mnist.errors import DataError
from paddle_mnist.fileio import atomic_path
from paddle_mnist.progress import Progress


@dataclass(frozen=True)
class Official:
    """A data set's four canonical files (uncompressed MD5 and size of each) and where to fetch them."""

    md5: dict[str, str]
    sizes: dict[str, int]
    mirrors: tuple[str, ...]
    mirrors_env: str  # the variable that replaces ``mirrors``


IDX_SIZES = {  # both data sets: 60,000 + 10,000 images of 28x28
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}
OFFICIAL = {
    "mnist": Official(  # ../shared/data/README.md
        {
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        IDX_SIZES,
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        "PADDLE_MNIST_MIRRORS",
    ),
    "fashion-mnist": Official(  # Zalando's files, as Debian's dataset-fashion-mnist ships them
        {
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        IDX_SIZES,
        (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        "PADDLE_MNIST_FASHION_MIRRORS",
    ),
}
GZIP_SLACK = 1 << 16  # gzip never grows data by more than a few bytes per 32 KB block


STALL_AFTER_S, MIN_RATE = 20.0, 1024  # a mirror averaging under 1 KB/s after 20 s is given up


class BadMirror(Exception):
    """The mirror served something other than the canonical file, or crawls: trying it again will not help."""


def mirrors(dataset: str = "mnist") -> list[str]:
    """``$PADDLE_MNIST_MIRRORS`` (``$PADDLE_MNIST_FASHION_MIRRORS``): comma- or space-separated base URLs;
    else the defaults."""
    official = OFFICIAL[dataset]
    configured = os.environ.get(official.mirrors_env, "").strip()
    urls = re.split(r"[,\s]+", configured) if configured else list(official.mirrors)
    return [u if u.endswith("/") else u + "/" for u in urls]


def _fetch(url: str, dest: Path, cap: int, timeout: float, deadline: float) -> None:
    """Stream ``url`` into ``dest``: at most ``cap`` bytes, finished within ``deadline`` seconds."""
    name = url.rsplit("/", 1)[-1]
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        if total is not None and total > cap:
            raise BadMirror(f"announces {total:,} bytes, more than the real file's {cap:,}")
        progress, done, start = Progress(f"downloading {name}", total), 0, time.monotonic()
        while chunk := response.read1(1 << 16):  # returns what has arrived, so the deadline is checked
            out.write(chunk)
            done += len(chunk)
            if done > cap:
                raise BadMirror(f"sent more than the real file's {cap:,} bytes")
            elapsed = time.monotonic() - start
            if elapsed > deadline:
                raise TimeoutError(f"not finished after {deadline:.0f} s ({done:,} bytes)")
            if elapsed > STALL_AFTER_S and done < MIN_RATE * elapsed:
                raise BadMirror(f"{done:,} bytes in {elapsed:.0f} s, under {MIN_RATE:,} bytes/s")
            progress.update(done, _size_text(done, total))
    if total is not None and done != total:
        raise OSError(f"connection closed after {done} of {total} bytes")
    progress.finish(_size_text(done, total))


def _size_text(done: int, total: int | None) -> str:
    return f"{100 * done / total:3.0f}% {done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"


def _verify(path: Path, expected_md5: str, size_limit: int) -> None:
    """The uncompressed MD5, reading no more than ``size_limit`` decompressed bytes (a gzip bomb stops there)."""
    digest, size = hashlib.md5(), 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
                if size > size_limit:
                    raise BadMirror(f"decompresses to more than the real file's {size_limit:,} bytes")
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise BadMirror(f"not a valid gzip file ({e})") from None
    if digest.hexdigest() != expected_md5:
        raise BadMirror(f"uncompressed MD5 {digest.hexdigest()}, expected {expected_md5}")


@contextlib.contextmanager
def _sigterm_raises():
    """Turn SIGTERM into SystemExit while downloading, so the temp file's cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _download_one(
    official: Official,
    stem: str,
    dest: Path,
    urls: list[str],
    retries: int,
    backoff: float,
    timeout: float,
    deadline: float,
) -> None:
    failures = []
    size = official.sizes[stem]
    for base in urls:
        url = base + stem + ".gz"
        for attempt in range(retries):
            try:
                with atomic_path(dest / (stem + ".gz")) as tmp:
                    _fetch(url, tmp, size + GZIP_SLACK, timeout, deadline)
                    _verify(tmp, official.md5[stem], size)
                return
            except BadMirror as e:
                failures.append(f"{url}: {e}")
                break  # the mirror serves bad content; retrying will not help
            except urllib.error.HTTPError as e:
                failures.append(f"{url}: HTTP {e.code}")
                if e.code < 500:
                    break
            except (urllib.error.URLError, OSError) as e:
                failures.append(f"{url}: {getattr(e, 'reason', e)}")
            if attempt + 1 < retries:
                time.sleep(backoff * 2**attempt)
    raise DataError(f"could not download {stem}.gz from any mirror: " + "; ".join(failures))


def download_idx(
    dest: Path,
    urls: list[str] | None = None,
    *,
    dataset: str = "mnist",
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    deadline: float = 600.0,
) -> Path:
    """Fetch whichever of ``dataset``'s four files ``dest`` lacks; return ``dest``.

    ``timeout`` bounds connecting and each read; ``deadline`` one whole attempt at one file.
    """
    official = OFFICIAL[dataset]
    urls = urls or mirrors(dataset)
    dest.mkdir(parents=True, exist_ok=True)
    with _sigterm_raises():
        for stem in official.md5:
            if not (dest / (stem + ".gz")).is_file():
                _download_one(official, stem, dest, urls, retries, backoff, timeout, deadline)
    return dest

"""Download the four official MNIST IDX files from a list of mirrors, verified by MD5.

A file only reaches its final name after its uncompressed MD5 matches the
canonical one, so a corrupted or truncated download is never cached.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from paddle_mnist.errors import DataError
from paddle_mnist.fileio import atomic_path

# Uncompressed MD5s of the canonical files (../shared/data/README.md).
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class ChecksumError(Exception):
    pass


def mirrors() -> list[str]:
    """``$PADDLE_MNIST_MIRRORS`` (comma- or space-separated base URLs), else the defaults."""
    configured = os.environ.get("PADDLE_MNIST_MIRRORS", "").strip()
    urls = re.split(r"[,\s]+", configured) if configured else list(DEFAULT_MIRRORS)
    return [u if u.endswith("/") else u + "/" for u in urls]


def _progress(name: str, done: int, total: int | None, final: bool = False) -> None:
    """One updating line on a terminal; only the final line when piped."""
    if not (final or sys.stderr.isatty()):
        return
    size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
    percent = f" {100 * done / total:3.0f}%" if total else ""
    end = "\n" if final else ""
    print(f"\rdownloading {name}{percent} {size}", end=end, file=sys.stderr, flush=True)


def _fetch(url: str, dest: Path, timeout: float) -> None:
    name = url.rsplit("/", 1)[-1]
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        done = 0
        while chunk := response.read(1 << 16):
            out.write(chunk)
            done += len(chunk)
            _progress(name, done, total)
    if total is not None and done != total:
        raise OSError(f"connection closed after {done} of {total} bytes")
    _progress(name, done, total, final=True)


def _verify(path: Path, expected_md5: str) -> None:
    digest = hashlib.md5()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise ChecksumError(f"not a valid gzip file ({e})") from None
    if digest.hexdigest() != expected_md5:
        raise ChecksumError(f"uncompressed MD5 {digest.hexdigest()}, expected {expected_md5}")


def _download_one(stem: str, dest: Path, urls: list[str], retries: int, backoff: float, timeout: float) -> None:
    failures = []
    for base in urls:
        url = base + stem + ".gz"
        for attempt in range(retries):
            try:
                with atomic_path(dest / (stem + ".gz")) as tmp:
                    _fetch(url, tmp, timeout)
                    _verify(tmp, OFFICIAL_MD5[stem])
                return
            except ChecksumError as e:
                failures.append(f"{url}: {e}")
                break  # the mirror serves bad content; retrying will not help
            except urllib.error.HTTPError as e:
                failures.append(f"{url}: HTTP {e.code}")
                if e.code < 500:
                    break
            except (urllib.error.URLError, OSError) as e:
                failures.append(f"{url}: {getattr(e, 'reason', e)}")
            if attempt + 1 < retries:
                time.sleep(backoff * 2 ** attempt)
    raise DataError(f"could not download {stem}.gz from any mirror: " + "; ".join(failures))


def download_idx(dest: Path, urls: list[str] | None = None, *, retries: int = 3,
                 backoff: float = 1.0, timeout: float = 30.0) -> Path:
    """Fetch whichever of the four files ``dest`` lacks; return ``dest``."""
    urls = urls or mirrors()
    dest.mkdir(parents=True, exist_ok=True)
    for stem in OFFICIAL_MD5:
        if not (dest / (stem + ".gz")).is_file():
            _download_one(stem, dest, urls, retries, backoff, timeout)
    return dest

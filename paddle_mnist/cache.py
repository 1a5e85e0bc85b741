"""A compact on-disk cache of parsed splits, keyed by the source files' content.

Parsing the tutorial's JSON costs seconds; the same data as uint8 arrays in an
uncompressed ``.npz`` loads in a fraction of that.  The key is a SHA-256 of the
source bytes, so an edited or replaced source is never served stale, and a
cache file that does not load cleanly is deleted and rebuilt.
"""
from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from paddle_mnist.fileio import atomic_path

FORMAT_VERSION = 1


def cache_dir() -> Path:
    """``$PADDLE_MNIST_CACHE``, else ``$XDG_CACHE_HOME/paddle_mnist``, else ``~/.cache/paddle_mnist``."""
    if os.environ.get("PADDLE_MNIST_CACHE"):
        return Path(os.environ["PADDLE_MNIST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "paddle_mnist"


def content_key(files: list[Path]) -> str:
    digest = hashlib.sha256(f"v{FORMAT_VERSION}".encode())
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def _path_for(key: str) -> Path:
    return cache_dir() / f"splits-{key[:32]}.npz"


def load(key: str, decode):
    """``decode(arrays)`` of the cache file for ``key``; None on a miss.

    A file that fails to load or to decode (``decode`` raises KeyError or
    ValueError) is treated as corrupt: removed, reported and rebuilt.
    """
    path = _path_for(key)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        if str(arrays.pop("key")) != key:
            raise ValueError("key mismatch")
        return decode(arrays)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        print(f"paddle-mnist: cache file {path} is unreadable ({e}); rebuilding it", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None


def save(key: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write the cache atomically; a read-only cache dir only costs speed, so it is not fatal."""
    path = _path_for(key)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), **arrays)
    except OSError as e:
        print(f"paddle-mnist: could not write cache {path} ({e}); continuing without it", file=sys.stderr)
        return None
    return path

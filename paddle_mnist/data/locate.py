"""Where the data is: the documented search order, ending in a verified download."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from paddle_mnist.data import cache, download, idx
from paddle_mnist.errors import DataError

TUTORIAL_FILE = "mnist.json.gz"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
PADDLE_CACHE_SUBDIR = Path(".cache", "paddle", "dataset", "mnist")  # under $HOME


@dataclass(frozen=True)
class Found:
    """A data source (a JSON file or an IDX directory) and which step of the search found it."""

    path: Path
    origin: str


def _usable(path: Path) -> Path | None:
    """``path`` as a data source: a JSON file, a complete IDX directory, or a directory holding either."""
    if path.is_file():
        return path
    if path.is_dir():
        if not idx.missing_files(path):
            return path
        if (path / TUTORIAL_FILE).is_file():
            return path / TUTORIAL_FILE
    return None


def _explicit(path: Path, origin: str) -> Found:
    found = _usable(path)
    if found is not None:
        return Found(found, origin)
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file or directory (from {origin})")
    if not path.is_dir():
        raise DataError(f"{path}: not a regular file or directory (from {origin})")
    missing = ", ".join(idx.missing_files(path))
    raise DataError(
        f"{path}: neither {TUTORIAL_FILE} nor a complete set of IDX files (missing {missing}) (from {origin})"
    )


def _how_to(dataset: str, looked: list[Path]) -> str:
    places = ", ".join(str(p) for p in looked)
    if dataset == "fashion-mnist":
        return (
            f"no Fashion-MNIST data found (looked in {places}) and downloads are off (PADDLE_MNIST_OFFLINE); "
            f"install Debian's package (apt-get install dataset-fashion-mnist), pass --data DIR with its four "
            f"IDX files, or unset PADDLE_MNIST_OFFLINE to download from {download.mirrors(dataset)}"
        )
    return (
        f"no MNIST data found (looked in {places}) and downloads are off (PADDLE_MNIST_OFFLINE); "
        f"pass --data PATH (a {TUTORIAL_FILE} or a directory of the four IDX files), "
        f"set PADDLE_MNIST_DATA, or unset PADDLE_MNIST_OFFLINE to download from {download.mirrors()}"
    )


def find(path: str | os.PathLike | None, dataset: str = "mnist") -> Found:
    """The data source for ``dataset``, in the order of docs/data.md.

    MNIST: explicit path, $PADDLE_MNIST_DATA, ./work/mnist.json.gz, the cache
    dir, paddle's own download cache, then a download into the cache dir.
    Fashion-MNIST: explicit path, $PADDLE_MNIST_FASHION_DATA, Debian's package,
    the cache dir, then a download into the cache dir.
    """
    if path is not None:
        return _explicit(Path(path), "the path given")
    env_name = "PADDLE_MNIST_FASHION_DATA" if dataset == "fashion-mnist" else "PADDLE_MNIST_DATA"
    if os.environ.get(env_name):
        return _explicit(Path(os.environ[env_name]), f"${env_name}")
    if dataset == "fashion-mnist":
        candidates = [
            (DEBIAN_FASHION_DIR, "Debian's dataset-fashion-mnist"),
            (cache.cache_dir() / "fashion-mnist-idx", "the cache dir"),
        ]
    else:
        candidates = [
            (Path("work") / TUTORIAL_FILE, "the tutorial's work/ dir"),
            (cache.cache_dir() / TUTORIAL_FILE, "the cache dir"),
            (cache.cache_dir() / "mnist-idx", "the cache dir"),
            (Path.home() / PADDLE_CACHE_SUBDIR, "paddle's download cache"),
        ]
    for candidate, origin in candidates:
        found = _usable(candidate)
        if found is not None:
            return Found(found, origin)
    if not os.environ.get("PADDLE_MNIST_OFFLINE"):
        target = cache.cache_dir() / ("fashion-mnist-idx" if dataset == "fashion-mnist" else "mnist-idx")
        return Found(download.download_idx(target, dataset=dataset), "a download")
    raise DataError(_how_to(dataset, [candidate for candidate, _ in candidates]))

"""Opening untrusted data files: regular files only, gzip or raw, bounded reads, one-line errors.

Every reader of a data file (tutorial JSON, IDX, downloads being verified) goes
through ``open_data`` so the ways a file can be bad are named in one place, and
with a decompressed-size limit (``max_bytes``) so a small file cannot decompress into gigabytes.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from paddle_mnist.errors import DataError
from paddle_mnist.fileio import open_regular

GZIP_MAGIC = b"\x1f\x8b"
MAX_BYTES_ENV = "PADDLE_MNIST_MAX_BYTES"
# The tutorial's JSON decompresses to 339 MB and Fashion-MNIST's would be larger;
# 1 GiB admits the MNIST family with room and stops a bomb long before memory runs out.
DEFAULT_MAX_BYTES = 1 << 30


def max_bytes() -> int:
    """The decompressed-size limit: ``$PADDLE_MNIST_MAX_BYTES`` if set, else 1 GiB."""
    value = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_BYTES
    if not value.isdigit() or int(value) < 1:
        raise DataError(f"${MAX_BYTES_ENV} must be a positive number of bytes, got {value!r}")
    return int(value)


@contextlib.contextmanager
def open_data(path: str | os.PathLike, *, gzip_of: str | None = None) -> Iterator[BinaryIO]:
    """A stream of the file's bytes, decompressed when it is gzip.

    ``gzip_of`` names what the file must be a gzip of ("JSON"); without it a
    raw (uncompressed) file is read as it is.  Read errors inside the ``with``
    block come out as one-line ``DataError``s naming ``path``.
    """
    path = Path(path)
    try:
        with open_regular(path, DataError) as raw:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            if gzip_of and not compressed:
                raise DataError(f"{path}: not a gzip file (expected gzip-compressed {gzip_of})")
            with gzip.GzipFile(fileobj=raw) if compressed else raw as stream:
                yield stream
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (the compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip data ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def too_large(path: Path, limit: int) -> DataError:
    return DataError(
        f"{path}: decompresses to more than {limit:,} bytes, the limit for MNIST-family data "
        f"(raise it with ${MAX_BYTES_ENV} if the file is genuine)"
    )

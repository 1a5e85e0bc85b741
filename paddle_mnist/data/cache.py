"""A compact on-disk cache of parsed splits, keyed by the source files' content.

Parsing the tutorial's JSON costs seconds; the same data as uint8 arrays in an
uncompressed ``.npz`` loads in a fraction of that.  The key is a SHA-256 of the
source bytes alone (not their names), so an edited or replaced source is never
served stale and the same data reached through a link or a copy under another
name is one cache file.  Each file also carries a SHA-256 of its own arrays, so
a truncated or edited cache (say, labels rewritten) is rebuilt, not used.  That
is integrity, not authenticity: whoever can write the cache directory can write
a matching digest too, so the cache is trusted as far as its directory is
(docs/data.md, "The cache").  What the arrays must hold is checked by
the caller (``splits``) exactly as strictly as a fresh parse.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from paddle_mnist.errors import UserError
from paddle_mnist.fileio import atomic_path, open_regular

FORMAT_VERSION = 3  # 3: keyed by content alone, with a digest of the arrays
# All of MNIST or Fashion-MNIST as uint8 is 55 MB; anything far larger is not a cache we wrote.
MAX_ARRAY_BYTES = 256 << 20


def cache_dir() -> Path:
    """``$PADDLE_MNIST_CACHE``, else ``$XDG_CACHE_HOME/paddle_mnist``, else ``~/.cache/paddle_mnist``."""
    if os.environ.get("PADDLE_MNIST_CACHE"):
        return Path(os.environ["PADDLE_MNIST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "paddle_mnist"


def content_key(files: list[Path]) -> str:
    """The key of a source's files, in their fixed order (an IDX directory's four files each have a role)."""
    digest = hashlib.sha256(f"v{FORMAT_VERSION}:{len(files)}".encode())
    for path in files:
        with open_regular(path) as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """A SHA-256 of the arrays' names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\0".encode())
        digest.update(array.data)
    return digest.hexdigest()


def path_for(key: str) -> Path:
    return cache_dir() / f"splits-{key[:32]}.npz"


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> np.ndarray:
    """One npy member, read only after its header is checked against the member's real size.

    ``np.load`` allocates what a header announces before reading, so a few
    bytes of header could otherwise claim terabytes.
    """
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
        if dtype.hasobject:
            raise ValueError(f"{member.filename} holds Python objects")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if nbytes > member.file_size:
            raise ValueError(f"{member.filename} announces more data than it holds")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"{member.filename} is truncated")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a stored (uncompressed) npz whose members add up to a plausible size."""
    with open_regular(path) as f, zipfile.ZipFile(f) as archive:
        members = archive.infolist()
        if any(m.compress_type != zipfile.ZIP_STORED for m in members):
            raise ValueError("compressed members, which this cache never writes")
        if sum(m.file_size for m in members) > MAX_ARRAY_BYTES:
            raise ValueError(f"its arrays add up to more than {MAX_ARRAY_BYTES:,} bytes")
        return {m.filename.removesuffix(".npy"): _read_member(archive, m) for m in members}


def load(key: str) -> dict[str, np.ndarray] | None:
    """The arrays cached under ``key``, or None on a miss (an unreadable file is removed)."""
    path = path_for(key)
    if not os.path.lexists(path):
        return None
    try:
        arrays = _read_arrays(path)
        if str(arrays.pop("key", "")) != key:
            raise ValueError("key mismatch")
        if str(arrays.pop("digest", "")) != arrays_digest(arrays):
            raise ValueError("its arrays do not match their digest: truncated or edited")
        return arrays
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UserError) as e:
        discard(key, str(e))
        return None


def discard(key: str, why: str) -> None:
    """Remove a cache file that did not hold what it should; the caller rebuilds it."""
    path = path_for(key)
    print(f"paddle-mnist: cache file {path} is unreadable ({why}); rebuilding it", file=sys.stderr)
    try:
        path.unlink(missing_ok=True)
    except OSError:  # a directory planted there: the rebuilt cache cannot be written, which only costs speed
        pass


def save(key: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write the cache atomically; a read-only cache dir only costs speed, so it is not fatal."""
    path = path_for(key)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), digest=np.array(arrays_digest(arrays)), **arrays)
    except OSError as e:
        print(f"paddle-mnist: could not write cache {path} ({e}); continuing without it", file=sys.stderr)
        return None
    return path

"""File I/O that holds up against crashes and hostile paths.

Atomic writes: a crash mid-write never leaves a corrupt file under the final
name.  Regular-file reads: a FIFO or device planted where a file should be is
refused instead of hanging or streaming forever.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from paddle_mnist.errors import UserError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; move it into place only on success.

    The temporary file lives in the same directory so ``os.replace`` is a
    rename on one filesystem, which readers see as all-or-nothing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the permissions a plain open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def read_capped(path: Path, limit: int, error: type[UserError], *, what: str, missing: str = "no such file") -> bytes:
    """All of the regular file ``path`` if it holds at most ``limit`` bytes (``what`` it should be
    names the refusal); every failure is one ``error`` line naming ``path``."""
    try:
        with open_regular(path, error) as f:
            # f.read(n) reserves n bytes before reading: ask for what the file holds, not the limit
            data = f.read(min(os.fstat(f.fileno()).st_size, limit) + 1)
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:
        raise error(f"{path}: larger than {limit:,} bytes, which no {what} is")
    return data


def open_regular(path: str | os.PathLike, error: type[UserError] = UserError) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file, else raise ``error`` naming it.

    The open itself does not block (``O_NONBLOCK``), so a FIFO with no writer
    is refused rather than waited on.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        _refuse_unless_regular(os.stat(path).st_mode, path, error)  # a socket cannot be opened at all
        raise
    try:
        _refuse_unless_regular(os.fstat(fd).st_mode, path, error)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _refuse_unless_regular(mode: int, path, error: type[UserError]) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in KINDS if test(mode)), "not a file")
        raise error(f"{path}: {kind}" if kind == "a directory" else f"{path}: {kind}, not a regular file")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

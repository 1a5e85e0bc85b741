"""Read and write the tutorial's gzip-JSON format: ``[[train], [valid], [eval]]``.

Each split is ``[images, labels]``: images are lists of 784 floats, labels ints.
The stdlib parse of the real file takes ~10-18 s because it builds 55 million
Python floats.  ``parse`` first tries a vectorised numpy tokenizer that checks
the whole structure and every number token; anything it does not fully
understand (exponents, odd spacing, a malformed file) falls back to the stdlib
parser, whose job is then to name the exact problem.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from paddle_mnist.data.files import max_bytes, open_data, read_at_most
from paddle_mnist.errors import DataError

SPLIT_NAMES = ("train", "valid", "eval")
PIXELS = 28 * 28

_WHITESPACE = b" \t\n\r"
_NUMBER_CHARS = b"0123456789.-+eE"


def _byte_table(chars: bytes) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[list(chars)] = True
    return table


_IS_NUMBER = _byte_table(_NUMBER_CHARS)
_IS_SKELETON = ~(_IS_NUMBER | _byte_table(_WHITESPACE))


def read_text(path: Path) -> bytes:
    """The decompressed file, refused once it passes the size limit."""
    with open_data(path, gzip_of="JSON") as stream:
        return read_at_most(stream, max_bytes(), path)


def parse(text: bytes, path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return per-split ``(images float64 [N,784], labels int64 [N])`` lists."""
    fast = _parse_fast(text)
    if fast is not None:
        return fast
    return _parse_stdlib(text, path)


# --- the fast path -----------------------------------------------------------

def _split_sizes(skeleton: np.ndarray) -> list[int] | None:
    """Images per split, read off the bracket nesting (depth 4 = one image)."""
    brackets = skeleton[(skeleton == ord("[")) | (skeleton == ord("]"))]
    step = np.where(brackets == ord("["), 1, -1)
    depth = np.cumsum(step)
    opens = step == 1
    split_starts = opens & (depth == 2)
    if split_starts.sum() != len(SPLIT_NAMES):
        return None
    split_of = np.cumsum(split_starts) - 1
    return np.bincount(split_of[opens & (depth == 4)], minlength=3).tolist()


def _expected_skeleton(sizes: list[int]) -> bytes:
    """The file with numbers and whitespace removed, if it is well-formed."""
    image = b"[" + b"," * (PIXELS - 1) + b"]"
    splits = (b"[[" + b",".join([image] * n) + b"],[" + b"," * max(n - 1, 0) + b"]]" for n in sizes)
    return b"[" + b",".join(splits) + b"]"


def _token_bounds(is_number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of every run of number characters."""
    edges = np.diff(is_number.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


_ZERO_TOKEN = int.from_bytes(b"0.0", "little")


def _decode_numbers(text: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray | None:
    """Values of tokens shaped ``-?\\d{1,3}(\\.\\d+)?``; None for anything else.

    Every token is read through an unaligned 16-byte window (two uint64
    gathers instead of a 2-D fancy index).  The "0.0" tokens, ~80 % of MNIST,
    are settled on the first word; the rest are grouped by (length, dot
    column, sign) so each group is one exact product: digits @ powers of ten
    is an integer below 2**53, divided once by 10**decimals, which rounds
    exactly as ``float(token)`` does.
    """
    if len(starts) == 0 or lengths.max() > 16:
        return None
    padded = np.zeros(len(text) + 16, dtype=np.uint8)
    padded[:len(text)] = text
    windows = np.ndarray((len(text) + 8,), dtype="<u8", buffer=padded, strides=(1,))
    head = windows[starts]
    values = np.zeros(len(starts), dtype=np.float64)
    rest = np.flatnonzero((lengths != 3) | ((head & 0xFFFFFF) != _ZERO_TOKEN))
    chars = np.stack([head[rest], windows[starts[rest] + 8]], axis=1).view(np.uint8)
    rest_lengths = lengths[rest]
    for width in np.flatnonzero(np.bincount(rest_lengths)):
        rows = np.flatnonzero(rest_lengths == width)
        group = chars[rows, :width]
        negative = group[:, 0] == ord("-")
        is_dot = group == ord(".")
        dot_col = np.where(is_dot.any(axis=1), is_dot.argmax(axis=1), width)
        for key in np.unique(dot_col * 2 + negative):
            dot, neg = divmod(int(key), 2)
            members = (dot_col == dot) & (negative == bool(neg))
            decoded = _decode_group(group[members], dot, bool(neg))
            if decoded is None:
                return None
            values[rest[rows[members]]] = decoded
    return values


def _decode_group(chars: np.ndarray, dot: int, negative: bool) -> np.ndarray | None:
    width = chars.shape[1]
    first = int(negative)
    int_digits, decimals = dot - first, max(width - dot - 1, 0)
    if not 1 <= int_digits <= 3 or (dot < width and decimals == 0) or int_digits + decimals > 15:
        return None
    digit_cols = [c for c in range(first, width) if c != dot]
    digits = chars[:, digit_cols] - np.uint8(ord("0"))  # non-digits wrap above 9
    if (digits > 9).any() or (int_digits > 1 and (digits[:, 0] == 0).any()):
        return None
    powers = 10.0 ** np.arange(len(digit_cols) - 1, -1, -1)
    magnitude = (digits @ powers) / 10.0 ** decimals
    return -magnitude if negative else magnitude


def _parse_fast(raw: bytes):
    if not raw:
        return None
    text = np.frombuffer(raw, dtype=np.uint8)
    skeleton = text[_IS_SKELETON[text]]
    sizes = _split_sizes(skeleton)
    if sizes is None or skeleton.tobytes() != _expected_skeleton(sizes):
        return None
    starts, ends = _token_bounds(_IS_NUMBER[text])
    if len(starts) != len(ends) or len(starts) != sum(sizes) * (PIXELS + 1):
        return None
    values = _decode_numbers(text, starts, ends - starts)
    if values is None:
        return None
    images, labels, at = [], [], 0
    for n in sizes:
        images.append(values[at:at + n * PIXELS].reshape(n, PIXELS))
        at += n * PIXELS
        split_labels = values[at:at + n]
        at += n
        label_tokens = (ends - starts)[at - n:at]
        if ((split_labels < 0) | (split_labels > 9) | (split_labels != np.rint(split_labels))).any() or (label_tokens != 1).any():
            return None  # the stdlib path names the bad label
        labels.append(split_labels.astype(np.int64))
    return images, labels


# --- the stdlib path: slow, and precise about what is wrong ------------------

def _parse_stdlib(text: bytes, path: Path):
    try:
        data = json.loads(text)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not JSON (the decompressed bytes are not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list) or len(data) != 3:
        got = f"a list of {len(data)}" if isinstance(data, list) else f"a JSON {type(data).__name__}"
        raise DataError(f"{path}: expected a list of 3 splits [train, valid, eval], got {got}")
    images, labels = [], []
    for name, split in zip(SPLIT_NAMES, data):
        if not (isinstance(split, list) and len(split) == 2 and all(isinstance(p, list) for p in split)):
            raise DataError(f"{path}: the {name} split is not a pair [images, labels] of lists")
        split_images, split_labels = split
        if len(split_images) != len(split_labels):
            raise DataError(f"{path}: the {name} split has {len(split_images)} images but {len(split_labels)} labels")
        images.append(_check_images(split_images, name, path))
        labels.append(_check_labels(split_labels, name, path))
    return images, labels


def _check_images(images: list, split: str, path: Path) -> np.ndarray:
    for i, image in enumerate(images):
        if not isinstance(image, list) or len(image) != PIXELS:
            size = f"{len(image)} values" if isinstance(image, list) else f"a {type(image).__name__}"
            raise DataError(f"{path}: {split} image {i} has {size}, expected {PIXELS} (28x28)")
        bad = next((v for v in image if isinstance(v, bool) or not isinstance(v, (int, float))), None)
        if bad is not None:
            raise DataError(f"{path}: {split} image {i} holds {bad!r}, expected numbers")
    return np.asarray(images, dtype=np.float64).reshape(len(images), PIXELS)


def _check_labels(labels: list, split: str, path: Path) -> np.ndarray:
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 9:
            raise DataError(f"{path}: {split} label {i} is {label!r}, expected an int in 0..9")
    return np.asarray(labels, dtype=np.int64)


# --- writing ------------------------------------------------------------------

def dumps(images: list[np.ndarray], labels: list[np.ndarray], scale: float = 256.0) -> bytes:
    """Serialise uint8 pixel splits the way the tutorial's file is written (pixel/scale)."""
    tokens = [repr(p / scale).encode() for p in range(256)]
    parts = []
    for pixels, split_labels in zip(images, labels):
        rows = (b"[" + b", ".join(map(tokens.__getitem__, img)) + b"]" for img in pixels.reshape(len(pixels), -1).tolist())
        parts.append(b"[[" + b", ".join(rows) + b"], [" + b", ".join(str(int(y)).encode() for y in split_labels) + b"]]")
    return b"[" + b", ".join(parts) + b"]"

"""Read and write the tutorial's gzip-JSON format: ``[[train], [valid], [eval]]``.

Each split is ``[images, labels]``: images are lists of 784 floats, labels ints.
The stdlib parse of the real file takes ~12 s and 3 GB because it builds 55
million Python floats.  ``read`` instead streams the decompressed text in
blocks through a vectorised numpy scanner: every number token is decoded
exactly, the bracket/comma grammar is checked pair by pair, and only the
brackets (two per image) are kept to check the layout at the end, so memory
is the decoded pixels plus one block, whatever the file holds.

A file the scanner does not fully understand (exponents, a malformed file)
is re-read by the stdlib parser, whose job is then to name the exact problem;
that costs ~10x the text in memory, so it is done only for files up to
``STDLIB_LIMIT`` decompressed bytes, and larger ones get the scanner's reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paddle_mnist.data.files import max_bytes, open_data, too_large
from paddle_mnist.errors import DataError

SPLIT_NAMES = ("train", "valid", "eval")
PIXELS = 28 * 28
BLOCK = 8 << 20  # decompressed bytes scanned at a time
STDLIB_LIMIT = 64 << 20  # largest text the stdlib parser may re-read to name a problem

_WHITESPACE = b" \t\n\r"
_NUMBER_CHARS = b"0123456789.-+eE"
OPEN, CLOSE, COMMA, NUMBER, OTHER, START = range(6)
# Which item may follow which in nested arrays of numbers: the whole JSON grammar this format needs.
_FOLLOWS = np.zeros((6, 6), dtype=bool)
for _a, _b in (
    (OPEN, OPEN),
    (OPEN, CLOSE),
    (OPEN, NUMBER),
    (CLOSE, CLOSE),
    (CLOSE, COMMA),
    (COMMA, OPEN),
    (COMMA, NUMBER),
    (NUMBER, COMMA),
    (NUMBER, CLOSE),
    (START, OPEN),
):
    _FOLLOWS[_a, _b] = True


def _byte_table(chars: bytes) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[list(chars)] = True
    return table


_IS_NUMBER = _byte_table(_NUMBER_CHARS)
_IS_SKELETON = ~(_IS_NUMBER | _byte_table(_WHITESPACE))
_CLASS = np.full(256, OTHER, dtype=np.int8)
_CLASS[ord("[")], _CLASS[ord("]")], _CLASS[ord(",")] = OPEN, CLOSE, COMMA


class _NotTutorial(Exception):
    """The scanner's reason a text is not in the tutorial's layout."""


@dataclass
class Parsed:
    images: np.ndarray  # float [N, 784], all splits in order
    labels: np.ndarray  # int64 [N]
    sizes: list[int]  # images per split: train, valid, eval


def read(path: Path) -> Parsed:
    """The three splits of a tutorial gzip-JSON file, in memory proportional to what it holds."""
    limit = max_bytes()
    scan, size, carry = _Scan(), 0, b""
    try:
        with open_data(path, gzip_of="JSON") as stream:
            while block := stream.read(BLOCK):
                size += len(block)
                if size > limit:
                    raise too_large(path, limit)
                carry = scan.feed(carry + block)
        scan.feed(carry, final=True)
        return scan.result()
    except _NotTutorial as e:
        return _explain(path, str(e))


def _explain(path: Path, reason: str) -> Parsed:
    """The stdlib parser names the exact problem of a small file; a large one gets the scanner's reason."""
    with open_data(path, gzip_of="JSON") as stream:
        text = stream.read(STDLIB_LIMIT + 1)
    if len(text) <= STDLIB_LIMIT:
        images, labels = _parse_stdlib(text, path)
        return Parsed(np.concatenate(images), np.concatenate(labels), [len(y) for y in labels])
    raise DataError(f"{path}: not in the tutorial's layout of plain decimal numbers ({reason})")


@dataclass
class _Scan:
    """What the scanner carries from one block to the next; ``result`` checks the layout at the end."""

    offset: int = 0  # bytes scanned before the current block
    depth: int = 0
    last: int = START  # class of the last item seen
    brackets: list = field(default_factory=list)  # the '[' and ']' bytes, in order (two per image)
    opened: np.ndarray = field(default_factory=lambda: np.zeros(5, np.int64))  # lists opened per depth
    counts: dict = field(default_factory=lambda: {3: [], 4: []})  # (first list, numbers per list) pieces
    pixels: list = field(default_factory=list)
    labels: list = field(default_factory=list)

    def feed(self, data: bytes, final: bool = False) -> bytes:
        """Scan ``data`` up to its last separator; return the unscanned tail (a token cut in two)."""
        text = np.frombuffer(data, dtype=np.uint8)
        is_number = _IS_NUMBER[text]
        separators = np.flatnonzero(~is_number)
        cut = len(text) if final else int(separators[-1]) + 1 if len(separators) else 0
        if len(text) - cut > 64:
            raise _NotTutorial(f"a number token longer than 64 characters at byte {self.offset + cut:,}")
        text, is_number = text[:cut], is_number[:cut]
        self._scan(text, is_number)
        self.offset += cut
        return data[cut:]

    def _scan(self, text: np.ndarray, is_number: np.ndarray) -> None:
        starts, ends = _token_bounds(is_number)
        skeleton_at = np.flatnonzero(_IS_SKELETON[text])
        self._check_grammar(text, starts, skeleton_at)
        brackets_at = skeleton_at[_CLASS[text[skeleton_at]] != COMMA]
        steps = np.where(text[brackets_at] == ord("["), 1, -1)
        depth_after = self.depth + np.cumsum(steps)
        if len(depth_after) and (depth_after.min() < 0 or depth_after.max() > 4):
            raise _NotTutorial("arrays nested other than 4 deep")
        token_depth = np.concatenate([[self.depth], depth_after])[np.searchsorted(brackets_at, starts)]
        if (token_depth < 3).any():
            raise _NotTutorial("a number outside the images and labels lists")
        values = _decode_numbers(text, starts, ends - starts) if len(starts) else np.zeros(0)
        if values is None:
            raise _NotTutorial("a number that is not a plain decimal of at most 15 digits")
        for depth in (3, 4):
            self._count(depth, brackets_at, steps, depth_after, starts[token_depth == depth])
        self.pixels.append(values[token_depth == 4].astype(np.float32))
        labels, label_lengths = values[token_depth == 3], (ends - starts)[token_depth == 3]
        if ((labels < 0) | (labels > 9) | (labels != np.rint(labels)) | (label_lengths != 1)).any():
            raise _NotTutorial("a label that is not an integer 0..9")
        self.labels.append(labels.astype(np.int64))
        self.brackets.append(text[brackets_at].tobytes())
        if len(depth_after):
            self.depth = int(depth_after[-1])

    def _check_grammar(self, text: np.ndarray, starts: np.ndarray, skeleton_at: np.ndarray) -> None:
        """Every consecutive pair of items (bracket, comma, number) must be one the format allows."""
        items = np.concatenate([skeleton_at, starts])
        kinds = np.concatenate([_CLASS[text[skeleton_at]], np.full(len(starts), NUMBER, np.int8)])
        kinds = kinds[np.argsort(items, kind="stable")]
        sequence = np.concatenate([[self.last], kinds])
        bad = np.flatnonzero(~_FOLLOWS[sequence[:-1], sequence[1:]])
        if len(bad):
            at = self.offset + int(np.sort(items)[bad[0]])
            raise _NotTutorial(f"unexpected {chr(text[at - self.offset])!r} at byte {at:,}")
        if len(kinds):
            self.last = int(kinds[-1])

    def _count(self, depth, brackets_at, steps, depth_after, token_starts) -> None:
        """Numbers per list at ``depth`` (the list a token is in: the last one opened at that depth)."""
        opens_at = brackets_at[(steps == 1) & (depth_after == depth)]
        first = int(self.opened[depth])
        self.opened[depth] += len(opens_at)
        if len(token_starts):
            owner = first - 1 + np.searchsorted(opens_at, token_starts, side="right")
            lowest = int(owner[0])  # owners rise with position
            self.counts[depth].append((lowest, np.bincount(owner - lowest)))

    def _totals(self, depth: int) -> np.ndarray:
        totals = np.zeros(int(self.opened[depth]), np.int64)
        for first, counts in self.counts[depth]:
            if first < 0:
                raise _NotTutorial("a number outside the images and labels lists")
            totals[first : first + len(counts)] += counts
        return totals

    def result(self) -> Parsed:
        if self.last == START:
            raise _NotTutorial("no JSON in it")
        if self.depth != 0:
            raise _NotTutorial("it ends inside an array")
        skeleton = np.frombuffer(b"".join(self.brackets), dtype=np.uint8)
        sizes = _split_sizes(skeleton)
        if sizes is None or skeleton.tobytes() != _expected_brackets(sizes):
            raise _NotTutorial("not a list of 3 splits, each [images, labels]")
        if (self._totals(4) != PIXELS).any():
            raise _NotTutorial(f"an image that is not {PIXELS} values")
        if self._totals(3).tolist() != [x for n in sizes for x in (0, n)]:
            raise _NotTutorial("a split whose image and label counts differ")
        pixels = np.concatenate(self.pixels).reshape(-1, PIXELS)
        self.pixels.clear()
        return Parsed(pixels, np.concatenate(self.labels), sizes)


def _split_sizes(skeleton: np.ndarray) -> list[int] | None:
    """Images per split, read off the bracket nesting (depth 4 = one image)."""
    step = np.where(skeleton == ord("["), 1, -1)
    depth = np.cumsum(step)
    opens = step == 1
    split_starts = opens & (depth == 2)
    if split_starts.sum() != len(SPLIT_NAMES):
        return None
    split_of = np.cumsum(split_starts) - 1
    return np.bincount(split_of[opens & (depth == 4)], minlength=3).tolist()


def _expected_brackets(sizes: list[int]) -> bytes:
    return b"[" + b"".join(b"[[" + b"[]" * n + b"][]]" for n in sizes) + b"]"


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
    padded[: len(text)] = text
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
    magnitude = (digits @ powers) / 10.0**decimals
    return -magnitude if negative else magnitude


# --- the stdlib path: slow, and precise about what is wrong ------------------


def _parse_stdlib(text: bytes, path: Path):
    try:
        data = json.loads(text)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not JSON (the decompressed bytes are not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise DataError(f"{path}: arrays nested far deeper than the tutorial's 4 levels") from None
    except ValueError as e:  # an integer of thousands of digits
        raise DataError(f"{path}: a number JSON cannot hold ({e})") from None
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
        rows = (
            b"[" + b", ".join(map(tokens.__getitem__, img)) + b"]" for img in pixels.reshape(len(pixels), -1).tolist()
        )
        parts.append(
            b"[[" + b", ".join(rows) + b"], [" + b", ".join(str(int(y)).encode() for y in split_labels) + b"]]"
        )
    return b"[" + b", ".join(parts) + b"]"

"""Find the digits in a picture's ink: one line of them, left to right.

The ink map (``preprocess.ink_map``: ink bright, paper 0, faint noise zeroed) is cut where whole columns
hold no ink, so that everything of one digit that overlaps in x stays together however it was drawn: a
5's detached flag, a 7's crossbar, a broken pen stroke, a 4 in two strokes.  Then:

* a piece far shorter than the line is no digit alone: joined to a near neighbour (a stroke that did not
  reach), or dropped as a speck when it is small or far;
* a piece much wider than a digit is two or more touching digits: ``cuts`` proposes where to split it
  (the columns of least ink near its middle), and the predictor keeps the cut the model reads best.

Everything here is column and row sums of the map: no per-pixel Python, and no labelling library
(``scipy.ndimage`` would add half a second to every prediction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_DIGITS = 12  # default bound on the digits read in one picture
SHORT = 0.5  # a piece under this share of the line's height is not a digit on its own
NEAR = 0.35  # ... and is joined to a neighbour this close (share of the line's height), else it is a speck
SPECK_MASS = 0.04  # a piece with less ink than this share of the heaviest piece's is a speck
WIDE = 1.25  # a piece wider than this many times the line's height holds touching digits
CUT_CANDIDATES = 5  # columns tried per cut
ROW_GAP = 0.15  # ink this close above or below a digit (share of its height) is part of it


@dataclass(frozen=True)
class Part:
    """Where one digit (or, while ``wide``, a few touching ones) lies in the ink map: [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int
    mass: float

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def crop(self, ink: np.ndarray) -> np.ndarray:
        return ink[self.y0 : self.y1, self.x0 : self.x1]


@dataclass(frozen=True)
class Found:
    """The parts of a picture, left to right, and how many marks the bound on digits left out."""

    parts: list[Part]
    line_height: int
    left_out: int = 0


def find_parts(ink: np.ndarray, max_digits: int = MAX_DIGITS) -> Found:
    """The digits' parts in ``ink`` (a levelled map with some ink), left to right."""
    pieces = [_part(ink, x0, x1) for x0, x1 in _runs(ink.sum(axis=0) > 0)]
    heaviest = max(p.mass for p in pieces)
    pieces = [p for p in pieces if p.mass >= SPECK_MASS * heaviest]
    line = int(np.median([p.height for p in pieces if p.height >= 0.5 * max(q.height for q in pieces)]))
    pieces = _join_short(ink, pieces, line)
    left_out = max(0, len(pieces) - max_digits)
    if left_out:  # keep the heaviest, still in reading order
        kept = set(sorted(range(len(pieces)), key=lambda i: -pieces[i].mass)[:max_digits])
        pieces = [p for i, p in enumerate(pieces) if i in kept]
    return Found(pieces, line, left_out)


def is_wide(part: Part, line_height: int) -> bool:
    return part.width > WIDE * max(part.height, line_height)


def cuts(ink: np.ndarray, part: Part) -> list[tuple[Part, Part]]:
    """Ways to split a wide ``part`` in two: at the ``CUT_CANDIDATES`` columns of least ink in its middle
    half (touching digits meet where there is least ink between them), a few columns apart."""
    profile = part.crop(ink).sum(axis=0)
    lo, hi = part.width // 4, part.width - part.width // 4
    order = lo + np.argsort(profile[lo:hi], kind="stable")
    chosen: list[int] = []
    spacing = max(2, part.width // 20)
    for column in order.tolist():
        if all(abs(column - c) >= spacing for c in chosen):
            chosen.append(column)
        if len(chosen) == CUT_CANDIDATES:
            break
    return [(_part(ink, part.x0, part.x0 + c), _part(ink, part.x0 + c, part.x1)) for c in chosen]


def _runs(occupied: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], occupied, [False]]).astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _part(ink: np.ndarray, x0: int, x1: int) -> Part:
    """The part of ``ink`` in columns [x0, x1): its rows are the heaviest run of inked rows there, with the
    runs close above or below it (a 5's flag), not specks farther off in the same columns."""
    rows = ink[:, x0:x1].sum(axis=1)
    runs = _runs(rows > 0)
    if not runs:
        return Part(x0, 0, x1, 1, 0.0)
    y0, y1 = max(runs, key=lambda run: rows[run[0] : run[1]].sum())
    grown = True
    while grown:
        near = ROW_GAP * (y1 - y0)
        close = [(a, b) for a, b in runs if (a < y0 or b > y1) and a - y1 <= near and y0 - b <= near]
        grown = bool(close)
        y0, y1 = min([y0] + [a for a, _ in close]), max([y1] + [b for _, b in close])
    return Part(x0, y0, x1, y1, float(rows[y0:y1].sum()))


def _join_short(ink: np.ndarray, pieces: list[Part], line: int) -> list[Part]:
    """Short pieces joined to their nearest neighbour when it is near, dropped when it is not; a piece that
    is short because the whole line is (a row of minus signs) stays."""
    pieces = list(pieces)
    while len(pieces) > 1:
        short = [i for i, p in enumerate(pieces) if p.height < SHORT * line]
        if not short:
            break
        i = min(short, key=lambda k: pieces[k].mass)
        gaps = [(pieces[i].x0 - pieces[j].x1, j) for j in (i - 1,) if j >= 0]
        gaps += [(pieces[j].x0 - pieces[i].x1, j) for j in (i + 1,) if j < len(pieces)]
        gap, j = min(gaps)
        if gap <= NEAR * line:
            a, b = sorted((i, j))
            pieces[a : b + 1] = [_part(ink, pieces[a].x0, pieces[b].x1)]
        else:
            del pieces[i]
    return pieces

"""Find the digits in a picture's ink: one line of them, left to right.

The ink map (``preprocess.level_background``: ink bright, paper 0, faint noise zeroed) is split into its
connected strokes (``cc3d``: a few milliseconds for a 512x512 map, where ``scipy.ndimage`` would add half a
second of import to every prediction), and the strokes are grouped into digits:

* specks (a stroke with under ``SPECK_MASS`` of the heaviest one's ink) are dropped, and beyond the
  ``MAX_MARKS`` heaviest strokes (a page of text) so is the rest;
* strokes that overlap in x by ``GROUP_OVERLAP`` of the narrower one are one digit, as the pad's strokes
  are (``strokes.digits``): a 5's flag drawn apart, a 7's crossbar, a 4 in two strokes, a broken stroke;
  a neighbour that only leans over (a slanted 9's tail under the next digit) stays apart;
* a group far shorter than the line is no digit alone: joined to a near neighbour (a stroke that did not
  reach), or dropped when it is far;
* a group wider than a digit may be touching digits: ``cut_columns`` proposes where it may be cut (the
  columns of least ink), and the reader keeps the way the model reads best (``reading``), a cut costing
  by the strokes it crosses (``crossed``) for a model that refuses two digits in one box.

Each digit is then read from its own strokes only, everything else blanked (``Found.ink_of``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_DIGITS = 12  # default bound on the digits read in one picture
SPECK_MASS = 0.04  # a stroke with less ink than this share of the heaviest stroke's is a speck
MAX_MARKS = 256  # strokes grouped at most, the heaviest: what a picture costs is bounded whatever it holds
GROUP_OVERLAP = 0.3  # strokes overlapping in x by this share of the narrower one are of one digit
SHORT = 0.5  # a group under this share of the line's height is not a digit on its own
NEAR = 0.35  # ... and is joined to a neighbour this close (share of the line's height), else dropped
# Columns where a group may be cut, at most: touching digits are tried in every way they split there.  A run of
# five touching digits has more low columns inside its digits than 8 (16 read 1.2-1.7 points more touching
# numbers on seeds 100-300 of bench_numbers; 24 no more than 16).
MAX_CUTS = 16
MIN_WIDTH = 0.12  # no digit is narrower than this share of the line's height (MNIST's 1s: 0.2 at the 1st percentile)


@dataclass(frozen=True)
class Part:
    """Where one digit (or a few touching ones) lies in the ink map, [x0, x1) x [y0, y1), and which of the
    map's connected strokes it is made of."""

    x0: int
    y0: int
    x1: int
    y1: int
    mass: float
    strokes: frozenset[int]

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Found:
    """The parts of a picture, left to right, the connected stroke of each pixel of the map (0: paper),
    the line's height and how many marks the bound on digits left out."""

    parts: list[Part]
    labels: np.ndarray
    line_height: int
    left_out: int = 0

    def ink_of(self, ink: np.ndarray, part: Part, x0: int | None = None, x1: int | None = None) -> np.ndarray:
        """``part``'s window of ``ink`` (its rows, columns [x0, x1) when given) with only its strokes kept:
        all else blanked.  A window, not a map of the whole picture: a picture's pieces are many."""
        x0, x1 = part.x0 if x0 is None else x0, part.x1 if x1 is None else x1
        window = np.s_[part.y0 : part.y1, x0:x1]
        return np.where(np.isin(self.labels[window], list(part.strokes)), ink[window], 0).astype(ink.dtype)

    def piece(self, own: np.ndarray, part: Part, left: np.ndarray, right: np.ndarray) -> tuple[Part, np.ndarray]:
        """The piece of ``part`` (its ink ``own``, from ``ink_of``) between two cuts, each the column it takes
        in each row (``cut_paths``): its box (the ink's) and its ink in the columns the cuts span, all else
        blanked (a window as wide as the piece: a part's pieces are many)."""
        lo, hi = int(left.min()), int(right.max())
        columns = np.arange(lo, hi)
        kept = np.where((columns >= left[:, None]) & (columns < right[:, None]), own[:, lo:hi], 0).astype(own.dtype)
        rows, cols = np.flatnonzero(kept.any(axis=1)), np.flatnonzero(kept.any(axis=0))
        if rows.size == 0:
            return Part(part.x0 + lo, part.y0, part.x0 + hi, part.y0 + 1, 0.0, part.strokes), kept
        x0, x1 = part.x0 + lo + int(cols[0]), part.x0 + lo + int(cols[-1]) + 1
        y0, y1 = part.y0 + int(rows[0]), part.y0 + int(rows[-1]) + 1
        return Part(x0, y0, x1, y1, float(kept.sum()), part.strokes), kept


def find_parts(ink: np.ndarray, max_digits: int = MAX_DIGITS) -> Found:
    """The digits' parts in ``ink`` (a levelled map with some ink), left to right."""
    import cc3d  # a C labelling of connected pixels, imported with the first picture read

    labels, count = cc3d.connected_components(ink > 0, connectivity=8, return_N=True)
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count + 1)
    boxes = cc3d.statistics(labels, no_slice_conversion=True)["bounding_boxes"]  # y0, y1, x0, x1, inclusive
    kept = np.flatnonzero(mass[1:] >= SPECK_MASS * mass[1:].max()) + 1
    kept = kept[np.argsort(-mass[kept], kind="stable")[:MAX_MARKS]]  # a page of text: its heaviest marks only
    strokes = [
        Part(int(b[2]), int(b[0]), int(b[3]) + 1, int(b[1]) + 1, float(mass[k]), frozenset([int(k)]))
        for k, b in ((k, boxes[k]) for k in kept)
    ]
    parts = [_joined(strokes[i] for i in group) for group in overlapping([(p.x0, p.x1) for p in strokes])]
    parts.sort(key=lambda p: p.x0)
    line = int(np.median([p.height for p in parts if p.height >= 0.5 * max(q.height for q in parts)]))
    parts = _join_short(parts, line)
    left_out = max(0, len(parts) - max_digits)
    if left_out:  # keep the heaviest, still in reading order
        heaviest = set(sorted(range(len(parts)), key=lambda i: -parts[i].mass)[:max_digits])
        parts = [p for i, p in enumerate(parts) if i in heaviest]
    return Found(parts, labels, line, left_out)


def group(strokes: list[Part]) -> tuple[list[Part], int]:
    """Strokes (each a ``Part``) grouped into digits, left to right, and the line's height: strokes that
    overlap in x (``overlapping``) are one digit, then short groups are joined to a near neighbour or
    dropped.  The pad's strokes are grouped by the same rules (``strokes.digits``)."""
    parts = [_joined(strokes[i] for i in members) for members in overlapping([(p.x0, p.x1) for p in strokes])]
    parts.sort(key=lambda p: p.x0)
    line = int(np.median([p.height for p in parts if p.height >= 0.5 * max(q.height for q in parts)]))
    return _join_short(parts, line), line


def overlapping(intervals: list[tuple[float, float]], share: float = GROUP_OVERLAP) -> list[list[int]]:
    """The indices of ``intervals`` ([start, end] in x) in groups, left to right: two that overlap by
    ``share`` of the narrower one (at least a pixel wide) are in one group, and so are their groups'."""
    groups: list[tuple[float, float, list[int]]] = []
    for index in sorted(range(len(intervals)), key=lambda i: intervals[i][0]):
        x0, x1 = intervals[index]
        members = [index]
        for group in [g for g in groups if _overlap((x0, x1), g) >= share * max(1.0, min(x1 - x0, g[1] - g[0]))]:
            groups.remove(group)
            x0, x1, members = min(x0, group[0]), max(x1, group[1]), group[2] + members
        groups.append((x0, x1, members))
    return [sorted(members) for *_, members in sorted(groups, key=lambda g: g[0])]


def _overlap(a: tuple, b: tuple) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def cut_columns(ink: np.ndarray, part: Part, line_height: int, found: Found) -> list[int]:
    """Where a cut through ``part`` may fall, left to right: the columns of least ink locally (touching digits
    meet where there is least ink between them), at most ``MAX_CUTS`` of them, the lowest first, none
    nearer than ``MIN_WIDTH`` line heights to an edge or to each other."""
    spacing = max(2, int(MIN_WIDTH * line_height))
    if part.width < 2 * spacing:  # no room for a cut (and np.convolve's "same" is 3 long for a narrower part)
        return []
    own = found.ink_of(ink, part)
    profile = np.convolve(own.sum(axis=0), np.ones(3) / 3, mode="same")
    inner = np.arange(1, part.width - 1)
    minima = inner[(profile[1:-1] <= profile[:-2]) & (profile[1:-1] <= profile[2:])]
    chosen: list[int] = []
    for column in minima[np.argsort(profile[minima], kind="stable")].tolist():
        if spacing <= column <= part.width - spacing and all(abs(column - c) >= spacing for c in chosen):
            chosen.append(column)
        if len(chosen) == MAX_CUTS:
            break
    return sorted(part.x0 + c for c in chosen)


def cut_paths(own: np.ndarray, columns: list[int], reach: int) -> np.ndarray:
    """int [len(columns), H]: for each cut column of a part (its ink ``own``, [H, W]), the column of the
    cut in each row: the path of least ink from top to bottom that keeps within ``reach`` columns of it and
    moves at most a column a row (touching digits that lean meet along a slant, not a column).  The
    part's edges, 0 and W, stay straight."""
    h, w = own.shape
    columns = np.asarray(columns)
    inner = (columns > 0) & (columns < w)
    paths = np.repeat(columns[:, None], h, axis=1)
    if reach == 0 or not inner.any():
        return paths
    offsets = np.arange(-reach, reach + 1)
    xs = np.clip(columns[inner][:, None] + offsets, 1, w - 1)  # [C, K] the columns each path may take
    cost = own[:, xs] + 1e-3 * np.abs(offsets)  # [H, C, K]: ink, and straight where there is none to avoid
    total, back = cost[0], np.zeros(cost.shape, np.int8)
    wall = np.full(total.shape[:1] + (1,), np.inf)
    for y in range(1, h):  # a row at a time, every cut at once: each candidate comes from one of its 3 above
        came = np.stack([np.hstack([wall, total[:, :-1]]), total, np.hstack([total[:, 1:], wall])])
        back[y] = came.argmin(axis=0) - 1
        total = came.min(axis=0) + cost[y]
    at, rows = total.argmin(axis=1), np.arange(len(xs))
    out = np.empty((len(xs), h), np.int64)
    for y in range(h - 1, -1, -1):
        out[:, y] = xs[rows, at]
        at = at + back[y, rows, at]
    paths[inner] = out
    return paths


def crossed(own: np.ndarray, paths: np.ndarray) -> tuple[float, ...]:
    """How many strokes of a part (its ink ``own``) each cut (``cut_paths``) crosses: the ink along it, in
    strokes' widths (a stroke's ink across: twice the part's ink over its outline's pixels)."""
    inked = own > 0
    inner = inked.copy()
    inner[1:-1, 1:-1] &= inked[:-2, 1:-1] & inked[2:, 1:-1] & inked[1:-1, :-2] & inked[1:-1, 2:]
    across = 2 * own.sum() / max(1, int((inked & ~inner).sum()))
    along = own[np.arange(own.shape[0]), np.clip(paths, 0, own.shape[1] - 1)].sum(axis=1)
    return tuple(float(v) for v in along / across)


def _joined(parts) -> Part:
    parts = list(parts)
    return Part(
        min(p.x0 for p in parts),
        min(p.y0 for p in parts),
        max(p.x1 for p in parts),
        max(p.y1 for p in parts),
        sum(p.mass for p in parts),
        frozenset().union(*(p.strokes for p in parts)),
    )


def _join_short(parts: list[Part], line: int) -> list[Part]:
    """Short groups joined to their nearest neighbour when it is near, dropped when it is not."""
    parts = list(parts)
    while len(parts) > 1:
        short = [i for i, p in enumerate(parts) if p.height < SHORT * line]
        if not short:
            break
        i = min(short, key=lambda k: parts[k].mass)
        gaps = [(parts[i].x0 - parts[j].x1, j) for j in (i - 1,) if j >= 0]
        gaps += [(parts[j].x0 - parts[i].x1, j) for j in (i + 1,) if j < len(parts)]
        gap, j = min(gaps)
        if gap <= NEAR * line:
            a, b = sorted((i, j))
            parts[a : b + 1] = [_joined(parts[a : b + 1])]
        else:
            del parts[i]
    return parts

"""Which digits a picture holds: the picture cut into its parts (``segment``), each prepared as MNIST's
digits were (``preprocess``), and a part wide enough to hold touching digits also in every way its cut
columns split it; the model scores every piece in one forward pass, and ``Plan.read`` keeps, for each
part, the way the model reads best.

A picture found to hold one digit, with no specks dropped, is prepared exactly as a single digit always
was (the whole ink map, cropped, fitted and centred).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_mnist import calibration, preprocess, segment, strokes
from paddle_mnist.errors import UserError

TRY_CUTS = 1.0  # a part wider than this many line heights may hold touching digits (9 % of MNIST digits are wider)
# For a model that refuses two digits in one box (trained with outliers), a part beside others may be cut from
# TRY_CUTS_IN_LINE (a 1 touching a 7 is this narrow), and each cut costs CROSSING log-probability per stroke it
# crosses (a digit or a letter cut in two is cut across its strokes).  Chosen on seeds 100-300 of bench_numbers
# and seed 2 of bench_notdigits (0.5 refused more pictures of shapes but read 0.2-2.3 points fewer numbers); a
# model that reads two touching digits as one confidently needs neither, as any cost on cutting tips it to
# the whole (`quick`'s touching numbers under 0.5: 57-66 % → 18-36 %).
TRY_CUTS_IN_LINE = 0.6
CROSSING = 0.25
# A cut follows the least ink from top to bottom within SLANT line heights of its column (digits that lean
# touch along a slant): 0.05 read 1.5-1.8 points more touching numbers than straight cuts on seeds 100-300 of
# bench_numbers, 0.1 0.3-2.3, 0.2 7 fewer (a path that wanders far cuts round a digit's loop).
SLANT = 0.05
# In a line of several parts (a number), for a model that refuses pairs, each cut column of a part wider than
# TRY_CUTS line heights is also tried along paths that may stray IN_LINE_SLANTS line heights: digits written
# touching overlap, and the gap between them bends further than a lean (the path of least ink within 0.05 cuts
# through one of them).  Every path is a way to cut; the reading keeps the way the model reads best.  `fast`
# (seed 0), touching sets of bench_numbers: 84.6 → 86.3 % on seed 100, 85.8 → 87.0 % on seed 200, 84.1 → 85.2 %
# on seed 300; apart ones 96.5 → 96.4 % (seed 100).  Bending in every part cut (from TRY_CUTS_IN_LINE) read 86.7
# and 87.2 % for 2.2 times the pieces of an apart number; 0.12 alone there 86.1 and 87.0 %; charging a cut only
# for the strokes it crosses past the first 0.5 points more touching and 1.0 fewer apart numbers.  Marks alone
# are cut as before (bent too, 0.3 more touching numbers but 1.0 point fewer handwriting fonts refused), and so
# are the training's outliers (``training``): `fast` trained on pieces cut with these paths too refused more digits
# (eval 0.72 → 0.89 %, photos 0.33 → 1.33 %) and read 1.2 points fewer apart numbers (docs/results.md).
IN_LINE_SLANTS = (0.12, 0.25)
# A piece of a cut part is at least PIECE_HEIGHT of the part's height (no curl or sliver).  MNIST writes some
# 0s flat: beside a 1 one is half the part's height, and at 0.7 no piece held it ("160" read as one refused
# mark).  0.6 read 1.6-2.1 points more touching numbers of seeds 100 and 200 (with ``Plan.read``'s accepted
# pieces), 0.11 and 0.22 fewer apart ones, and refused 0.6 points fewer shapes and scribbles as pictures on
# seed 2 of bench_notdigits; 0.5 read no more touching numbers, 0.33 points fewer apart ones (seed 100), and
# refused 1 point fewer of those pictures.
PIECE_HEIGHT = 0.6
MAX_WIDTH = 1.4  # no piece of a cut part is wider than this many line heights (MNIST's 2s: 1.67 at the 99th percentile)
# No MNIST digit is much wider than tall: in their 28x28 the widest ink box of the 50,000 training digits is 2.22
# times as wide as high (1 over 2; of the eval split's 10,000, 2.0).  A piece prepared as a digit that is wider
# than MAX_ASPECT times its height is no digit, whatever the model reads in it: a flat sandal read as a 2 at 0.93,
# a dash.  (Found looking at the clothes `fast` took for digits; the constant is MNIST's: docs/results.md.)
MAX_ASPECT = 2.5


@dataclass(frozen=True)
class Lattice:
    """The ways one part of a picture may be read: ``spans[(i, j)]`` is the input index of the piece between
    its cuts ``i`` and ``j`` (0 .. ``ends``, left to right; 0 and ``ends`` are the part's edges; a column may
    be cut along several paths, one cut each), and ``crossed[j]`` how many strokes cut ``j`` crosses (none
    given: cuts cost nothing).  A part that is not cut has one span, (0, 1)."""

    ends: int
    spans: dict[tuple[int, int], int]
    crossed: tuple[float, ...] = ()

    def best(self, confidence: np.ndarray, allowed: np.ndarray | None = None) -> list[int] | None:
        """The input indices of the pieces of the way the model reads best, left to right: the highest
        product of their probabilities (``confidence``: the model's probability of each input's digit), each
        cut costing ``CROSSING`` per stroke it crosses; made of the ``allowed`` pieces only, if given (None when
        no way is)."""
        log = np.log(np.maximum(confidence, 1e-30))
        cost = CROSSING * np.array(self.crossed or [0.0] * (self.ends + 1))
        cost[[0, -1]] = 0.0  # the part's edges are no cuts
        best: dict[int, tuple[float, list[int]]] = {0: (0.0, [])}  # the best way to read up to each cut
        for j in range(1, self.ends + 1):
            ways = [
                (best[i][0] + log[k] - cost[j], best[i][1] + [k])
                for (i, end), k in self.spans.items()
                if end == j and i in best and (allowed is None or allowed[k])
            ]
            if ways:
                best[j] = max(ways, key=lambda way: way[0])
        return best[self.ends][1] if self.ends in best else None


@dataclass(frozen=True)
class Plan:
    """What to run the model on to read a picture: every piece that may be a digit, as a model input with
    its box, and the lattices that say how the pieces make up its parts, left to right.  ``read`` picks the
    digits once the model has scored every input: the whole picture takes one forward pass."""

    pixels: list[np.ndarray]  # uint8 [28,28] MNIST-style, white on black, one per piece
    boxes: list[tuple[int, int, int, int] | None]  # x0, y0, x1, y1 in the upright picture's pixels
    lattices: list[Lattice]
    max_digits: int = segment.MAX_DIGITS
    left_out: int = 0  # marks past ``max_digits``, not read
    naive: bool = False  # the tutorial's input: 1 - pixel/255 of the squashed picture, whatever the training data
    cut_alone: float = calibration.CUT_ALONE  # how much less digit-like each piece of a mark cut alone is judged

    @classmethod
    def simple(cls, pixels: list, boxes: list, left_out: int = 0, naive: bool = False) -> Plan:
        """Pieces that are each one digit, left to right: nothing to choose."""
        lattices = [Lattice(1, {(0, 1): k}) for k in range(len(pixels))]
        return cls(pixels, boxes, lattices, max(1, len(pixels)), left_out, naive)

    @property
    def among_others(self) -> bool:
        """Whether the picture holds several marks apart (a number's digits): each is judged among others
        (``calibration.AMONG_OTHERS``).  The pieces one mark is cut into are not apart."""
        return len(self.lattices) > 1

    @property
    def margins(self) -> np.ndarray:
        """[N] how much more digit-like than alone each input is judged, in log-probability
        (``calibration.Calibration.judged``): a number's digits ``AMONG_OTHERS`` more; the pieces a mark alone
        is cut into ``cut_alone`` less (its whole, and a mark not cut, as they are); an input wider than
        ``MAX_ASPECT`` times its height -inf, never a digit (but the tutorial's squashed picture)."""
        if self.among_others:
            margins = np.full(len(self.pixels), calibration.AMONG_OTHERS)
        else:
            margins = np.zeros(len(self.pixels))
            for lattice in self.lattices:
                whole = lattice.spans.get((0, lattice.ends))
                margins[[k for k in lattice.spans.values() if k != whole]] = -self.cut_alone
        if not self.naive:
            margins[preprocess.ink_aspects(np.stack(self.pixels)) > MAX_ASPECT] = -np.inf
        return margins

    def inputs(self, encoding) -> np.ndarray:
        """float32 [N,1,28,28]: the pieces scaled as the model's training data was (``encoding``)."""
        stacked = np.stack(self.pixels)[:, None]
        return (stacked / np.float32(255) if self.naive else encoding.to_floats(stacked)).astype(np.float32)

    def read(self, scores: np.ndarray, refused: np.ndarray | None = None) -> tuple[list[int], int]:
        """(the input indices read as the picture's digits, left to right; how many marks were left out), from
        the model's class probabilities of every input, ``scores`` [N,10], and which inputs the calibration
        ``refused`` as not a digit, if known.

        A part that the best way of cutting reads as nothing but 1s is read whole instead: side-by-side
        strokes are an m, n, u, H, M, N, U or W far more often than touching 1s, and each of their strokes
        alone reads as a 1 (with this rule, ``fast --no-augment`` refuses 93 % of ``bench_notdigits``'
        printed letters instead of 82 %, and 90 % instead of 84 % of another seed's letters of both kinds;
        a set of touching and one of narrow numbers read the same).

        Among others (``among_others``: a number's digits), a part whose best way holds a refused piece is read
        the best way made of pieces the model accepts, if there is one: a refused piece among digits is far
        more often a wrong cut (touching digits read whole) than a mark that is not a digit.  A mark alone
        keeps its best way, refused or not: cutting a refused letter or shape until its pieces pass for
        digits would accept it (seed 2 of ``bench_notdigits``: printed letters refused 98.0 → 93.0 %)."""
        confidence, digits = scores.max(axis=1), scores.argmax(axis=1)
        chosen = []
        for lattice in self.lattices:
            best = lattice.best(confidence)
            if len(best) > 1 and (digits[best] == 1).all() and (0, lattice.ends) in lattice.spans:
                best = [lattice.spans[(0, lattice.ends)]]
            if refused is not None and self.among_others and refused[best].any():
                best = lattice.best(confidence, ~refused) or best
            chosen.extend(best)
        return chosen[: self.max_digits], self.left_out + max(0, len(chosen) - self.max_digits)


def plan(
    item,
    naive: bool = False,
    single: bool = False,
    max_digits: int = segment.MAX_DIGITS,
    refuses_pairs: bool = False,
    training: bool = False,
) -> Plan:
    """How to read ``item`` (a path, a PIL image, an array, or a ``strokes.Drawing``).  ``naive`` is the
    tutorial's preprocessing of the whole picture; ``single`` reads it as one digit; ``refuses_pairs``: the
    model refuses two digits in one box, so narrower marks may be cut and cuts are charged by the strokes
    they cross (``TRY_CUTS_IN_LINE``, ``CROSSING``), a wide mark in a line of several also cut along paths
    that bend (``IN_LINE_SLANTS``) and a narrow mark alone cut too (``calibration.CUT_NARROW``); ``training``
    cuts as the training's outliers and cut digits are made, with neither (`fast` trained on pieces cut
    either way read fewer numbers apart: docs/results.md)."""
    if isinstance(item, strokes.Drawing):
        return drawn(item, single, max_digits)
    image = item_image(item)
    whole = (0, 0, image.width, image.height)
    if naive:
        return Plan.simple([np.rint(preprocess.naive(image) * 255).astype(np.uint8)], [whole], naive=True)
    ink, scale = preprocess.ink_map(image)
    if preprocess.in_mnist_form(ink):
        return Plan.simple([np.rint(ink * 255).astype(np.uint8)], [whole])
    levelled = preprocess.level_background(ink)
    if single:
        return Plan.simple([preprocess.digit_pixels(levelled)], [whole])
    found = segment.find_parts(levelled, max_digits)
    pixels, boxes, lattices = [], [], []
    in_line = refuses_pairs and len(found.parts) > 1
    narrow = in_line or (refuses_pairs and not training)  # marks cut from TRY_CUTS_IN_LINE
    for part in found.parts:
        own = found.ink_of(levelled, part)
        bend = not training and in_line and part.width > TRY_CUTS * found.line_height
        xs, paths = _cut_paths(own, part, _cuts(levelled, part, found, narrow), found.line_height, bend)
        cut = refuses_pairs and len(xs) > 2  # a part with cuts to charge
        crossed = segment.crossed(own, paths) if cut else ()
        spans = {}
        for (i, j), (piece, piece_ink) in _pieces(own, part, xs, paths, found).items():
            spans[(i, j)] = len(pixels)
            pixels.append(preprocess.digit_pixels(piece_ink))
            boxes.append(_box(piece, scale))
        lattices.append(Lattice(len(xs) - 1, spans, crossed))
    narrow_alone = narrow and len(found.parts) == 1 and found.parts[0].width <= TRY_CUTS * found.line_height
    cut_alone = calibration.CUT_NARROW if narrow_alone else calibration.CUT_ALONE
    return Plan(pixels, boxes, lattices, max_digits, found.left_out, cut_alone=cut_alone)


def drawn(drawing: strokes.Drawing, single: bool = False, max_digits: int = segment.MAX_DIGITS) -> Plan:
    """How to read a drawing sent as its strokes: its digits as the strokes group them, each drawn again as
    an MNIST digit (``strokes.render``); nothing to cut.  Raises ``NoDigitFound`` for an empty drawing or dots."""
    groups, left_out = ([drawing], 0) if single else strokes.digits(drawing, max_digits)
    pixels = [strokes.render(group) for group in groups] or [strokes.render(drawing)]  # the latter says why not
    return Plan.simple(pixels, [strokes.box(group) for group in groups], left_out)


def _cuts(ink: np.ndarray, part: segment.Part, found: segment.Found, narrow: bool) -> list[int]:
    """The columns a part may be cut at, its edges included: only its edges unless it may hold touching
    digits: wider than ``TRY_CUTS`` line heights, or ``TRY_CUTS_IN_LINE`` when ``narrow`` (a model that refuses
    pairs: a 1 touching a neighbour is narrower than tall)."""
    if part.width <= (TRY_CUTS_IN_LINE if narrow else TRY_CUTS) * found.line_height:
        return [part.x0, part.x1]
    return [part.x0, *segment.cut_columns(ink, part, found.line_height, found), part.x1]


def _cut_paths(
    own: np.ndarray, part: segment.Part, xs: list[int], line: int, bends: bool
) -> tuple[list[int], np.ndarray]:
    """(the column of each cut, left to right; int [cuts, H] the column each takes in each row) of ``part``
    (its ink ``own``) cut at the columns ``xs``, its edges included: each column along the path of least ink
    within ``SLANT`` line heights, and if it ``bends`` also within each of ``IN_LINE_SLANTS`` (the paths that
    differ from the column's others; the edges stay straight, one cut each)."""
    reaches = (SLANT, *IN_LINE_SLANTS) if bends else (SLANT,)
    offsets = [x - part.x0 for x in xs]
    every = np.stack([segment.cut_paths(own, offsets, int(r * line)) for r in reaches], axis=1)  # [C, R, H]
    columns, paths = [], []
    for x, ways in zip(xs, every):
        distinct = np.unique(ways, axis=0)
        columns.extend([x] * len(distinct))
        paths.extend(distinct)
    return columns, np.stack(paths)


def _pieces(own: np.ndarray, part: segment.Part, xs: list[int], paths: np.ndarray, found: segment.Found) -> dict:
    """The pieces of ``part`` between its cuts (``xs``: each one's column) that may be a digit, by their (i, j),
    each with the map of its own ink: at most ``MAX_WIDTH`` line heights wide (the whole part, however wide,
    is one of them), with some ink; none between two paths of one column."""
    widest = MAX_WIDTH * found.line_height
    spans = {(i, j) for i in range(len(xs)) for j in range(i + 1, len(xs)) if 0 < xs[j] - xs[i] <= widest}
    whole = (0, len(xs) - 1)
    pieces = {(i, j): found.piece(own, part, paths[i], paths[j]) for i, j in sorted(spans | {whole})}
    tall = PIECE_HEIGHT * part.height
    return {span: (p, kept) for span, (p, kept) in pieces.items() if p.mass > 0 and (p.height >= tall or span == whole)}


def _box(part: segment.Part, scale: float) -> tuple[int, int, int, int]:
    return tuple(int(round(v * scale)) for v in (part.x0, part.y0, part.x1, part.y1))


def item_image(item) -> Image.Image:
    """A PIL image from a path, a PIL image, or a grey array: integers 0..255, or floats in [0, 1] (1 = white)."""
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, Path)):
        return preprocess.open_image(Path(item))
    return Image.fromarray(gray_levels(np.asarray(item)), mode="L")


def gray_levels(array: np.ndarray) -> np.ndarray:
    """uint8 [H, W] from an array of grey values, with one line for each way it can be unusable."""
    shape = list(array.shape)
    if array.ndim > 2 and np.prod(array.shape[:-2]) == 1:
        array = array.reshape(array.shape[-2:])
    if array.ndim != 2 or array.size == 0:
        raise UserError(f"an image array must be a non-empty [H, W], got shape {shape}")
    if array.size > preprocess.MAX_PIXELS:
        raise UserError(f"an image array of {array.size:,} pixels is over the {preprocess.MAX_PIXELS:,}-pixel limit")
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.uint8) * 255
    if kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise UserError(f"an integer image array must hold grey levels 0..255, got {array.min()}..{array.max()}")
        return array.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UserError("a float image array must hold finite values in [0, 1]")
        return np.rint(array * 255).astype(np.uint8)
    raise UserError(f"an image array must hold numbers, got dtype {array.dtype}")

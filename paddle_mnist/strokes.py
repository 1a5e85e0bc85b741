"""A drawing sent as its strokes, rendered the way MNIST's digits look: what the page's pad sends.

A picture of a digit drawn on a 280 px pad with a fixed 20 px pen is a poor copy of an MNIST digit
once it is shrunk into MNIST's 20 px box: a small digit's strokes become a blob far thicker than
any MNIST stroke.  From the strokes themselves the digit is drawn again at the size it will have:
the points' bounding box fitted to the 20 px box (aspect kept), a pen in proportion to that box
(``PEN``), drawn four times larger and reduced (anti-aliasing), then centred on its centre of mass
by the same code as a photo (``preprocess.fit_box``, ``center_of_mass_canvas``).

``parse`` bounds what a client can send (strokes, points, coordinates within a margin of the pad),
so a drawing costs at most a few milliseconds to render whatever it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from paddle_mnist import preprocess, segment
from paddle_mnist.errors import UserError

MAX_STROKES, MAX_POINTS = 256, 20_000  # a digit drawn by hand has a handful of strokes of some hundred points
MAX_BYTES = 1 << 20  # the JSON of MAX_POINTS points with a decimal each is ~400 KB
MAX_SIDE = 8192  # largest pad, in pixels
MARGIN = 0.25  # points may lie this fraction of the pad beyond its edges (a stroke that left the pad)
PEN = 0.14  # pen width, a fraction of the box side: fewest misreads of 0.06-0.18 (scripts/bench_drawn.py, seeds 1-2)
SCALE = 4  # drawn at four times the 20 px box, then reduced: anti-aliased edges


class StrokesError(UserError):
    pass


@dataclass(frozen=True)
class Drawing:
    """The pad's strokes, each an [N,2] float array of (x, y) pad pixels, and the pad's size."""

    strokes: tuple[np.ndarray, ...]
    width: int
    height: int


def parse(body) -> Drawing:
    """The drawing in a JSON body ``{"strokes": [[[x, y], ...], ...], "width": W, "height": H}``; every way
    it can be wrong is one ``StrokesError`` line."""
    if not isinstance(body, dict) or not isinstance(body.get("strokes"), list):
        raise StrokesError('a drawing is {"strokes": [[[x, y], ...], ...], "width": W, "height": H}')
    width, height = (_side(body.get(name), name) for name in ("width", "height"))
    raw = body["strokes"]
    if len(raw) > MAX_STROKES:
        raise StrokesError(f"more than {MAX_STROKES} strokes")
    if not all(isinstance(stroke, list) for stroke in raw):
        raise StrokesError("each stroke must be a list of [x, y] points")
    if sum(len(stroke) for stroke in raw) > MAX_POINTS:
        raise StrokesError(f"more than {MAX_POINTS} points")
    strokes = tuple(_points(stroke, width, height) for stroke in raw if stroke)
    return Drawing(strokes, width, height)


def _side(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIDE:
        raise StrokesError(f"{name} must be the pad's size in pixels, an integer 1..{MAX_SIDE}")
    return value


def _points(stroke: list, width: int, height: int) -> np.ndarray:
    if not all(
        isinstance(p, list)
        and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)
        for p in stroke
    ):
        raise StrokesError("each point must be [x, y], two finite numbers")
    points = np.array(stroke, dtype=np.float64)
    low = -MARGIN * np.array([width, height])
    high = (1 + MARGIN) * np.array([width, height])
    if (points < low).any() or (points > high).any():
        raise StrokesError(f"a point lies outside the {width}x{height} pad and its margin")
    return points


def draw_pen(draw: ImageDraw.ImageDraw, strokes: list[np.ndarray], width: float, fill: int) -> None:
    """Each stroke ([N,2] points) as a pen of ``width`` leaves it: lines with round caps and joins."""
    radius = width / 2
    for stroke in strokes:
        xy = [tuple(p) for p in stroke]
        for x, y in xy:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
        if len(xy) > 1:
            draw.line(xy, fill=fill, width=max(1, round(width)))


def digits(drawing: Drawing, max_digits: int = segment.MAX_DIGITS) -> tuple[list[Drawing], int]:
    """The drawing's digits, left to right, and how many the bound ``max_digits`` left out.  Strokes are
    grouped by where they lie, which pixels cannot tell, by the rules a picture's strokes are
    (``segment.group``): strokes that overlap in x are one digit, whatever order they were drawn in (a 5's
    flag drawn last, a 7's crossbar, a 4 in two strokes), and a short group joins a near neighbour (a 5's
    flag that leans off its body).  Dots are left out unless there is nothing else; beyond the bound, the
    groups with the fewest points are."""
    pad = max(drawing.width, drawing.height)
    marks = [s for s in drawing.strokes if _extent(Drawing((s,), 1, 1)) >= pad / 100] or list(drawing.strokes)
    if not marks:
        return [], 0
    boxes = [(np.floor(s.min(axis=0)), np.ceil(s.max(axis=0)) + 1) for s in marks]
    parts = [
        segment.Part(int(low[0]), int(low[1]), int(high[0]), int(high[1]), float(len(s)), frozenset([k]))
        for k, (s, (low, high)) in enumerate(zip(marks, boxes))
    ]
    grouped, _ = segment.group(parts)
    left_out = max(0, len(grouped) - max_digits)
    if left_out:
        heaviest = set(sorted(range(len(grouped)), key=lambda i: -grouped[i].mass)[:max_digits])
        grouped = [g for i, g in enumerate(grouped) if i in heaviest]
    found = [Drawing(tuple(marks[k] for k in sorted(g.strokes)), drawing.width, drawing.height) for g in grouped]
    return found, left_out


def _extent(drawing: Drawing) -> float:
    """The longer side of the drawing's points' box, in pad pixels."""
    points = np.concatenate(drawing.strokes)
    return float((points.max(axis=0) - points.min(axis=0)).max())


def box(drawing: Drawing) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the drawing's points, in pad pixels."""
    points = np.concatenate(drawing.strokes)
    (x0, y0), (x1, y1) = np.floor(points.min(axis=0)), np.ceil(points.max(axis=0))
    return int(x0), int(y0), int(x1), int(y1)


def render(drawing: Drawing, pen: float = PEN) -> np.ndarray:
    """uint8 [28,28] white-on-black: the drawing as an MNIST digit."""
    if not drawing.strokes:
        raise preprocess.NoDigitFound("no digit found (the drawing is empty)")
    points = np.concatenate(drawing.strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    side = float((high - low).max())
    pad_side = max(drawing.width, drawing.height)
    if side < pad_side / 100:  # a dot, or a tap: nothing a digit is made of
        raise preprocess.NoDigitFound("no digit found (the drawing is a single dot)")
    size = preprocess.BOX * SCALE  # the longest side of the box, in drawing pixels
    width = max(1.0, pen * size)
    scale = (size - width) / side  # the pen's width stays inside the box
    canvas = Image.new("L", (size + 2, size + 2), 0)
    draw = ImageDraw.Draw(canvas)
    draw_pen(draw, [(stroke - low) * scale + width / 2 + 1 for stroke in drawing.strokes], width, 255)
    ink = np.asarray(canvas, dtype=np.float32) / 255
    ink = preprocess.crop_to_ink(ink)
    digit = preprocess.center_of_mass_canvas(preprocess.fit_box(ink))
    return np.rint(digit * 255).astype(np.uint8)

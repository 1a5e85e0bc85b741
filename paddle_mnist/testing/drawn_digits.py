"""Digits as people draw them on the page's 280 px pad: stroke templates, placed, sized, tilted and squashed.

Each digit has the ways of writing it that people use (open and closed 4, crossed 7, 1 with and
without flag and base, looped and plain 2, ...), as polylines in a unit box (x right, y down).  A
drawing takes one, scales it from small in a corner to filling the pad, tilts it by up to 15
degrees, squashes it, samples points every few pixels as pointer events arrive, and adds a hand's
tremor.  ``as_png`` renders it as the page used to send it (white pad, 20 px round pen);
``strokes.render`` draws it from the strokes.  Used by ``tests/test_strokes.py`` and
``scripts/bench_drawn.py``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

PAD, PEN = 280, 20  # the page's canvas and its pen (static/app.js)


def arc(cx, cy, rx, ry, start, end, n=24):
    """Points on an ellipse from angle ``start`` to ``end`` (degrees, 0 = right, 90 = down)."""
    t = np.deg2rad(np.linspace(start, end, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def line(*points):
    return np.array(points, dtype=float)


def joined(*parts):
    return np.concatenate(parts)


TEMPLATES = {
    0: {
        "oval": [arc(0.5, 0.5, 0.32, 0.48, -90, 275)],
        "round": [arc(0.5, 0.5, 0.45, 0.48, -100, 260)],
    },
    1: {
        "stroke": [line((0.5, 0.0), (0.5, 1.0))],
        "flag": [line((0.3, 0.2), (0.55, 0.0), (0.55, 1.0))],
        "flag_base": [line((0.3, 0.2), (0.55, 0.0), (0.55, 1.0)), line((0.3, 1.0), (0.8, 1.0))],
    },
    2: {
        "plain": [joined(arc(0.5, 0.3, 0.35, 0.3, 200, 380), line((0.8, 0.45), (0.1, 1.0), (0.9, 1.0)))],
        "looped": [
            joined(
                arc(0.5, 0.3, 0.35, 0.3, 200, 380),
                line((0.8, 0.45), (0.2, 0.95)),
                arc(0.25, 0.88, 0.1, 0.1, -60, 200),
                line((0.2, 0.95), (0.9, 1.0)),
            )
        ],
    },
    3: {
        "curly": [joined(arc(0.45, 0.26, 0.35, 0.25, 200, 450), arc(0.45, 0.74, 0.4, 0.26, -90, 150))],
        "flat_top": [joined(line((0.1, 0.0), (0.85, 0.0), (0.4, 0.42)), arc(0.45, 0.7, 0.4, 0.3, -90, 150))],
    },
    4: {
        "open": [line((0.25, 0.0), (0.1, 0.6), (0.9, 0.6)), line((0.7, 0.15), (0.7, 1.0))],
        "closed": [line((0.7, 0.0), (0.05, 0.65), (0.95, 0.65)), line((0.7, 0.0), (0.7, 1.0))],
    },
    5: {
        "two_strokes": [
            joined(line((0.25, 0.0), (0.2, 0.45)), arc(0.45, 0.7, 0.38, 0.3, -120, 150)),
            line((0.25, 0.0), (0.85, 0.0)),
        ],
        "one_stroke": [joined(line((0.85, 0.0), (0.25, 0.0), (0.2, 0.45)), arc(0.45, 0.7, 0.38, 0.3, -120, 150))],
    },
    6: {
        "plain": [joined(arc(0.75, 0.55, 0.65, 0.55, 250, 180), arc(0.5, 0.72, 0.33, 0.28, 180, 540))],
        "straight": [joined(line((0.7, 0.0), (0.2, 0.6)), arc(0.5, 0.72, 0.32, 0.28, 200, 560))],
    },
    7: {
        "plain": [line((0.05, 0.0), (0.95, 0.0), (0.35, 1.0))],
        "crossed": [line((0.05, 0.0), (0.95, 0.0), (0.35, 1.0)), line((0.35, 0.5), (0.85, 0.5))],
        "hooked": [line((0.05, 0.15), (0.05, 0.0), (0.95, 0.0), (0.45, 1.0))],
    },
    8: {
        "figure": [
            joined(
                arc(0.5, 0.25, 0.3, 0.25, 90, -250),
                arc(0.5, 0.74, 0.38, 0.26, -90, 270),
                arc(0.5, 0.25, 0.3, 0.25, 110, 95, 3),
            )
        ],
        "two_loops": [arc(0.5, 0.25, 0.28, 0.25, 0, 360), arc(0.5, 0.74, 0.38, 0.26, -90, 270)],
    },
    9: {
        "straight": [joined(arc(0.5, 0.3, 0.35, 0.3, 0, 360), line((0.85, 0.3), (0.75, 1.0)))],
        "curved": [
            joined(arc(0.5, 0.3, 0.35, 0.3, 0, 360), line((0.85, 0.3), (0.8, 0.8)), arc(0.55, 0.8, 0.25, 0.2, 0, 120))
        ],
    },
}


def drawing(label: int, style: str, rng: np.random.Generator) -> list[np.ndarray]:
    """One drawing of ``label`` in ``style`` on the pad: a list of strokes, [N,2] pad pixels each."""
    size = PAD * np.exp(rng.uniform(np.log(0.2), np.log(0.95)))  # small in a corner (56 px) .. filling the pad
    squash = rng.uniform(0.55, 1.25)  # narrower or wider than the template
    tilt = np.deg2rad(rng.uniform(-20, 20))
    rotation = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    shapes = [((wobble(s, rng) - 0.5) * [squash * 0.75, 1.0]) @ rotation.T * size for s in TEMPLATES[label][style]]
    low = np.min([s.min(axis=0) for s in shapes], axis=0)
    high = np.max([s.max(axis=0) for s in shapes], axis=0)
    margin = PEN / 2 + 2
    room = np.maximum(PAD - 2 * margin - (high - low), 0)
    offset = margin - low + rng.uniform(0, 1, 2) * room  # anywhere the digit fits
    return [tremble(resample(s + offset, step=rng.uniform(2, 6)), rng) for s in shapes]


def wobble(template: np.ndarray, rng: np.random.Generator, amount: float = 0.05) -> np.ndarray:
    """The template as one hand draws it: each point moved by a smooth random offset of up to a few
    percent of the box (a sum of two slow sines along the stroke, different for x and y)."""
    t = np.linspace(0, 1, len(template))[:, None]
    phase, frequency = rng.uniform(0, 2 * np.pi, (2, 2)), rng.uniform(0.5, 2, (2, 2))
    offset = sum(np.sin(2 * np.pi * frequency[k] * t + phase[k]) for k in range(2)) / 2
    return template + amount * offset * rng.uniform(0.5, 1.0, 2)


def resample(points: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` pixels along the polyline, as pointer events arrive while a pen moves."""
    lengths = np.r_[0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    at = np.linspace(0, lengths[-1], max(2, int(lengths[-1] / step) + 1))
    return np.stack([np.interp(at, lengths, points[:, k]) for k in (0, 1)], 1)


def tremble(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(points + rng.normal(0, 1.0, points.shape), 0, PAD)


WIDE_PAD = (560, 280)  # the page's pad for numbers (static/index.html)


def number(labels: list[int], rng: np.random.Generator, styles: list[str] | None = None, pad=WIDE_PAD) -> list:
    """A number drawn on the wide pad, left to right: each digit drawn as ``drawing`` draws one (its own
    template, wobble, tilt and squash), brought to a common height (varied by 10 % a digit), a gap of
    0.1-0.5 of that height apart, on a baseline that wanders a little.  The strokes, digit by digit."""
    styles = styles or [str(rng.choice(list(TEMPLATES[label]))) for label in labels]
    height = pad[1] * rng.uniform(0.35, 0.7)
    digits = []
    for label, style in zip(labels, styles):
        strokes = drawing(label, style, rng)
        points = np.concatenate(strokes)
        low, high = points.min(axis=0), points.max(axis=0)
        scale = height * rng.uniform(0.9, 1.1) / max(high[1] - low[1], 1.0)
        digits.append([(s - low) * scale for s in strokes])
    widths = [max(s[:, 0].max() for s in d) for d in digits]
    gaps = [height * rng.uniform(0.1, 0.5) for _ in digits[1:]] + [0.0]
    total = sum(widths) + sum(gaps)
    fit = min(1.0, (pad[0] - 2 * PEN) / total)  # a long number is drawn smaller, as a hand would
    x = (pad[0] - total * fit) / 2
    out = []
    for strokes, width, gap in zip(digits, widths, gaps):
        top = (pad[1] - height * fit) / 2 + rng.uniform(-0.05, 0.05) * height
        out.extend(np.clip(s * fit + [x, top], 0, pad) for s in strokes)
        x += (width + gap) * fit
    return out


def as_png(strokes: list[np.ndarray], pad=(PAD, PAD)) -> bytes:
    """The drawing as the page drew it on its canvas: black, a 20 px round pen on a white pad (280 px)."""
    from paddle_mnist.strokes import draw_pen

    image = Image.new("L", pad, 255)
    draw_pen(ImageDraw.Draw(image), strokes, PEN, 0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def as_json(strokes: list[np.ndarray], pad=(PAD, PAD)) -> dict:
    """The body the page sends: ``{"strokes": [[[x, y], ...], ...], "width", "height"}``."""
    return {"strokes": [np.round(s, 1).tolist() for s in strokes], "width": pad[0], "height": pad[1]}


def benchmark(n: int, seed: int = 0) -> list[tuple[int, str, list[np.ndarray]]]:
    """``n`` drawings (label, style, strokes), the digits and their styles in turn."""
    rng = np.random.default_rng(seed)
    kinds = [(label, style) for label, styles in TEMPLATES.items() for style in styles]
    by_label = {label: [s for lab, s in kinds if lab == label] for label in TEMPLATES}
    out = []
    for i in range(n):
        label = i % 10
        style = by_label[label][(i // 10) % len(by_label[label])]
        out.append((label, style, drawing(label, style, rng)))
    return out

"""A drawing's strokes rendered as an MNIST digit: the size of the digit no longer decides its strokes' width."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paddle_mnist import preprocess, strokes
from paddle_mnist.testing import drawn_digits


def rendered(points, width=280, height=280, pen=strokes.PEN):
    return strokes.render(strokes.parse({"strokes": points, "width": width, "height": height}), pen)


def stroke_width(pixels: np.ndarray) -> float:
    """Mean width of the ink across a vertical bar: inked pixels per inked row."""
    ink = pixels > 127
    rows = ink.any(axis=1)
    return ink.sum() / rows.sum()


def test_a_digit_is_drawn_at_mnists_size_with_a_pen_in_proportion():
    """The same 1 drawn 40 px and 240 px tall gives the same 28x28 digit: 20 px tall, about 3 px wide
    (PEN of the box), its centre of mass in the middle."""
    small = rendered([[[30, 20], [30, 60]]])
    large = rendered([[[140, 20], [140, 260]]])
    for pixels in (small, large):
        assert pixels.dtype == np.uint8 and pixels.shape == (28, 28)
        rows = np.flatnonzero(pixels.max(axis=1) > 0)
        assert rows[-1] - rows[0] + 1 in (20, 21)
        assert 2 <= stroke_width(pixels) <= 4
        mass = pixels.astype(float) / pixels.sum()
        assert (
            abs((mass.sum(axis=1) @ np.arange(28)) - 13.5) <= 1 and abs((mass.sum(axis=0) @ np.arange(28)) - 13.5) <= 1
        )
    assert np.abs(small.astype(int) - large.astype(int)).mean() < 8
    assert 0 < (small > 0).sum() - (small == 255).sum(), "anti-aliased edges, not a hard mask"


def test_the_pad_pen_makes_a_small_digit_a_blob_where_strokes_do_not():
    """The case that motivated strokes: a small 8 with the pad's 20 px pen fills its box as a picture.  The
    picture's thinning (``preprocess.thinned``) takes the blob down to about the strokes' ink, but no loop the
    pen filled comes back: strokes keep them."""
    small_eight = drawn_digits.benchmark(10, seed=0)[8][2]
    small_eight = [s * 0.25 + 20 for s in small_eight]
    image = preprocess.open_image_bytes(drawn_digits.as_png(small_eight))
    ink = preprocess.crop_to_ink(preprocess.level_background(preprocess.ink_map(image)[0]))
    blob = preprocess.center_of_mass_canvas(preprocess.fit_box(ink))
    drawing = strokes.render(strokes.parse(drawn_digits.as_json(small_eight))) > 127
    assert (blob > 0.5).mean() > 1.4 * drawing.mean()
    picture = preprocess.mnist_like(image) > 127
    assert picture.mean() < 1.2 * drawing.mean()
    assert holes(drawing) == 2 and holes(picture) == 0


def holes(inked: np.ndarray) -> int:
    """How many regions of paper the ink encloses (4-connected paper not reaching the border)."""
    import cc3d

    paper, count = cc3d.connected_components(~inked, connectivity=4, return_N=True)
    border = set(np.concatenate([paper[0], paper[-1], paper[:, 0], paper[:, -1]]).tolist())
    return len(set(range(1, count + 1)) - border)


def test_empty_drawings_and_dots_are_no_digit():
    for points in ([], [[]], [[[140, 140]]], [[[140, 140], [141, 141]]]):
        with pytest.raises(preprocess.NoDigitFound, match="no digit found"):
            rendered(points)


def test_the_largest_drawing_fits_the_json_limit_and_renders_quickly():
    import time

    points = [[[float(i % 280) + 0.5, float(i // 280 % 280) + 0.5] for i in range(strokes.MAX_POINTS)]]
    body = json.dumps({"strokes": points, "width": 280, "height": 280})
    assert len(body) < strokes.MAX_BYTES
    start = time.perf_counter()
    strokes.render(strokes.parse(json.loads(body)))
    assert time.perf_counter() - start < 5  # generous: it takes ~0.1 s; a per-point blow-up would take minutes


@pytest.mark.parametrize("pad", [(280, 280), (600, 300)])
def test_coordinates_may_leave_the_pad_by_a_margin_only(pad):
    width, height = pad
    inside = [[[-0.2 * width, 10], [1.2 * width, 1.2 * height]]]
    assert rendered(inside, width, height).max() > 0
    with pytest.raises(strokes.StrokesError, match="outside"):
        rendered([[[-0.3 * width, 10], [10, 10]]], width, height)

"""Reading whole numbers (issue 31): every digit of a picture, left to right, through the Python API and
the command; MNIST's own digits read as the model reads them; the parts of one digit kept together."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from paddle_mnist import calibration, reading, segment, touching
from paddle_mnist.predict import Predictor
from paddle_mnist.testing.numbers import number_picture

from fixtures import run_python


@pytest.fixture(scope="module")
def readable(trained_dir, shared_eval):
    """Eval digits (of the first 300) the model reads right on their own, by class: a test of finding the
    digits must not fail on the model misreading one."""
    predictor = Predictor.from_dir(trained_dir)
    pixels, labels = shared_eval.pixels[:300], shared_eval.class_ids[:300]
    outputs = predictor.forward(predictor.encoding.to_floats(pixels)[:, None].astype(np.float32))
    right = predictor.loss.digits(outputs) == labels
    return {k: [pixels[i] for i in np.flatnonzero(right & (labels == k))] for k in range(10)}


def test_mnist_digits_read_as_the_model_reads_them(trained_dir, shared_eval):
    """MNIST's own digits, passed as arrays or saved as 28x28 PNGs, are read exactly as the model reads the
    data set: nothing re-crops or re-fits a digit already in MNIST's form."""
    predictor = Predictor.from_dir(trained_dir).without_rejection()  # the digit read, even where it would refuse
    pixels = shared_eval.pixels[:200]
    outputs = predictor.forward(predictor.encoding.to_floats(pixels)[:, None].astype(np.float32))
    read = [r.digit for r in predictor.predict(list(pixels))]
    assert read == predictor.loss.digits(outputs).tolist()


def test_a_number_is_read_left_to_right_with_boxes(trained_dir, readable, tmp_path):
    digits = [readable[2][0], readable[0][0], readable[2][1], readable[6][0]]
    picture = tmp_path / "2026.png"
    number_picture(digits, gap=6, specks=12).save(picture)
    result = run_python("-m", "paddle_mnist.predict", picture, "--model-dir", trained_dir, "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["text"] == "2026" and "digit" not in row, row
    assert 0 < row["probability"] <= min(d["probability"] for d in row["digits"])
    boxes = [d["box"] for d in row["digits"]]
    assert all(a[2] <= b[0] for a, b in zip(boxes, boxes[1:])), boxes  # left to right, apart
    assert all(0 <= x0 < x1 <= 4 * 200 and 0 <= y0 < y1 <= 4 * 52 for x0, y0, x1, y1 in boxes), boxes
    text = run_python("-m", "paddle_mnist.predict", picture, "--model-dir", trained_dir, "--verbose")
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"{picture}: 2026 (p=") and len(lines) == 5 and lines[1].startswith("  2 at [")
    single = Predictor.from_dir(trained_dir).predict(str(picture), single=True)  # what --single asks for
    # one mark, the whole picture (read or refused: four digits squashed into one box are hardly a digit)
    assert len(single.digits) == 1 and single.digits[0].box == (0, 0, *Image.open(picture).size)
    why = tmp_path / "why.png"
    explained = run_python("-m", "paddle_mnist.predict", picture, "--model-dir", trained_dir, "--explain", why)
    assert f"wrote {why} (4 explained)" in explained.stderr and why.stat().st_size > 0  # a row per digit


def test_one_digit_keeps_its_fields_and_specks_are_ignored(trained_dir, readable):
    predictor = Predictor.from_dir(trained_dir)
    result = predictor.predict(number_picture([readable[7][0]], specks=20, seed=3))
    assert (result.digit, result.text, len(result.digits)) == (7, "7", 1)
    assert result.probability == result.digits[0].probability and result.topk == result.digits[0].topk


def test_the_bound_on_digits_per_picture_is_said(trained_dir, readable, tmp_path):
    picture = tmp_path / "long.png"
    number_picture([readable[k % 10][0] for k in range(9)], scale=2).save(picture)
    result = run_python("-m", "paddle_mnist.predict", picture, "--model-dir", trained_dir, "--max-digits", "5")
    assert result.returncode == 0, result.stderr
    assert "; 4 more marks not read (--max-digits)" in result.stdout
    assert len(result.stdout.split(": ")[1].split(" ")[0]) == 5


def stroke(ink: np.ndarray, rows: slice, cols: slice) -> None:
    ink[rows, cols] = 1.0


def test_the_parts_of_one_digit_stay_one_digit():
    """A 5 whose flag was drawn apart, a 7 with a crossbar, a 4 in two strokes: each one part; a speck far
    from the line dropped; two digits apart, two parts."""
    ink = np.zeros((60, 300), np.float32)
    stroke(ink, slice(10, 12), slice(22, 34))  # the 5's flag, apart from its body
    stroke(ink, slice(16, 50), slice(12, 28))  # the 5's body (a block is enough for the columns)
    stroke(ink, slice(10, 50), slice(60, 64))  # the 7's stem
    stroke(ink, slice(28, 30), slice(54, 70))  # its crossbar, a separate stroke
    stroke(ink, slice(10, 36), slice(100, 103))  # the 4's first stroke: down and across
    stroke(ink, slice(33, 36), slice(100, 120))
    stroke(ink, slice(14, 50), slice(112, 115))  # its second stroke, crossing the bar
    stroke(ink, slice(55, 57), slice(200, 202))  # a speck
    stroke(ink, slice(10, 50), slice(250, 256))  # a 1
    found = segment.find_parts(ink)
    assert [(p.x0, p.x1) for p in found.parts] == [(12, 34), (54, 70), (100, 120), (250, 256)]
    assert found.left_out == 0


def test_a_stroke_that_did_not_reach_is_joined_and_touching_digits_are_cut(trained_dir, readable):
    ink = np.zeros((60, 200), np.float32)
    stroke(ink, slice(10, 50), slice(20, 40))
    stroke(ink, slice(40, 50), slice(44, 52))  # short, 4 columns off: part of the digit before it
    assert [(p.x0, p.x1) for p in segment.find_parts(ink).parts] == [(20, 52)]
    predictor = Predictor.from_dir(trained_dir)
    zeros = number_picture([readable[0][0], readable[0][1], readable[0][2]], gap=-1)
    assert predictor.predict(zeros).text == "000"


def test_a_page_of_marks_costs_what_its_bounds_allow(trained_dir, readable):
    """Hundreds of specks are ignored; a page of 40 digits reads the 12 heaviest and says how many it left."""
    predictor = Predictor.from_dir(trained_dir)
    specked = predictor.predict(number_picture([readable[4][0], readable[2][0]], specks=300, seed=1, margin=48))
    assert specked.text == "42"
    page = number_picture([readable[k % 10][k // 10] for k in range(40)], scale=2)
    result, everything = predictor.predict(page), predictor.predict(page, max_digits=60)
    assert len(everything.text) >= 40 and everything.left_out is None
    assert len(result.digits) == 12 and result.left_out == len(everything.text) - 12


def test_the_python_api_reads_a_drawing_sent_as_strokes(trained_dir):
    """``Predictor.predict`` takes a ``strokes.Drawing`` as the server does: a 5 whose flag was drawn last, a
    7 with a crossbar and a 4 in two strokes, grouped by where the strokes lie, three digits (the test's
    briefly trained model may take the crossed 7 for a 2)."""
    from paddle_mnist import strokes
    from paddle_mnist.testing import drawn_digits

    drawn = drawn_digits.number([5, 7, 4], np.random.default_rng(2), styles=["two_strokes", "crossed", "open"])
    drawn.append(drawn.pop(1))  # the 5's flag, last
    result = Predictor.from_dir(trained_dir).predict(strokes.Drawing(tuple(drawn), *drawn_digits.WIDE_PAD))
    assert (result.source, len(result.digits), result.text[0], result.text[2]) == ("strokes", 3, "5", "4")


def test_a_part_read_as_nothing_but_ones_is_read_whole():
    """The strokes of an m cut apart read 1, 1, 1: the part is read whole (and refused, if it is not a
    digit); a cut into a 1 and a 7 stands, and so does a part whose whole reads best."""
    from paddle_mnist.reading import Lattice, Plan

    def scores(*rows):
        out = np.full((len(rows), 10), 0.01)
        for k, (digit, p) in enumerate(rows):
            out[k, digit] = p
        return out

    # inputs: 0 the whole part, 1-3 its three pieces
    lattice = Lattice(3, {(0, 3): 0, (0, 1): 1, (1, 2): 2, (2, 3): 3})
    plan = Plan([np.zeros((28, 28), np.uint8)] * 4, [None] * 4, [lattice])
    assert plan.read(scores((4, 0.3), (1, 0.99), (1, 0.99), (1, 0.99))) == ([0], 0)
    assert plan.read(scores((4, 0.3), (1, 0.99), (7, 0.99), (1, 0.99))) == ([1, 2, 3], 0)
    assert plan.read(scores((8, 0.99), (1, 0.5), (1, 0.5), (1, 0.5))) == ([0], 0)


def test_marks_two_pixels_wide_in_a_line_three_tall_are_read():
    """Fashion-MNIST t10k #926 (a dark shirt, its buttons and collar faint marks) made the cut search index
    past a part two pixels wide: ``np.convolve(..., "same")`` of two columns is three long.  Such a part has
    no room for a cut."""
    from paddle_mnist import reading

    picture = np.full((28, 28), 1.0)
    picture[10:13, 6:8] = picture[0:5, 11:16] = picture[10:13, 20:22] = 0.0
    plan = reading.plan(picture, refuses_pairs=True)
    assert [lattice.ends for lattice in plan.lattices] == [1, 2, 1]


def test_a_refused_piece_among_digits_gives_way_to_accepted_pieces():
    """Two touching digits read whole beside another digit: the whole reads best (0.9) but is refused, so the
    cut into two accepted pieces (0.8 each) is read instead.  A mark alone keeps its refused whole (a letter
    cut until its pieces pass would be accepted), and so does a part with no way made of accepted pieces."""
    from paddle_mnist.reading import Lattice, Plan

    scores = np.full((4, 10), 0.01)
    scores[[0, 1, 2, 3], [4, 1, 7, 3]] = [0.9, 0.8, 0.8, 0.99]  # 0 the pair whole, 1-2 its pieces, 3 the other
    pair = Lattice(2, {(0, 2): 0, (0, 1): 1, (1, 2): 2})
    blank = [np.zeros((28, 28), np.uint8)] * 4
    in_line = Plan(blank, [None] * 4, [pair, Lattice(1, {(0, 1): 3})])
    refused = np.array([True, False, False, False])
    assert in_line.read(scores) == ([0, 3], 0)
    assert in_line.read(scores, refused) == ([1, 2, 3], 0)
    assert in_line.read(scores, np.array([True, True, False, False])) == ([0, 3], 0)  # no accepted way
    alone = Plan(blank[:3], [None] * 3, [pair])
    assert alone.read(scores[:3], refused[:3]) == ([0], 0)


def test_a_cut_costs_the_strokes_it_crosses_for_a_model_that_refuses_pairs(trained_dir, tiny_run):
    """A cut across three strokes (a letter's or a shape's middle) costs 0.75 log-probability: two pieces read at
    0.9 each lose to the whole at 0.5; across half a stroke (where two digits touch) they win.  The crossing
    is counted only for a model trained with outliers (two digits in one box among them), which the
    predictor knows from its run's recipe."""
    from paddle_mnist.reading import CROSSING, Lattice, Plan

    scores = np.full((3, 10), 0.01)
    scores[0, 4], scores[1, 1], scores[2, 7] = 0.5, 0.9, 0.9  # inputs: the whole part, its two pieces
    spans = {(0, 2): 0, (0, 1): 1, (1, 2): 2}
    pieces = [np.zeros((28, 28), np.uint8)] * 3
    assert CROSSING == 0.25
    assert Plan(pieces, [None] * 3, [Lattice(2, spans, (0.0, 3.0, 0.0))]).read(scores) == ([0], 0)
    assert Plan(pieces, [None] * 3, [Lattice(2, spans, (0.0, 0.5, 0.0))]).read(scores) == ([1, 2], 0)
    assert Plan(pieces, [None] * 3, [Lattice(2, spans)]).read(scores) == ([1, 2], 0)
    ink = np.zeros((20, 30), np.float32)  # an E: three bars 2 pixels thick and its back
    for row in (2, 9, 16):
        stroke(ink, slice(row, row + 2), slice(0, 30))
    stroke(ink, slice(0, 20), slice(0, 2))
    [three], [one] = segment.crossed(ink, np.full((1, 20), 15)), segment.crossed(ink[:8], np.full((1, 8), 15))
    assert 2 <= three <= 3.5 and 0.5 <= one <= 1.5, (three, one)
    assert Predictor.from_dir(trained_dir).refuses_pairs and not Predictor.from_dir(tiny_run).refuses_pairs


def test_a_cut_follows_the_slant_of_digits_that_lean():
    """Two bars leaning right, a column between them at the top: a straight cut there crosses the first bar
    lower down, the cut's path (``cut_paths``, within 6 columns of its column) follows the gap and crosses
    none; the piece left of it is the first bar, whole, and nothing of the second."""
    first, second = np.zeros((40, 40), np.float32), np.zeros((40, 40), np.float32)
    for y in range(40):
        stroke(first, slice(y, y + 1), slice(8 + y // 4, 11 + y // 4))
        stroke(second, slice(y, y + 1), slice(17 + y // 4, 20 + y // 4))
    ink = first + second
    straight = segment.cut_paths(ink, [0, 15, 40], reach=0)
    [path] = segment.cut_paths(ink, [15], reach=6)
    assert segment.crossed(ink, straight[1:2])[0] >= 1 and segment.crossed(ink, path[None])[0] == 0
    assert (straight[0] == 0).all() and (straight[2] == 40).all()  # the part's edges stay where they are
    whole = segment.Part(0, 0, 40, 40, float(ink.sum()), frozenset([1]))
    piece, kept = segment.Found([whole], (ink > 0).astype(np.int64), 40).piece(ink, whole, straight[0], path)
    assert kept.shape == (40, path.max()) and not first[:, path.max() :].any()  # a window as wide as the piece
    np.testing.assert_array_equal(kept, first[:, : path.max()])
    assert (piece.x0, piece.y0, piece.x1, piece.y1) == (8, 0, 20, 40)


def test_in_a_number_touching_digits_that_overlap_are_also_cut_along_paths_that_bend(monkeypatch):
    """Two bars leaning far (30 columns over 80 rows) and touching at the foot, wider than the line is tall, beside
    a digit: no cut within 5 % of a line height of a column parts them (each crosses a bar), a cut within
    ``IN_LINE_SLANTS`` does: one piece is the first bar whole and nothing of the second.  The pieces the
    training's outliers are made of are cut as before (``training=True``), and so is the same pair alone."""
    first, rest = np.zeros((120, 200), np.float32), np.zeros((120, 200), np.float32)
    stroke(rest, slice(20, 100), slice(12, 18))  # the neighbour: a 1
    for y in range(20, 100):
        lean = 3 * (y - 20) // 8
        stroke(first, slice(y, y + 1), slice(60 + lean, 66 + lean))
        stroke(rest, slice(y, y + 1), slice(84 + lean, 90 + lean))
    stroke(rest, slice(96, 100), slice(95, 150))  # where they touch, and the second's foot: 90 columns in all

    def picture(ink: np.ndarray) -> np.ndarray:
        return np.rint(255 * (1 - np.minimum(ink, 1))).astype(np.uint8)

    (bar,) = reading.plan(picture(first), single=True).pixels

    def holds_the_bar(pieces: list[np.ndarray]) -> bool:
        return any((pixels == bar).all() for pixels in pieces)

    def cut(ink: np.ndarray, training: bool = False) -> list[np.ndarray]:
        return reading.plan(picture(ink), refuses_pairs=True, training=training).pixels

    alone = rest.copy()
    alone[:, :40] = 0  # no neighbour
    assert holds_the_bar(cut(first + rest))
    assert not holds_the_bar(cut(first + rest, training=True)) and not holds_the_bar(cut(first + alone))
    training = touching.pieces(Image.fromarray(picture(first + rest)), [(12, 18), (60, 95), (84, 150)])
    assert len(training) > 1 and not holds_the_bar([pixels for pixels, _, _ in training])
    monkeypatch.setattr(reading, "IN_LINE_SLANTS", ())
    assert not holds_the_bar(cut(first + rest))


def test_the_marks_of_a_number_are_among_others_the_pieces_of_one_are_not(trained_dir, readable):
    """``predict`` judges a number's digits among others (``calibration.AMONG_OTHERS``): a digit read at p
    is kept under a threshold of 1.5 p and refused under 2.5 p; the pieces one mark is cut into are not apart."""
    number = number_picture([readable[4][0], readable[7][0]], gap=6)
    predictor = Predictor.from_dir(trained_dir).without_rejection()
    sure = [d.probability for d in predictor.predict(number).digits]
    least = int(np.argmin(sure))
    for times, refused in ((1.5, False), (2.5, True)):
        judge = dataclasses.replace(predictor.calibration, score="msp", threshold=times * sure[least])
        read = dataclasses.replace(predictor, calibration=judge).predict(number)
        assert (read.digits[least].reason == "not a digit") == refused and len(read.digits) == 2
    apart = reading.plan(number)
    touching = reading.plan(number_picture([readable[0][0], readable[0][1]], gap=-1), refuses_pairs=True)
    alone = reading.plan(number_picture([readable[4][0]]))
    assert apart.among_others and len(apart.lattices) == 2
    assert not touching.among_others and len(touching.pixels) > 1  # one part, cut into pieces
    assert not alone.among_others
    assert (apart.margins == calibration.AMONG_OTHERS).all() and not alone.margins.any()
    whole = touching.lattices[0].spans[(0, touching.lattices[0].ends)]
    assert touching.margins[whole] == 0 and (np.delete(touching.margins, whole) == -calibration.CUT_ALONE).all()


def test_a_narrow_mark_alone_is_cut_for_a_model_that_refuses_pairs_its_pieces_judged_at_1_over_1_75():
    """A 1 touching a 7, alone on the picture and narrower than tall, is one mark to a model that reads pairs
    (``TRY_CUTS``) and in the training's cuts; a model that refuses pairs reads it cut too (from
    ``TRY_CUTS_IN_LINE``), each piece judged ``calibration.CUT_NARROW`` less digit-like, the whole as it is."""
    ink = np.zeros((120, 160), np.float32)
    stroke(ink, slice(20, 100), slice(30, 37))  # the 1
    stroke(ink, slice(20, 27), slice(37, 95))  # the 7's bar, touching the 1
    for y in range(27, 100):
        x = 95 - (y - 27) * 30 // 73
        stroke(ink, slice(y, y + 1), slice(x - 6, x + 1))
    picture = np.rint(255 * (1 - ink)).astype(np.uint8)
    assert len(reading.plan(picture).pixels) == 1
    assert len(reading.plan(picture, refuses_pairs=True, training=True).pixels) == 1
    cut = reading.plan(picture, refuses_pairs=True)
    whole = cut.lattices[0].spans[(0, cut.lattices[0].ends)]
    assert len(cut.pixels) > 1 and cut.margins[whole] == 0
    assert (np.delete(cut.margins, whole) == -calibration.CUT_NARROW).all()

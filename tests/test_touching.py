"""The digits the reading cuts out of touching numbers (``touching``), trained as their digits under
``--cut-digits``."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mnist import notdigits, reading, touching
from paddle_mnist.config import Config
from paddle_mnist.errors import UserError
from paddle_mnist.testing.numbers import digit_columns, number_picture


def test_the_right_pieces_of_two_digits_are_each_digit_and_no_misfit(shared_eval):
    """A 4 and a 7, touching (one part, cut) or apart: the pieces that hold one digit are labelled with it,
    both digits are among them, and none of them is a misfit."""
    four, seven = (shared_eval.pixels[np.flatnonzero(shared_eval.class_ids == k)[0]] for k in (4, 7))
    for gap in (-1, 8):
        picture = number_picture([four, seven], gap=gap, scale=4, margin=12)
        spans = digit_columns([four, seven], gap, scale=4, margin=12)
        right = touching.right_pieces(picture, spans, [4, 7])
        assert len(reading.plan(picture, refuses_pairs=True).lattices) == (1 if gap < 0 else 2)
        assert sorted({digit for _, digit in right}) == [4, 7]
        wrong = notdigits.straddling(picture, spans)
        assert not any((pixels == piece).all() for pixels, _ in right for piece in wrong)


def test_cut_digits_come_from_the_seed_with_their_digits(shared_eval):
    pixels, class_ids = shared_eval.pixels[:300], shared_eval.class_ids[:300]
    made, digits = touching.cut_digits(pixels, class_ids, 12, seed=3)
    assert made.shape == (12, 28, 28) and made.dtype == np.uint8 and digits.dtype == class_ids.dtype
    assert set(digits.tolist()) <= set(class_ids.tolist()) and made.any(axis=(1, 2)).all()
    again, same = touching.cut_digits(pixels, class_ids, 12, seed=3)
    assert (again == made).all() and (same == digits).all()
    assert not (touching.cut_digits(pixels, class_ids, 12, seed=4)[0] == made).all()


def test_the_recipe_flag_is_on_in_fast_and_only_for_digits():
    assert not Config().cut_digits and Config.from_preset("fast").cut_digits
    assert not Config.from_preset("fast", cut_digits=False).cut_digits
    assert not Config.from_preset("fast", dataset="fashion-mnist").cut_digits  # the preset, without them
    with pytest.raises(UserError, match="--cut-digits cuts digits out of touching numbers: the fashion-mnist data"):
        Config(dataset="fashion-mnist", cut_digits=True)

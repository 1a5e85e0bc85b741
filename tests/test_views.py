"""Test-time views: the warps are the moves, turns and scalings they are named for."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mnist import views


def patch(background: float = 0.0) -> np.ndarray:
    """One [1,1,28,28] image: a 4x4 square of ink (1.0) at rows 10-13, columns 12-15."""
    image = np.full((1, 1, 28, 28), background, np.float32)
    image[..., 10:14, 12:16] = 1.0
    return image


@pytest.mark.parametrize("dy, dx", [(1, 0), (-1, 0), (0, 2), (-1, 1)])
def test_a_shift_moves_the_digit_by_whole_pixels(dy, dx):
    background = -0.5
    moved = views.warp(patch(background), views.affine(dy, dx), background)
    np.testing.assert_allclose(moved, np.roll(patch(background), (dy, dx), axis=(2, 3)), atol=1e-5)


def test_zoom_and_turns_scale_and_keep_the_ink():
    image = patch()
    ink = image.sum()
    assert views.warp(image, views.affine(), 0.0) == pytest.approx(image, abs=1e-5)
    assert views.warp(image, views.affine(scale=1.1), 0.0).sum() == pytest.approx(ink * 1.1**2, rel=0.05)
    assert views.warp(image, views.affine(scale=0.9), 0.0).sum() == pytest.approx(ink * 0.9**2, rel=0.05)
    turned = views.warp(image, views.affine(degrees=5), 0.0)
    assert turned.sum() == pytest.approx(ink, rel=0.05) and not np.allclose(turned, image, atol=0.05)


def test_every_view_set_is_described_and_named_views_are_distinct():
    assert set(views.DESCRIPTIONS) == set(views.VIEW_SETS) and views.VIEW_SETS["none"] == []
    every = [theta.tobytes() for theta in views.VIEW_SETS["all"]]
    assert len(every) == len(set(every)) == 18
    assert {t.tobytes() for name in ("zoom", "shifts", "rotate") for t in views.VIEW_SETS[name]} <= set(every)


def test_log_mean_is_the_log_of_the_mean_probability():
    a, b = np.array([[0.9, 0.1]]), np.array([[0.5, 0.5]])
    np.testing.assert_allclose(np.exp(views.log_mean([a, b])), [[0.7, 0.3]])

"""Small random shifts, rotations and scalings of a whole batch at once (one affine grid sample)."""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F

MAX_SHIFT_PX, MAX_ROTATE_DEG, MAX_SCALE = 2.0, 10.0, 0.1


def random_affine(images: paddle.Tensor, rng: np.random.Generator, background: float = 0.0) -> paddle.Tensor:
    """Warp each [1,28,28] image by its own random affine map; ``rng`` makes it reproducible.

    ``background`` is the encoded value of an empty pixel, so that pixels
    shifted in from outside the frame are blank in any pixel encoding.
    """
    n, _, h, w = images.shape
    angle = np.deg2rad(rng.uniform(-MAX_ROTATE_DEG, MAX_ROTATE_DEG, n))
    scale = rng.uniform(1 - MAX_SCALE, 1 + MAX_SCALE, n)
    shift = rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, (n, 2)) * 2 / np.array([w, h])
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    theta = np.stack([np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(paddle.to_tensor(theta.astype(np.float32)), [n, 1, h, w], align_corners=False)
    warped = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped + background

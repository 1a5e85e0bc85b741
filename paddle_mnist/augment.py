"""Small random shifts, rotations and scalings of a whole batch at once (one affine grid sample)."""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F

MAX_SHIFT_PX, MAX_ROTATE_DEG, MAX_SCALE = 2.0, 10.0, 0.1
SIZE = 28


def draw_affine(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random affine maps [n,2,3] in normalised coordinates.

    Drawn for a whole global batch, so data-parallel ranks that each take some
    rows still give every image the transform a single process would.
    """
    angle = np.deg2rad(rng.uniform(-MAX_ROTATE_DEG, MAX_ROTATE_DEG, n))
    scale = rng.uniform(1 - MAX_SCALE, 1 + MAX_SCALE, n)
    shift = rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, (n, 2)) * 2 / SIZE
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    return np.stack([np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1).astype(np.float32)


def apply_affine(images: paddle.Tensor, theta: np.ndarray, background: float = 0.0) -> paddle.Tensor:
    """Warp each [1,28,28] image by its map; ``background`` is the encoded value of an empty pixel,
    so pixels shifted in from outside the frame are blank in any pixel encoding."""
    grid = F.affine_grid(paddle.to_tensor(theta), list(images.shape), align_corners=False)
    warped = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped + background

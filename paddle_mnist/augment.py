"""Small random shifts, rotations and scalings of a whole batch at once (one affine grid sample)."""

from __future__ import annotations

import numpy as np

from paddle_mnist._paddle import paddle

F = paddle.nn.functional
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


# Handwriting-like distortions (``--distort``): what varies between writers and pens, beyond position.
ELASTIC_ALPHA, ELASTIC_SIGMA = 34.0, 4.0  # Simard et al. 2003: displacement scale and smoothness, in pixels
MAX_SHEAR, MAX_ASPECT = 0.2, 0.15


def draw_distortion(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For n images: affine maps with aspect and shear [n,2,3], raw displacement noise [n,2,28,28],
    and a pen change per image [n] (-1 thinner, 0 as written, 1 thicker); all drawn from ``rng``."""
    theta = draw_affine(rng, n)
    aspect = 1 + rng.uniform(-MAX_ASPECT, MAX_ASPECT, n)
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR, n)
    theta[:, 0, 0] *= aspect
    theta[:, 0, 1] += shear
    noise = rng.uniform(-1, 1, (n, 2, SIZE, SIZE)).astype(np.float32)
    return theta, noise, rng.integers(-1, 2, n)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(2 * sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


_KERNEL = _gaussian_kernel(ELASTIC_SIGMA)


def apply_distortion(
    images: paddle.Tensor, theta: np.ndarray, noise: np.ndarray, pen: np.ndarray, background: float = 0.0
) -> paddle.Tensor:
    """Elastic distortion (smoothed random displacements) on top of the affine map, in one grid
    sample, then the pen: half a 3x3 dilation thicker, or the stroke's soft edges faded thinner."""
    k, r = paddle.to_tensor(_KERNEL), len(_KERNEL) // 2
    field = paddle.to_tensor(noise)
    field = F.conv2d(field, k.reshape([1, 1, 1, -1]).tile([2, 1, 1, 1]), padding=[0, r], groups=2)
    field = F.conv2d(field, k.reshape([1, 1, -1, 1]).tile([2, 1, 1, 1]), padding=[r, 0], groups=2)
    field = field / (paddle.abs(field).max() + 1e-6) * (ELASTIC_ALPHA * _KERNEL.max() * 2 / SIZE)
    grid = F.affine_grid(paddle.to_tensor(theta), list(images.shape), align_corners=False)
    grid = grid + field.transpose([0, 2, 3, 1])
    ink = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    thicker = (ink + F.max_pool2d(ink, 3, 1, 1)) / 2  # half a dilation: a broader pen
    peak = ink.max(axis=[1, 2, 3], keepdim=True) + 1e-6
    thinner = ink * ink / peak  # soft edges fade, the core stays: a finer pen
    pen = paddle.to_tensor(pen.reshape(-1, 1, 1, 1).astype(np.float32))
    ink = paddle.where(pen > 0, thicker, paddle.where(pen < 0, thinner, ink))
    return ink + background

"""Shapes: 28x28 images of squares and (inverted) triangles (DASBE spec §4, GUST spec §3).

Bit-exact with the authors' generator. Per image, for each of the ``n_objects`` objects (labels 1..n in
draw order): ``shape = randint(0, 3)`` (0 square, 1 triangle, 2 inverted triangle), ``x = randint(0, W-w+1)``,
``y = randint(0, H-h+1)``. Single-shape sets with a fixed shape draw only x then y. The same code makes
DASBE's Shapes (3 objects) and GUST's multi-object files ``shapes_multiobj_<Ntr>_<Nte>``.

The authors seed 104174 first (for a preview figure that draws nothing) and then re-seed with 265076, so
every file starts from ``RandomState(265076)``.
"""

from __future__ import annotations

import numpy as np

from workbench.data.sprites import SHAPES, Scenes, paint_sprites

SHAPES_SEED = 265076
PREVIEW_SEED = 104174  # seeded by the authors before re-seeding; no draw is made from it
IMAGE_SHAPE = (28, 28)

__all__ = ["SHAPES_SEED", "IMAGE_SHAPE", "generate_shapes", "generate_single_shapes"]


def _bounds(image_shape: tuple[int, int]) -> tuple[list[int], list[int]]:
    h, w = image_shape
    x_hi = [w - s.shape[1] + 1 for s in SHAPES]
    y_hi = [h - s.shape[0] + 1 for s in SHAPES]
    if min(x_hi + y_hi) < 1:
        raise ValueError(f"image_shape {image_shape} is too small for the 7x12 triangle")
    return x_hi, y_hi


def _check_n(n: int, n_objects: int = 1) -> None:
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 1 <= int(n_objects) <= 255:
        raise ValueError(f"n_objects must be in 1..255, got {n_objects}")


def generate_shapes(n: int, rng: np.random.RandomState, n_objects: int = 3,
                    image_shape: tuple[int, int] = IMAGE_SHAPE) -> Scenes:
    """``n`` images of ``n_objects`` random shapes each, drawn from ``rng`` in the authors' order."""
    _check_n(n, n_objects)
    x_hi, y_hi = _bounds(image_shape)
    randint = rng.randint
    draws = []
    for _ in range(int(n) * int(n_objects)):  # shape, x, y: the x/y bounds depend on the shape drawn
        s = randint(0, 3)
        draws.append((s, randint(0, x_hi[s]), randint(0, y_hi[s])))
    kinds, xs, ys = np.array(draws, dtype=np.int64).reshape(int(n), int(n_objects), 3).transpose(2, 0, 1)
    return paint_sprites(image_shape, SHAPES, kinds, ys, xs)


def generate_single_shapes(n: int, rng: np.random.RandomState, shape: int,
                           image_shape: tuple[int, int] = IMAGE_SHAPE) -> Scenes:
    """``n`` images of one fixed ``shape`` (0 square, 1 triangle, 2 inverted), label 1; draws x then y."""
    _check_n(n)
    if shape not in (0, 1, 2):
        raise ValueError(f"shape must be 0 (square), 1 (triangle) or 2 (inverted triangle), got {shape!r}")
    x_hi, y_hi = _bounds(image_shape)
    # x0, y0, x1, y1, ...: one vectorised legacy randint with per-draw bounds makes the same calls in order
    xy = rng.randint(0, np.tile([x_hi[shape], y_hi[shape]], int(n))).reshape(int(n), 2) if n else np.zeros((0, 2))
    kinds = np.full((int(n), 1), shape)
    return paint_sprites(image_shape, SHAPES, kinds, xy[:, 1:], xy[:, :1])

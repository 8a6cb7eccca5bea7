"""Moving shapes: sequences of 28x28 frames with up to three bouncing Shapes sprites (DASBE spec §4, Fig 5).

Per sequence, frame by frame (t = 0..T-1):

1. if ``t mod 15 == 0`` and fewer than ``max_objects`` shapes are present, a new one appears; it draws
   ``shape = randint(0, 3)`` (skipped when the shape is fixed), ``direction = randint(0, 8)``,
   ``x = randint(0, W-w+1)``, ``y = randint(0, H-h+1)``;
2. all shapes are drawn (labels 1, 2, 3 by order of appearance; overlap -> 0);
3. every shape moves: ``x += dx``; if ``x > W-w`` then ``x = W-w-1, dx = -dx``; if ``x < 0`` then
   ``x = 1, dx = -dx``; the same for y.

Directions (dx, dy): (1,0), (-1,0), (0,1), (0,-1), (1,1), (1,-1), (-1,-1), (-1,1).
Sequences are ``[n, T, H, W]``. In the HDF5 file a split stores its frames flattened, ``[n*T, H, W]``, with
the file attribute ``frames = T``; :func:`read_sequences` gives them back as ``[n, T, H, W]``.
"""

from __future__ import annotations

import os

import numpy as np

from workbench.data.sprites import SHAPES, Scenes, paint_sprites
from workbench.data.store import DatasetFormatError, read_attrs, read_split

MOVING_SHAPES_SEED = 265076  # the authors seed 104174 first and re-seed before any draw
IMAGE_SHAPE = (28, 28)
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, -1), (-1, 1))
APPEAR_EVERY = 15
MAX_OBJECTS = 3

__all__ = ["MOVING_SHAPES_SEED", "DIRECTIONS", "generate_moving_shapes", "read_sequences"]


def _bounce(pos: int, step: int, limit: int) -> tuple[int, int]:
    pos += step
    if pos > limit:
        return limit - 1, -step
    if pos < 0:
        return 1, -step
    return pos, step


def generate_moving_shapes(n: int, rng: np.random.RandomState, *, frames: int = 200, max_objects: int = MAX_OBJECTS,
                           every: int = APPEAR_EVERY, shape: int | None = None,
                           image_shape: tuple[int, int] = IMAGE_SHAPE) -> Scenes:
    """``n`` sequences of ``frames`` frames, ``[n, frames, H, W]``; ``shape`` fixes the sprite (0, 1, 2)."""
    n, frames, max_objects, every = int(n), int(frames), int(max_objects), int(every)
    if n < 0 or frames < 1 or not 1 <= max_objects <= 255 or every < 1:
        raise ValueError(f"need n >= 0, frames >= 1, 1 <= max_objects <= 255 and every >= 1; got n={n}, "
                         f"frames={frames}, max_objects={max_objects}, every={every}")
    if shape not in (None, 0, 1, 2):
        raise ValueError(f"shape must be None (random), 0, 1 or 2; got {shape!r}")
    height, width = image_shape
    x_limit = [width - s.shape[1] for s in SHAPES]
    y_limit = [height - s.shape[0] for s in SHAPES]
    kinds = np.zeros((n, frames, max_objects), dtype=np.int64)
    xs, ys = np.zeros_like(kinds), np.zeros_like(kinds)
    present = np.zeros(kinds.shape, dtype=bool)
    randint = rng.randint
    for i in range(n):  # the draws depend on the frame count and on the shapes present
        objects: list[list[int]] = []  # [kind, x, y, dx, dy]
        for t in range(frames):
            if t % every == 0 and len(objects) < max_objects:
                s = randint(0, 3) if shape is None else shape
                dx, dy = DIRECTIONS[randint(0, 8)]
                x = randint(0, x_limit[s] + 1)
                y = randint(0, y_limit[s] + 1)
                objects.append([s, x, y, dx, dy])
            for j, obj in enumerate(objects):
                kinds[i, t, j], xs[i, t, j], ys[i, t, j] = obj[0], obj[1], obj[2]
                present[i, t, j] = True
                obj[1], obj[3] = _bounce(obj[1], obj[3], x_limit[obj[0]])
                obj[2], obj[4] = _bounce(obj[2], obj[4], y_limit[obj[0]])
    flat = lambda a: a.reshape(n * frames, max_objects)  # noqa: E731
    scenes = paint_sprites(image_shape, SHAPES, flat(kinds), flat(ys), flat(xs), present=flat(present))
    return Scenes(*(a.reshape(n, frames, height, width) for a in scenes))


def read_sequences(path: str | os.PathLike, split: str, *, start: int = 0,
                   stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sequences ``start:stop`` of a moving-shapes file as (images float32, labels int64) ``[n, T, H, W]``."""
    frames = read_attrs(path).get("frames")
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise DatasetFormatError(f"{path} has no 'frames' attribute; it is not a moving-shapes file")
    frames = int(frames)
    images, labels = read_split(path, split, start=start * frames, stop=None if stop is None else stop * frames)
    if images.shape[0] % frames:
        raise DatasetFormatError(f"{path}, split {split!r}: {images.shape[0]} frames is not a multiple of {frames}")
    shape = (images.shape[0] // frames, frames, *images.shape[1:])
    return images.reshape(shape), labels.reshape(shape)

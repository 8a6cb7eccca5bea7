"""Corners: 28x28 images of a "square" made of four corners plus four loose corners (DASBE spec §4).

Bit-exact with the authors' generator. Per image: the square (a 20x20 frame of its four 5x5 corners)
at ``x = randint(0, 9)``, ``y = randint(0, 9)`` gets label 1; then each loose corner draws
``x = randint(0, 24)``, ``y = randint(0, 24)``, ``orientation = randint(0, 4)`` and gets the next label
(2..5). Single-object images are the same call with the square only or one corner only (label 1).
"""

from __future__ import annotations

import numpy as np

from workbench.data.sprites import CORNERS_SQUARE, Scenes, corner, paint_sprites

CORNERS_SEED = 746519283
IMAGE_SHAPE = (28, 28)
N_CORNERS = 4
# sprite kinds: 0 = the square, 1 + orientation = a loose corner
_SPRITES = (CORNERS_SQUARE, *(corner(o) for o in range(4)))

__all__ = ["CORNERS_SEED", "IMAGE_SHAPE", "generate_corners"]


def generate_corners(n: int, rng: np.random.RandomState, *, with_square: bool = True,
                     n_corners: int = N_CORNERS, image_shape: tuple[int, int] = IMAGE_SHAPE) -> Scenes:
    """``n`` Corners images drawn from ``rng`` in the authors' order (square first, then the loose corners).

    ``with_square=True, n_corners=0`` gives the square-only singles; ``with_square=False, n_corners=1``
    the corner-only singles (label 1).
    """
    n, n_corners = int(n), int(n_corners)
    if n < 0 or n_corners < 0 or n_corners + with_square < 1 or n_corners + with_square > 255:
        raise ValueError(f"need n >= 0 and 1..255 objects per image; got n={n}, with_square={with_square}, "
                         f"n_corners={n_corners}")
    h, w = image_shape
    sq_x, sq_y = w - CORNERS_SQUARE.shape[1] + 1, h - CORNERS_SQUARE.shape[0] + 1
    c_x, c_y = w - 5 + 1, h - 5 + 1
    if min(sq_x, sq_y, c_x, c_y) < 1:
        raise ValueError(f"image_shape {image_shape} is too small for the 20x20 square")
    # Every bound is fixed, so one vectorised legacy randint with per-draw bounds replays the authors'
    # scalar calls in order: [square x, y] + n_corners * [x, y, orientation] per image.
    per_image = ([sq_x, sq_y] if with_square else []) + [c_x, c_y, 4] * n_corners
    draws = rng.randint(0, np.tile(per_image, n)).reshape(n, -1) if n else np.zeros((0, len(per_image)), int)
    kinds, xs, ys = [], [], []
    if with_square:
        kinds.append(np.zeros(n, dtype=np.int64))
        xs.append(draws[:, 0])
        ys.append(draws[:, 1])
    offset = 2 if with_square else 0
    for j in range(n_corners):
        block = draws[:, offset + 3 * j: offset + 3 * j + 3]
        kinds.append(1 + block[:, 2])
        xs.append(block[:, 0])
        ys.append(block[:, 1])
    stack = lambda parts: np.stack(parts, axis=1)  # noqa: E731
    return paint_sprites(image_shape, _SPRITES, stack(kinds), stack(ys), stack(xs))

"""Multi-MNIST: 48x48 images of three MNIST digits, placed so that the last one is mostly visible (DASBE spec §4).

Per image: ``digits = randint(0, m, 3)`` (with replacement; m = 60000 for train, 10000 for test). Each digit
is cropped to the bounding box of its non-zero pixels and binarised at >= 0.5 (of byte/255). Then, for each
digit in turn, ``x = randint(0, W-w+1)``, ``y = randint(0, H-h+1)``; the placement is accepted when the
fraction of the **last** digit's on pixels that an earlier digit also covers is < 0.2, otherwise all
positions are redrawn (``check_all_digits=True`` applies the test to every digit after the first). Labels
1..3 in draw order; overlap -> 0. Single-digit images: digit ``i mod m``, x then y, label 1, no test.

The authors' MNIST loader was broken, so these files are reproducible only statistically, not bit-exactly.
Digits come in as uint8 arrays (``Mnist.digits()``, or any stand-in of the same layout).
"""

from __future__ import annotations

import numpy as np

from workbench.data.sprites import Canvas, Scenes

MULTI_MNIST_SEED = 36520
PRE_SEED = 9825619  # seeded by the authors first, then re-seeded with MULTI_MNIST_SEED before any draw
IMAGE_SHAPE = (48, 48)
N_DIGITS = 3
MAX_OVERLAP = 0.2
MAX_ATTEMPTS = 10_000

__all__ = ["MULTI_MNIST_SEED", "IMAGE_SHAPE", "DigitSprites", "generate_multi_mnist", "place_digits",
           "generate_single_digits"]


class DigitSprites:
    """Binarised digits (>= 0.5 of byte/255) with the bounding box of each digit's non-zero pixels."""

    def __init__(self, digits: np.ndarray) -> None:
        digits = np.asarray(digits)
        if digits.ndim == 2 and digits.shape[1] == 784:
            digits = digits.reshape(-1, 28, 28)
        if digits.dtype != np.uint8 or digits.ndim != 3 or digits.shape[0] == 0:
            raise ValueError(f"digits must be a non-empty uint8 array [m, 28, 28] (or [m, 784]); got "
                             f"{digits.dtype} {digits.shape}")
        self.masks = digits >= 128  # byte/255 >= 0.5  <=>  byte >= 127.5 (no float copy of all of MNIST)
        nonzero = digits > 0
        rows, cols = nonzero.any(axis=2), nonzero.any(axis=1)
        self.r0, self.c0 = rows.argmax(axis=1), cols.argmax(axis=1)
        self.h = rows.shape[1] - rows[:, ::-1].argmax(axis=1) - self.r0
        self.w = cols.shape[1] - cols[:, ::-1].argmax(axis=1) - self.c0
        self.blank = ~rows.any(axis=1)
        self.h[self.blank] = 0
        self.w[self.blank] = 0

    def __len__(self) -> int:
        return self.masks.shape[0]

    @property
    def window(self) -> tuple[int, int]:
        return self.masks.shape[1], self.masks.shape[2]

    def crop(self, d: int) -> np.ndarray:
        return self.masks[d, self.r0[d]:self.r0[d] + self.h[d], self.c0[d]:self.c0[d] + self.w[d]]

    def check(self, indices: np.ndarray, image_shape: tuple[int, int]) -> None:
        indices = np.asarray(indices)
        if self.blank[indices].any():
            raise ValueError(f"digit {int(indices[self.blank[indices]][0])} has no non-zero pixel; it cannot be placed")
        if (self.h[indices] > image_shape[0]).any() or (self.w[indices] > image_shape[1]).any():
            raise ValueError(f"a digit's bounding box does not fit in the {image_shape} image")

    def paint(self, n: int, image_shape: tuple[int, int], indices: np.ndarray, ys: np.ndarray,
              xs: np.ndarray) -> Scenes:
        """Paint digit ``indices[i, j]`` with its bounding box's top-left at (``xs[i, j]``, ``ys[i, j]``), label j+1."""
        canvas = Canvas(n, image_shape, pad=max(self.window))
        everyone = np.arange(n)
        for j in range(indices.shape[1]):
            d = indices[:, j]
            canvas.stamp(everyone, self.masks[d], ys[:, j] - self.r0[d], xs[:, j] - self.c0[d], j + 1)
        return canvas.finish()


def _as_sprites(digits) -> DigitSprites:
    return digits if isinstance(digits, DigitSprites) else DigitSprites(digits)


def _covered_fraction(union: np.ndarray, crop: np.ndarray, y: int, x: int) -> float:
    on = int(crop.sum())
    if on == 0:
        return 0.0
    return int((union[y:y + crop.shape[0], x:x + crop.shape[1]] & crop).sum()) / on


def generate_multi_mnist(n: int, rng: np.random.RandomState, digits, *, n_digits: int = N_DIGITS,
                         image_shape: tuple[int, int] = IMAGE_SHAPE, max_overlap: float = MAX_OVERLAP,
                         check_all_digits: bool = False) -> Scenes:
    """``n`` images of ``n_digits`` digits drawn from ``digits`` (uint8 ``[m, 28, 28]`` or a :class:`DigitSprites`)."""
    sprites = _as_sprites(digits)
    chosen, ys, xs = place_digits(n, rng, sprites, n_digits=n_digits, image_shape=image_shape,
                                  max_overlap=max_overlap, check_all_digits=check_all_digits)
    return sprites.paint(int(n), image_shape, chosen, ys, xs)


def place_digits(n: int, rng: np.random.RandomState, digits, *, n_digits: int = N_DIGITS,
                 image_shape: tuple[int, int] = IMAGE_SHAPE, max_overlap: float = MAX_OVERLAP,
                 check_all_digits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The RNG part of :func:`generate_multi_mnist`: digit indices, bounding-box rows ``y`` and columns ``x``,
    each ``[n, n_digits]``."""
    n, n_digits = int(n), int(n_digits)
    if n < 0 or not 1 <= n_digits <= 255:
        raise ValueError(f"need n >= 0 and 1 <= n_digits <= 255; got n={n}, n_digits={n_digits}")
    sprites = _as_sprites(digits)
    m = len(sprites)
    height, width = image_shape
    chosen = np.empty((n, n_digits), dtype=np.int64)
    ys = np.empty((n, n_digits), dtype=np.int64)
    xs = np.empty((n, n_digits), dtype=np.int64)
    randint = rng.randint
    for i in range(n):  # the accept/redraw loop depends on the drawn positions: one image at a time
        d = randint(0, m, n_digits)
        sprites.check(d, image_shape)
        crops = [sprites.crop(k) for k in d]
        for _ in range(MAX_ATTEMPTS):
            pos = [(randint(0, width - c.shape[1] + 1), randint(0, height - c.shape[0] + 1)) for c in crops]
            if _accepted(crops, pos, image_shape, max_overlap, check_all_digits):
                break
        else:
            raise RuntimeError(f"image {i}: no placement with overlap < {max_overlap} in {MAX_ATTEMPTS} attempts")
        chosen[i] = d
        xs[i], ys[i] = zip(*pos)
    return chosen, ys, xs


def _accepted(crops, pos, image_shape, max_overlap: float, check_all: bool) -> bool:
    if len(crops) < 2:
        return True
    union = np.zeros(image_shape, dtype=bool)
    for k, (crop, (x, y)) in enumerate(zip(crops, pos)):
        last = k == len(crops) - 1
        if (last or (check_all and k > 0)) and _covered_fraction(union, crop, y, x) >= max_overlap:
            return False
        if not last:
            union[y:y + crop.shape[0], x:x + crop.shape[1]] |= crop
    return True


def generate_single_digits(indices: np.ndarray, rng: np.random.RandomState, digits, *,
                           image_shape: tuple[int, int] = IMAGE_SHAPE) -> Scenes:
    """One digit per image, ``digits[indices[i]]`` at ``x = randint(0, W-w+1)``, ``y = randint(0, H-h+1)``, label 1."""
    sprites = _as_sprites(digits)
    indices = np.asarray(indices, dtype=np.int64)
    n = indices.shape[0]
    if n == 0:
        return sprites.paint(0, image_shape, indices.reshape(0, 1), indices.reshape(0, 1), indices.reshape(0, 1))
    sprites.check(indices, image_shape)
    bounds = np.stack([image_shape[1] - sprites.w[indices] + 1, image_shape[0] - sprites.h[indices] + 1], axis=1)
    xy = rng.randint(0, bounds.reshape(-1)).reshape(n, 2)  # x0, y0, x1, y1, ...: the authors' scalar calls in order
    return sprites.paint(n, image_shape, indices[:, None], xy[:, 1:], xy[:, :1])

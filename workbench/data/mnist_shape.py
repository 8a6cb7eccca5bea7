"""MNIST+Shape: a 28x28 MNIST digit with one Shapes sprite on top (DASBE spec §4).

Per image: the digit (binarised at > 0.5 of byte/255, at its original position) gets label 1; then one
shape drawn as in Shapes (``shape = randint(0, 3)``, ``x``, ``y``) gets label 2 and sets its pixels on;
pixels covered by both are overlap (label 0). Single-object sets: digit-only images (``digit =
randint(0, m)``, label 1) and shape-only images (label **2**, as in the authors' files).

Reproducible only statistically (the authors' MNIST loader was broken).
"""

from __future__ import annotations

import numpy as np

from workbench.data.shapes import generate_shapes
from workbench.data.sprites import Canvas, Scenes

MNIST_SHAPE_SEED = 985619
IMAGE_SHAPE = (28, 28)
DIGIT_LABEL, SHAPE_LABEL = 1, 2

__all__ = ["MNIST_SHAPE_SEED", "IMAGE_SHAPE", "generate_mnist_shape", "generate_digit_only", "generate_shape_only"]


def _digit_masks(digits: np.ndarray) -> np.ndarray:
    digits = np.asarray(digits)
    if digits.ndim == 2 and digits.shape[1] == 784:
        digits = digits.reshape(-1, 28, 28)
    if digits.dtype != np.uint8 or digits.shape[1:] != IMAGE_SHAPE or digits.shape[0] == 0:
        raise ValueError(f"digits must be a non-empty uint8 array [m, 28, 28] (or [m, 784]); got {digits.dtype} "
                         f"{digits.shape}")
    return digits


def _paint_digits(digits: np.ndarray, indices: np.ndarray) -> Canvas:
    canvas = Canvas(len(indices), IMAGE_SHAPE)
    masks = digits[indices] >= 128  # byte/255 > 0.5  <=>  byte > 127.5
    zeros = np.zeros(len(indices), dtype=np.int64)
    canvas.stamp(np.arange(len(indices)), masks, zeros, zeros, DIGIT_LABEL)
    return canvas


def generate_mnist_shape(indices: np.ndarray, rng: np.random.RandomState, digits: np.ndarray) -> Scenes:
    """Image i = ``digits[indices[i]]`` (label 1) plus one random shape (label 2) drawn from ``rng``."""
    digits = _digit_masks(digits)
    indices = np.asarray(indices, dtype=np.int64)
    shapes = generate_shapes(len(indices), rng, n_objects=1)  # shape, x, y per image: the same calls
    canvas = _paint_digits(digits, indices)
    on = shapes.images.astype(bool)
    canvas.coverage += on
    canvas.labels[on] = SHAPE_LABEL
    return canvas.finish()


def generate_digit_only(n: int, rng: np.random.RandomState, digits: np.ndarray) -> Scenes:
    """``n`` digit-only images, ``digit = randint(0, m)`` per image (one vectorised call, same stream), label 1."""
    digits = _digit_masks(digits)
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    indices = rng.randint(0, digits.shape[0], int(n)) if n else np.zeros(0, dtype=np.int64)
    return _paint_digits(digits, indices).finish()


def generate_shape_only(n: int, rng: np.random.RandomState) -> Scenes:
    """``n`` images of one random shape each (as in Shapes), labelled 2."""
    scenes = generate_shapes(n, rng, n_objects=1)
    scenes.labels[scenes.labels == 1] = SHAPE_LABEL
    return scenes


"""Bars: 20x20 images of full-length vertical and horizontal bars (DASBE spec §4).

Bit-exact with the authors' generator: it uses numpy's legacy ``RandomState`` and makes the same calls
in the same order (per image: ``choice(width, n_vertical, replace=False)`` for the columns, then
``choice(height, n_horizontal, replace=False)`` for the rows; a choice of size 0 still consumes a full
permutation). Vertical bars get labels 1..n_vertical in draw order, horizontal bars the following labels;
pixels covered by two bars (crossings) get label 0 and stay on in the image.

Images and labels are ``uint8 [n, H, W]``; storing them (float32 0/1 ``default`` + ``groups``) is the job
of the HDF5 store.
"""

from __future__ import annotations

import numpy as np

BARS_SEED = 471958
IMAGE_SHAPE = (20, 20)
N_BARS_EACH = 6


def generate_bars(n: int, rng: np.random.RandomState, width: int = 20, height: int = 20,
                  n_vertical: int = 6, n_horizontal: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Bars images and labels, ``uint8 [n, height, width]``, drawn from ``rng`` in the authors' order."""
    _check_counts(n, width, height, n_vertical, n_horizontal)
    columns = np.empty((n, n_vertical), dtype=np.int64)
    rows = np.empty((n, n_horizontal), dtype=np.int64)
    for i in range(n):  # the only per-image loop: the RNG call order is the data's definition
        columns[i] = rng.choice(width, n_vertical, replace=False)
        rows[i] = rng.choice(height, n_horizontal, replace=False)
    return _paint(columns, rows, width, height)


def _check_counts(n: int, width: int, height: int, n_vertical: int, n_horizontal: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= n_vertical <= width or not 0 <= n_horizontal <= height:
        raise ValueError(f"need 0 <= n_vertical <= width and 0 <= n_horizontal <= height; got "
                         f"n_vertical={n_vertical}, width={width}, n_horizontal={n_horizontal}, height={height}")
    if n_vertical + n_horizontal > 255:
        raise ValueError("at most 255 bars per image fit uint8 labels")


def _paint(columns: np.ndarray, rows: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise bar positions (vectorised over images): coverage count, last writer's label, crossings -> 0."""
    n, n_vertical = columns.shape
    coverage = np.zeros((n, height, width), dtype=np.int32)
    labels = np.zeros((n, height, width), dtype=np.uint8)
    image_index = np.arange(n)
    for j in range(n_vertical):
        coverage[image_index, :, columns[:, j]] += 1
        labels[image_index, :, columns[:, j]] = j + 1
    for j in range(rows.shape[1]):
        coverage[image_index, rows[:, j], :] += 1
        labels[image_index, rows[:, j], :] = n_vertical + j + 1
    labels[coverage > 1] = 0
    return (coverage > 0).astype(np.uint8), labels


def bars_splits(seed: int = BARS_SEED, n_train: int = 60000, n_test: int = 10000,
                n_single: int = 200) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All Bars splits as ``{name: (images, labels)}``, generated in the authors' order from one RandomState.

    Order: ``train_multi`` (n_train), ``test`` (n_test), then the single-bar set: n_single // 2 images with one
    horizontal bar, then the rest with one vertical bar (both draw the vertical columns first, even when there
    are none). ``train_single_hori`` / ``train_single_vert`` (the spec's ``single_hori`` / ``single_vert``) are
    copies of the two halves taken before the single set is permuted by ``shuffle(arange(n_single))``; the
    permuted set is ``train_single``. ``workbench.data.datasets.make_dataset("bars")`` writes the same splits.
    """
    rng = np.random.RandomState(seed)
    splits = {"train_multi": generate_bars(n_train, rng), "test": generate_bars(n_test, rng)}
    half = n_single // 2
    hori = generate_bars(half, rng, n_vertical=0, n_horizontal=1)
    vert = generate_bars(n_single - half, rng, n_vertical=1, n_horizontal=0)
    single_images = np.concatenate([hori[0], vert[0]])
    single_labels = np.concatenate([hori[1], vert[1]])
    order = np.arange(n_single)
    rng.shuffle(order)
    splits["train_single"] = (single_images[order], single_labels[order])
    splits["train_single_hori"] = (hori[0].copy(), hori[1].copy())
    splits["train_single_vert"] = (vert[0].copy(), vert[1].copy())
    return splits


def single_bars(n: int, seed: int = 0, width: int = 20, height: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of one bar each (about half horizontal, half vertical, mixed): quick DAE training data.

    Not the authors' split (use ``bars_splits(...)["train_single"]`` for that); the layout is the same.
    """
    rng = np.random.RandomState(seed)
    horizontal = rng.rand(n) < 0.5
    positions = rng.randint(0, max(width, height), size=n)
    images = np.zeros((n, height, width), dtype=np.uint8)
    for i in range(n):  # tiny n; clarity over vectorisation
        if horizontal[i]:
            images[i, positions[i] % height, :] = 1
        else:
            images[i, :, positions[i] % width] = 1
    return images, images.copy()

"""Sprites and the painter shared by every synthetic dataset (DASBE spec §4, GUST spec §3).

Sprites are boolean masks (``True`` = on). Painting follows the authors' rule: an object of size h x w at
(x, y) covers rows y..y+h-1 and columns x..x+w-1; every object adds 1 to a coverage map and writes its
label there (later objects overwrite); at the end pixels covered more than once get label 0 and are
flagged in the ``overlap`` mask, and the image is ``coverage > 0``.

The painter is vectorised over images: callers draw positions with the legacy RNG in a Python loop (the
call order *is* the data's definition) and paint all images of a chunk at once with :class:`Canvas`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

__all__ = [
    "Scenes",
    "Canvas",
    "sprite",
    "SQUARE",
    "TRIANGLE",
    "INVERTED_TRIANGLE",
    "SHAPES",
    "SHAPE_NAMES",
    "CORNER",
    "corner",
    "CORNERS_SQUARE",
    "paint_sprites",
    "concat_scenes",
]


def sprite(rows: Sequence[str]) -> np.ndarray:
    """A read-only bool mask from text rows (``#`` = on, anything else = off)."""
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"sprite rows must all have the same width, got widths {sorted(widths)}")
    mask = np.array([[c == "#" for c in r] for r in rows], dtype=bool)
    mask.flags.writeable = False
    return mask


def _frozen(mask: np.ndarray) -> np.ndarray:
    mask = np.ascontiguousarray(mask, dtype=bool)
    mask.flags.writeable = False
    return mask


SQUARE = sprite([
    "#######",
    "#######",
    "##...##",
    "##...##",
    "##...##",
    "#######",
    "#######",
])  # 7x7, 40 px
TRIANGLE = sprite([
    ".....##.....",
    "....####....",
    "...######...",
    "..###..###..",
    ".###....###.",
    "############",
    "############",
])  # 7x12, 48 px
INVERTED_TRIANGLE = _frozen(TRIANGLE[::-1])
#: The Shapes datasets' sprite list: index 0 square, 1 triangle, 2 inverted triangle (``randint(0, 3)``).
SHAPES: tuple[np.ndarray, ...] = (SQUARE, TRIANGLE, INVERTED_TRIANGLE)
SHAPE_NAMES = ("square", "triangle", "inverted_triangle")

CORNER = sprite([
    "#####",
    "#####",
    "##...",
    "##...",
    "##...",
])  # 5x5, 16 px, orientation 0 (arms along the top and the left)


def corner(orientation: int) -> np.ndarray:
    """Corner sprite: 0 as drawn (top+left), 1 rows reversed (bottom+left), 2 columns reversed (top+right), 3 both."""
    if orientation not in (0, 1, 2, 3):
        raise ValueError(f"corner orientation must be 0, 1, 2 or 3, got {orientation!r}")
    mask = CORNER[::-1] if orientation & 1 else CORNER
    return _frozen(mask[:, ::-1] if orientation & 2 else mask)


def _corners_square() -> np.ndarray:
    frame = np.zeros((20, 20), dtype=bool)
    for orientation in range(4):
        r0 = 15 if orientation & 1 else 0
        c0 = 15 if orientation & 2 else 0
        frame[r0:r0 + 5, c0:c0 + 5] = corner(orientation)
    return _frozen(frame)


#: The Corners "square": a 20x20 frame made of its four corners only (64 px, 10-px gaps mid-side).
CORNERS_SQUARE = _corners_square()


class Scenes(NamedTuple):
    """Generated images: ``images`` uint8 0/1, ``labels`` uint8 (0 = background or overlap), ``overlap`` bool.

    All three have the same shape, ``[n, H, W]`` (or ``[n, T, H, W]`` for sequences).
    """

    images: np.ndarray
    labels: np.ndarray
    overlap: np.ndarray

    @property
    def n(self) -> int:
        """Number of scenes (``len(scenes)`` is 3, as for any 3-tuple)."""
        return int(self.images.shape[0])

    def take(self, index) -> "Scenes":
        """The scenes at ``index`` (a slice, an integer array or a permutation)."""
        return Scenes(self.images[index], self.labels[index], self.overlap[index])


def concat_scenes(parts: Sequence[Scenes]) -> Scenes:
    """Concatenate scene batches along the first axis."""
    return Scenes(*(np.concatenate([getattr(p, f) for p in parts]) for f in Scenes._fields))


class Canvas:
    """Coverage count and last-writer labels for ``n`` images of ``image_shape``, painted stamp by stamp.

    ``pad`` adds an invisible border so that a stamp window may stick out of the image as long as its
    *on* pixels land inside (used for MNIST digits, stamped as a 28x28 window around their bounding box);
    :meth:`finish` raises if any on pixel landed in the border.
    """

    def __init__(self, n: int, image_shape: tuple[int, int], *, pad: int = 0) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.pad = int(pad)
        h, w = self.image_shape
        self.coverage = np.zeros((n, h + 2 * self.pad, w + 2 * self.pad), dtype=np.uint8)
        self.labels = np.zeros_like(self.coverage)

    def stamp(self, index: np.ndarray, mask: np.ndarray, y: np.ndarray, x: np.ndarray, label) -> None:
        """Stamp ``mask`` on images ``index`` with its top-left corner at rows ``y``, columns ``x``.

        ``mask`` is one bool ``[h, w]`` mask for all, or one per image ``[m, h, w]``; ``label`` an int or ``[m]``.
        Each image may appear at most once in ``index`` per call.
        """
        index = np.asarray(index, dtype=np.intp)
        if index.size == 0:
            return
        y = np.asarray(y, dtype=np.intp) + self.pad
        x = np.asarray(x, dtype=np.intp) + self.pad
        label = np.asarray(label, dtype=np.uint8)
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim == 2:  # shared sprite: address only its on pixels
            dr, dc = np.nonzero(mask)
            rows, cols = y[:, None] + dr, x[:, None] + dc
            self._check_inside(rows, cols)
            at = (index[:, None], rows, cols)
            self.coverage[at] += 1
            self.labels[at] = label[:, None] if label.ndim else label
            return
        h, w = mask.shape[1:]
        rows = y[:, None, None] + np.arange(h)[None, :, None]
        cols = x[:, None, None] + np.arange(w)[None, None, :]
        self._check_inside(rows, cols)
        at = (index[:, None, None], rows, cols)
        self.coverage[at] += mask
        lab = label[:, None, None] if label.ndim else label
        self.labels[at] = np.where(mask, lab, self.labels[at])

    def _check_inside(self, rows: np.ndarray, cols: np.ndarray) -> None:
        hp, wp = self.coverage.shape[1:]
        if rows.size and (rows.min() < 0 or cols.min() < 0 or rows.max() >= hp or cols.max() >= wp):
            raise ValueError(
                f"a stamp falls outside the {self.image_shape} image "
                f"(rows {rows.min() - self.pad}..{rows.max() - self.pad}, "
                f"cols {cols.min() - self.pad}..{cols.max() - self.pad}); positions must keep the object inside"
            )

    def finish(self) -> Scenes:
        """Images (coverage > 0), labels with overlap -> 0, and the overlap mask (coverage > 1)."""
        coverage, labels = self.coverage, self.labels
        if self.pad:
            p, (h, w) = self.pad, self.image_shape
            inner = coverage[:, p:p + h, p:p + w]
            if int(inner.sum(dtype=np.int64)) != int(coverage.sum(dtype=np.int64)):
                raise ValueError("an object's on pixels fell outside the image; positions must keep objects inside")
            coverage, labels = inner, labels[:, p:p + h, p:p + w]
        overlap = coverage > 1
        labels = np.ascontiguousarray(labels)
        labels[overlap] = 0
        return Scenes((coverage > 0).astype(np.uint8), labels, np.ascontiguousarray(overlap))


def paint_sprites(
    image_shape: tuple[int, int],
    sprites: Sequence[np.ndarray],
    kinds: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    *,
    present: np.ndarray | None = None,
    slot_labels: Sequence[int] | None = None,
) -> Scenes:
    """Paint ``K`` objects per image: slot j of image i is ``sprites[kinds[i, j]]`` at (``xs[i, j]``, ``ys[i, j]``).

    Slots are painted in order (later slots overwrite labels); slot j gets label ``slot_labels[j]``
    (default j + 1). ``present[i, j] = False`` leaves a slot out. Vectorised over images: the loops run over
    slots and sprite kinds only.
    """
    kinds, ys, xs = (np.asarray(a, dtype=np.int64) for a in (kinds, ys, xs))
    if kinds.ndim != 2 or ys.shape != kinds.shape or xs.shape != kinds.shape:
        raise ValueError(f"kinds, ys, xs must all be [n, K]; got {kinds.shape}, {ys.shape}, {xs.shape}")
    n, k = kinds.shape
    present = np.ones((n, k), dtype=bool) if present is None else np.asarray(present, dtype=bool)
    slot_labels = list(range(1, k + 1)) if slot_labels is None else [int(v) for v in slot_labels]
    if len(slot_labels) != k or not all(1 <= v <= 255 for v in slot_labels):
        raise ValueError(f"slot_labels must give {k} labels in 1..255, got {slot_labels}")
    canvas = Canvas(n, image_shape)
    for j in range(k):
        for s, mask in enumerate(sprites):
            sel = np.flatnonzero((kinds[:, j] == s) & present[:, j])
            canvas.stamp(sel, mask, ys[sel, j], xs[sel, j], slot_labels[j])
    return canvas.finish()

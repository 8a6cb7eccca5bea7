"""The papers' HDF5 dataset layout: read the authors' files as they are, write ours atomically.

Layout: one group per split (``train_multi``, ``test``, ``train_single``, ``train_single_0`` ...), each with

* ``default``: images ``[n, H, W]``, 0/1 (the authors store float32; we store uint8);
* ``groups``: labels ``[n, H, W]``, 0 = background or overlap, 1..K = objects (authors float32; ours
  uint8, or uint16 past 255 labels);
* ``overlap`` (ours only, optional): 1 where two or more objects cover a pixel.

Our writer uses chunks of (min(100, n), H, W) with gzip, and writes to a temporary file that is renamed
over the target only when everything was written, so an interrupted run never leaves a half file.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import h5py
import numpy as np

from workbench.fileio import atomic_path

__all__ = [
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DatasetWriter",
    "write_splits",
    "read_split",
    "read_overlap",
    "list_splits",
    "split_size",
    "read_attrs",
]

IMAGES, LABELS, OVERLAP = "default", "groups", "overlap"
CHUNK_IMAGES = 100
LABEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


class DatasetFormatError(ValueError):
    """A dataset file (or data about to be written) does not have the papers' layout."""


class DatasetNotFoundError(DatasetFormatError, FileNotFoundError):
    """The dataset file does not exist."""


# --- value checks shared by reader and writer ----------------------------------------------------


def _check_shapes(images_shape: tuple, labels_shape: tuple, where: str) -> None:
    if len(images_shape) != 3:
        raise DatasetFormatError(f"{where}: images must be [n, H, W]; got shape {images_shape}")
    if tuple(labels_shape) != tuple(images_shape):
        raise DatasetFormatError(
            f"{where}: images and labels must have the same shape; got images {images_shape} and labels {labels_shape}"
        )


def _check_images(images: np.ndarray, where: str) -> np.ndarray:
    if images.dtype.kind not in "biuf":
        raise DatasetFormatError(f"{where}: images must be numeric 0/1, got dtype {images.dtype}")
    bad = (images != 0) & (images != 1)
    if bad.any():
        raise DatasetFormatError(
            f"{where}: images must be binary 0/1; found value {images[bad].flat[0].item()} "
            f"({int(bad.sum())} pixels). Binarise them first (e.g. image >= 0.5)."
        )
    return images


def _check_labels(labels: np.ndarray, where: str) -> np.ndarray:
    if labels.dtype.kind not in "biuf":
        raise DatasetFormatError(f"{where}: labels must be numeric, got dtype {labels.dtype}")
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all() and (labels == np.round(labels)).all()):
        raise DatasetFormatError(f"{where}: labels must be whole numbers (0 = background/overlap, 1..K = objects)")
    if labels.size and labels.min() < 0:
        raise DatasetFormatError(
            f"{where}: labels must be >= 0 (0 = background/overlap, 1..K = objects); found {labels.min()}"
        )
    return labels


def _label_dtype_for(labels: np.ndarray) -> np.dtype:
    top = int(labels.max()) if labels.size else 0
    for dtype in LABEL_DTYPES:
        if top <= np.iinfo(dtype).max:
            return dtype
    raise DatasetFormatError(f"labels go up to {top}; the store holds at most {np.iinfo(LABEL_DTYPES[-1]).max}")


def _attr_value(value: Any) -> Any:
    # Scalars go in as they are; anything else (dicts, lists, None) as JSON text, which every HDF5 reader can show.
    if isinstance(value, (str, bool, int, float, np.number)):
        return value
    return json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


# --- writing -------------------------------------------------------------------------------------


class DatasetWriter:
    """Write splits chunk by chunk; the file appears only when the ``with`` block ends without error.

    Example (``images``/``labels`` arrays of shape ``[10000, 28, 28]``)::

        with DatasetWriter("shapes.h5", attrs={"seed": 265076}) as w:
            w.create_split("test", 10000, (28, 28))
            for start in range(0, 10000, 1000):
                w.write("test", start, images[start:start + 1000], labels[start:start + 1000])

    Every created split must be written completely, or the file is discarded with an error.
    """

    def __init__(self, path: str | os.PathLike, *, attrs: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.attrs = dict(attrs or {})
        self._file: h5py.File | None = None
        self._written: dict[str, np.ndarray] = {}
        self._session: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> "DatasetWriter":
        self._session = self._open()
        return self._session.__enter__()

    def __exit__(self, *exc_info: Any) -> bool | None:
        assert self._session is not None
        return self._session.__exit__(*exc_info)

    @contextlib.contextmanager
    def _open(self) -> Iterator["DatasetWriter"]:
        try:
            # h5py closes before atomic_path renames (inner context first); any error discards the temp file.
            with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as f:
                self._file = f
                for key, value in self.attrs.items():
                    f.attrs[key] = _attr_value(value)
                yield self
                self._check_complete()
        finally:
            self._file = None

    def create_split(
        self,
        name: str,
        n: int,
        image_shape: tuple[int, int],
        *,
        label_dtype: Any = np.uint8,
        overlap: bool = False,
    ) -> None:
        """Create the datasets of split ``name`` for ``n`` images of ``image_shape = (H, W)``."""
        f = self._require_open()
        if not name or "/" in name or name in f:
            raise DatasetFormatError(f"split name {name!r} is empty, contains '/', or was already created")
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 2 or min(shape) < 1 or int(n) < 0:
            raise DatasetFormatError(f"split {name!r}: need n >= 0 and image_shape (H, W) >= 1; got {n}, {image_shape}")
        label_dtype = np.dtype(label_dtype)
        if label_dtype not in LABEL_DTYPES:
            raise DatasetFormatError(f"label_dtype must be uint8 or uint16, got {label_dtype}")
        n = int(n)
        layout: dict[str, Any] = {"chunks": (min(CHUNK_IMAGES, n), *shape), "compression": "gzip"} if n else {}
        group = f.create_group(name)
        group.create_dataset(IMAGES, shape=(n, *shape), dtype=np.uint8, **layout)
        group.create_dataset(LABELS, shape=(n, *shape), dtype=label_dtype, **layout)
        if overlap:
            group.create_dataset(OVERLAP, shape=(n, *shape), dtype=np.uint8, **layout)
        self._written[name] = np.zeros(n, dtype=bool)

    def write(self, name: str, start: int, images: Any, labels: Any, overlap: Any = None) -> None:
        """Write images/labels ``[k, H, W]`` (and ``overlap`` when the split has one) at rows ``start:start+k``."""
        f = self._require_open()
        if name not in self._written:
            created = sorted(self._written)
            raise DatasetFormatError(f"split {name!r} was not created; call create_split first (created: {created})")
        group = f[name]
        where = f"split {name!r}"
        images, labels = np.asarray(images), np.asarray(labels)
        _check_shapes(images.shape, labels.shape, where)
        n, shape = group[IMAGES].shape[0], group[IMAGES].shape[1:]
        k = images.shape[0]
        if images.shape[1:] != shape:
            raise DatasetFormatError(f"{where}: images are {images.shape[1:]} but the split holds {shape}")
        if not 0 <= int(start) <= n - k:
            raise DatasetFormatError(f"{where}: rows {start}:{start + k} do not fit in its {n} images")
        _check_images(images, where)
        _check_labels(labels, where)
        top = np.iinfo(group[LABELS].dtype).max
        if labels.size and labels.max() > top:
            raise DatasetFormatError(
                f"{where}: label {labels.max()} exceeds {group[LABELS].dtype} (create it with label_dtype=np.uint16)"
            )
        if (overlap is None) != (OVERLAP not in group):
            raise DatasetFormatError(f"{where}: pass overlap exactly when the split was created with overlap=True")
        rows = slice(int(start), int(start) + k)
        group[IMAGES][rows] = images.astype(np.uint8)
        group[LABELS][rows] = labels.astype(group[LABELS].dtype)
        if overlap is not None:
            overlap = np.asarray(overlap)
            if overlap.shape != images.shape:
                raise DatasetFormatError(f"{where}: overlap must match images {images.shape}, got {overlap.shape}")
            group[OVERLAP][rows] = overlap.astype(bool).astype(np.uint8)
        self._written[name][rows] = True

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise RuntimeError("DatasetWriter is not open; use it as `with DatasetWriter(path) as w: ...`")
        return self._file

    def _check_complete(self) -> None:
        for name, done in self._written.items():
            if not done.all():
                first = int(np.argmin(done))
                raise DatasetFormatError(
                    f"split {name!r}: {int((~done).sum())} of {done.size} images were never written "
                    f"(first missing index {first}); the file was not created"
                )


def write_splits(
    path: str | os.PathLike,
    splits: Mapping[str, tuple[Any, Any]],
    *,
    overlap: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write whole splits ``{name: (images [n,H,W], labels [n,H,W])}`` atomically; returns the path."""
    overlap = dict(overlap or {})
    unknown = sorted(set(overlap) - set(splits))
    if unknown:
        raise DatasetFormatError(f"overlap given for splits {unknown} that are not in splits {sorted(splits)}")
    with DatasetWriter(path, attrs=attrs) as writer:
        for name, (images, labels) in splits.items():
            images, labels = np.asarray(images), np.asarray(labels)
            _check_shapes(images.shape, labels.shape, f"split {name!r}")
            label_dtype = _label_dtype_for(_check_labels(labels, f"split {name!r}"))
            n, shape = images.shape[0], images.shape[1:]
            writer.create_split(name, n, shape, label_dtype=label_dtype, overlap=name in overlap)
            writer.write(name, 0, images, labels, overlap.get(name))
    return Path(path)


# --- reading -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_read(path: str | os.PathLike) -> Iterator[h5py.File]:
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(
            f"no dataset file at {path}. Generate it first (a generator in workbench.data plus "
            "workbench.data.store.write_splits, or the `hnnwb data` command), or point to the authors' HDF5 file."
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetFormatError(f"{path} is not a readable HDF5 file ({exc})") from exc
    with f:
        yield f


def _split_group(f: h5py.File, path: Any, split: str) -> h5py.Group:
    group = f.get(split)
    if not isinstance(group, h5py.Group):
        available = sorted(k for k in f if isinstance(f[k], h5py.Group))
        raise DatasetFormatError(f"{path} has no split {split!r}; available splits: {available}")
    missing = [k for k in (IMAGES, LABELS) if not isinstance(group.get(k), h5py.Dataset)]
    if missing:
        raise DatasetFormatError(
            f"{path}, split {split!r}: missing dataset(s) {missing}; a split holds '{IMAGES}' (images) and "
            f"'{LABELS}' (labels), found {sorted(group)}"
        )
    _check_shapes(group[IMAGES].shape, group[LABELS].shape, f"{path}, split {split!r}")
    return group


def _rows(start: int, stop: int | None, n: int, where: str) -> slice:
    stop = n if stop is None else int(stop)
    if not 0 <= int(start) <= stop <= n:
        raise DatasetFormatError(f"{where} has {n} images; cannot read rows {start}:{stop}")
    return slice(int(start), stop)


def read_split(
    path: str | os.PathLike, split: str, *, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read rows ``start:stop`` of a split as (images float32 ``[n,H,W]``, labels int64 ``[n,H,W]``).

    Accepts the authors' float32 files and our uint8 ones; checks the layout and the values read.
    """
    with _open_read(path) as f:
        group = _split_group(f, path, split)
        where = f"{path}, split {split!r}"
        rows = _rows(start, stop, group[IMAGES].shape[0], where)
        images = _check_images(group[IMAGES][rows], where)
        labels = _check_labels(group[LABELS][rows], where)
    return images.astype(np.float32), labels.astype(np.int64)


def read_overlap(
    path: str | os.PathLike, split: str, *, start: int = 0, stop: int | None = None
) -> np.ndarray | None:
    """Rows ``start:stop`` of the split's bool overlap mask, or ``None`` when the file has none (authors' files)."""
    with _open_read(path) as f:
        group = _split_group(f, path, split)
        if OVERLAP not in group:
            return None
        rows = _rows(start, stop, group[IMAGES].shape[0], f"{path}, split {split!r}")
        return group[OVERLAP][rows].astype(bool)


def list_splits(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """``{split name: images shape}`` for every group that holds an images dataset."""
    with _open_read(path) as f:
        return {
            name: tuple(f[name][IMAGES].shape)
            for name in f
            if isinstance(f[name], h5py.Group) and isinstance(f[name].get(IMAGES), h5py.Dataset)
        }


def split_size(path: str | os.PathLike, split: str, *, make_hint: str) -> int:
    """Number of images in ``split`` of ``path``; a missing file names ``make_hint`` (the command that makes
    it), a missing split lists the splits the file has."""
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"no dataset file at {path}; make it with `{make_hint}`")
    splits = list_splits(path)
    if split not in splits:
        raise DatasetFormatError(f"{path} has no split {split!r}; available: {sorted(splits)}")
    return splits[split][0]


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """File-level attributes (JSON-encoded values come back as strings)."""
    with _open_read(path) as f:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}

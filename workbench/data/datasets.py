"""The dataset registry: every generated dataset of the papers, by name, and the builder that writes its HDF5 file.

``DATASETS[name]`` describes a dataset (description, default split sizes in generation order, seed, image
shape, whether it needs MNIST). ``make_dataset(name)`` generates it from that seed and streams it, chunk by
chunk, into ``data/<name>.h5`` through :class:`workbench.data.store.DatasetWriter` (uint8, gzip, chunks of
100 images, an ``overlap`` mask per split; the file appears only when complete). ``collect_splits(name)``
returns the same splits in memory.

Every split is drawn from one legacy ``RandomState(seed)`` in the order listed, so **changing a split's size
(``sizes={...}``) shifts the random stream of every later split**: a file made with ``train_multi=200`` has
the paper's ``train_multi[0:200]`` but a different ``test``. Only the full-size files are the papers' data.

Names: "bars", "corners", "shapes", "multi_mnist", "mnist_shape", "moving_shapes_3", "moving_shapes"
(DASBE §4) and GUST's "shapes_multiobj_<ntrain>_<ntest>" (GUST §3; registered for 2..4 objects, any
1..9 accepted by :func:`dataset_info`).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Mapping

import numpy as np

from workbench.data import bars, corners, mnist_shape, moving_shapes, multi_mnist, shapes
from workbench.data.mnist import Mnist, load_mnist
from workbench.data.sprites import Scenes, concat_scenes
from workbench.data.store import DatasetWriter

__all__ = ["DatasetInfo", "DATASETS", "dataset_info", "dataset_path", "make_dataset", "collect_splits"]

CHUNK = 5000  # images generated and written per step (the HDF5 chunks are 100 images)

Chunk = tuple[str, int, Scenes]  # (split, first row, scenes)
Plan = tuple[dict[str, int], Iterator[Chunk]]  # (every split written -> size, in order; the chunks)


@dataclass(frozen=True)
class DatasetInfo:
    """One registered dataset. ``sizes`` are the default sizes of the splits you can set, in generation order."""

    name: str
    description: str
    sizes: Mapping[str, int]
    seed: int
    image_shape: tuple[int, int]
    needs_mnist: bool = False
    frames: int | None = None  # sequence length (moving shapes); splits count sequences
    spec: str = "DASBE §4"
    plan: Callable[[dict[str, int], Mnist | None], Plan] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", MappingProxyType(dict(self.sizes)))  # the registry stays read-only

    def resolve_sizes(self, sizes: Mapping[str, int] | None = None) -> dict[str, int]:
        """The default sizes with ``sizes`` applied; unknown names and negative sizes are rejected."""
        sizes = dict(sizes or {})
        unknown = sorted(set(sizes) - set(self.sizes))
        if unknown:
            raise ValueError(f"{self.name}: unknown split(s) {unknown} in sizes; settable splits: {list(self.sizes)}")
        resolved = {k: int(sizes.get(k, v)) for k, v in self.sizes.items()}
        bad = {k: v for k, v in resolved.items() if v < 0}
        if bad:
            raise ValueError(f"{self.name}: split sizes must be >= 0, got {bad}")
        return resolved

    def layout(self, sizes: Mapping[str, int] | None = None) -> dict[str, int]:
        """Every split the file will hold (settable and derived ones) -> number of images (or sequences)."""
        return self.plan(self.resolve_sizes(sizes), None, layout_only=True)[0]


# --- chunking helpers ----------------------------------------------------------------------------


def _ranges(n: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, chunk):
        yield start, min(n, start + chunk)


def _stream(split: str, n: int, make: Callable[[int, int], Scenes], chunk: int = CHUNK) -> Iterator[Chunk]:
    for start, stop in _ranges(n, chunk):
        yield split, start, make(start, stop)


def _bars_scenes(images_labels: tuple[np.ndarray, np.ndarray]) -> Scenes:
    images, labels = images_labels
    return Scenes(images, labels, (images == 1) & (labels == 0))  # crossings are the only label-0 on pixels


def _shuffled(rng: np.random.RandomState, parts: list[Scenes]) -> Scenes:
    scenes = concat_scenes(parts)
    order = np.arange(scenes.n)
    rng.shuffle(order)  # the authors permute with shuffle(arange(n)) from the same stream
    return scenes.take(order)


# --- plans: the authors' generation order, per dataset --------------------------------------------


def _plan_bars(sizes, _mnist, layout_only=False) -> Plan:
    n_single = sizes["train_single"]
    half = n_single // 2
    layout = {"train_multi": sizes["train_multi"], "test": sizes["test"], "train_single": n_single,
              "train_single_hori": half, "train_single_vert": n_single - half}

    def chunks() -> Iterator[Chunk]:
        rng = np.random.RandomState(bars.BARS_SEED)
        for split in ("train_multi", "test"):
            yield from _stream(split, sizes[split], lambda a, b: _bars_scenes(bars.generate_bars(b - a, rng)))
        hori = _bars_scenes(bars.generate_bars(half, rng, n_vertical=0, n_horizontal=1))
        vert = _bars_scenes(bars.generate_bars(n_single - half, rng, n_vertical=1, n_horizontal=0))
        yield "train_single", 0, _shuffled(rng, [hori, vert])
        yield "train_single_hori", 0, hori
        yield "train_single_vert", 0, vert

    return layout, (None if layout_only else chunks())


def _plan_corners(sizes, _mnist, layout_only=False) -> Plan:
    def chunks() -> Iterator[Chunk]:
        rng = np.random.RandomState(corners.CORNERS_SEED)
        for split in ("train_multi", "test"):
            yield from _stream(split, sizes[split], lambda a, b: corners.generate_corners(b - a, rng))
        n = sizes["train_single"]
        n_square = n // 7  # 2142 of 15000
        square = corners.generate_corners(n_square, rng, with_square=True, n_corners=0)
        loose = corners.generate_corners(n - n_square, rng, with_square=False, n_corners=1)
        yield "train_single", 0, _shuffled(rng, [square, loose])

    return dict(sizes), (None if layout_only else chunks())


def _plan_shapes(n_train: int, n_test: int, n_single: int, seed: int = shapes.SHAPES_SEED):
    def plan(sizes, _mnist, layout_only=False) -> Plan:
        def chunks() -> Iterator[Chunk]:
            rng = np.random.RandomState(seed)
            for split, k in (("train_multi", n_train), ("test", n_test), ("train_single", n_single)):
                yield from _stream(split, sizes[split], lambda a, b, k=k: shapes.generate_shapes(b - a, rng, k))
            for s in range(3):
                split = f"train_single_{s}"
                yield from _stream(split, sizes[split], lambda a, b, s=s: shapes.generate_single_shapes(b - a, rng, s))

        return dict(sizes), (None if layout_only else chunks())

    return plan


def _require_mnist(mnist: Mnist | None, name: str) -> Mnist:
    if mnist is None:
        raise ValueError(f"{name} needs MNIST digits; pass mnist=load_mnist(...) or a stand-in Mnist.from_arrays(...)")
    return mnist


def _plan_multi_mnist(sizes, mnist, layout_only=False) -> Plan:
    def chunks() -> Iterator[Chunk]:
        data = _require_mnist(mnist, "multi_mnist")
        train, test = multi_mnist.DigitSprites(data.digits("train")), multi_mnist.DigitSprites(data.digits("test"))
        rng = np.random.RandomState(multi_mnist.MULTI_MNIST_SEED)
        for split, digits in (("train_multi", train), ("test", test)):
            yield from _stream(split, sizes[split],
                               lambda a, b, d=digits: multi_mnist.generate_multi_mnist(b - a, rng, d))
        yield from _stream("train_single", sizes["train_single"], lambda a, b: multi_mnist.generate_single_digits(
            np.arange(a, b) % len(train), rng, train))

    return dict(sizes), (None if layout_only else chunks())


def _plan_mnist_shape(sizes, mnist, layout_only=False) -> Plan:
    def chunks() -> Iterator[Chunk]:
        data = _require_mnist(mnist, "mnist_shape")
        train, test = data.digits("train"), data.digits("test")
        rng = np.random.RandomState(mnist_shape.MNIST_SHAPE_SEED)
        for split, digits in (("train_multi", train), ("test", test)):
            yield from _stream(split, sizes[split], lambda a, b, d=digits: mnist_shape.generate_mnist_shape(
                np.arange(a, b) % len(d), rng, d))
        n = sizes["train_single"]
        digit_only = mnist_shape.generate_digit_only(n // 2, rng, train)
        shape_only = mnist_shape.generate_shape_only(n - n // 2, rng)
        yield "train_single", 0, _shuffled(rng, [digit_only, shape_only])

    return dict(sizes), (None if layout_only else chunks())


def _plan_moving(frames: int, with_fixed_shapes: bool):
    def plan(sizes, _mnist, layout_only=False) -> Plan:
        per_chunk = max(1, CHUNK // frames)

        def chunks() -> Iterator[Chunk]:
            rng = np.random.RandomState(moving_shapes.MOVING_SHAPES_SEED)
            settings = [("train_multi", {}), ("test", {}), ("train_single", {"max_objects": 1})]
            if with_fixed_shapes:
                settings += [(f"train_single_{s}", {"max_objects": 1, "shape": s}) for s in range(3)]
            for split, kw in settings:
                yield from _stream(split, sizes[split], lambda a, b, kw=kw: moving_shapes.generate_moving_shapes(
                    b - a, rng, frames=frames, **kw), chunk=per_chunk)

        return dict(sizes), (None if layout_only else chunks())

    return plan


# --- the registry --------------------------------------------------------------------------------


def _shapes_multiobj(n_train: int, n_test: int) -> DatasetInfo:
    return DatasetInfo(
        name=f"shapes_multiobj_{n_train}_{n_test}",
        description=(f"GUST Shapes 28x28: {n_train} objects per training image, {n_test} per test image "
                     "(train_single holds multi-object images too, as in the authors' files)"),
        sizes={"train_multi": 20000, "test": 10000, "train_single": 20000,
               "train_single_0": 20000, "train_single_1": 20000, "train_single_2": 20000},
        seed=shapes.SHAPES_SEED, image_shape=shapes.IMAGE_SHAPE, spec="GUST §3",
        plan=_plan_shapes(n_train, n_test, n_train),
    )


DATASETS: dict[str, DatasetInfo] = {
    "bars": DatasetInfo(
        "bars", "Bars 20x20: 6 vertical + 6 horizontal full-length bars (crossings labelled 0)",
        {"train_multi": 60000, "test": 10000, "train_single": 200}, bars.BARS_SEED, bars.IMAGE_SHAPE,
        plan=_plan_bars),
    "corners": DatasetInfo(
        "corners", "Corners 28x28: a square made of four corners plus four loose 5x5 corners",
        {"train_multi": 60000, "test": 10000, "train_single": 15000}, corners.CORNERS_SEED, corners.IMAGE_SHAPE,
        plan=_plan_corners),
    "shapes": DatasetInfo(
        "shapes", "Shapes 28x28: three random squares / triangles / inverted triangles",
        {"train_multi": 60000, "test": 10000, "train_single": 20000,
         "train_single_0": 20000, "train_single_1": 20000, "train_single_2": 20000},
        shapes.SHAPES_SEED, shapes.IMAGE_SHAPE, plan=_plan_shapes(3, 3, 1)),
    "multi_mnist": DatasetInfo(
        "multi_mnist", "Multi-MNIST 48x48: three binarised MNIST digits, the last one at most 20 % covered",
        {"train_multi": 60000, "test": 10000, "train_single": 300000}, multi_mnist.MULTI_MNIST_SEED,
        multi_mnist.IMAGE_SHAPE, needs_mnist=True, plan=_plan_multi_mnist),
    "mnist_shape": DatasetInfo(
        "mnist_shape", "MNIST+Shape 28x28: an MNIST digit (label 1) with one shape on top (label 2)",
        {"train_multi": 60000, "test": 10000, "train_single": 20000}, mnist_shape.MNIST_SHAPE_SEED,
        mnist_shape.IMAGE_SHAPE, needs_mnist=True, plan=_plan_mnist_shape),
    "moving_shapes_3": DatasetInfo(
        "moving_shapes_3", "Moving shapes: 200-frame sequences, a new bouncing shape every 15 frames (up to 3)",
        {"train_multi": 600, "test": 60, "train_single": 60,
         "train_single_0": 60, "train_single_1": 60, "train_single_2": 60},
        moving_shapes.MOVING_SHAPES_SEED, moving_shapes.IMAGE_SHAPE, frames=200, plan=_plan_moving(200, True)),
    "moving_shapes": DatasetInfo(
        "moving_shapes", "Moving shapes: 1000-frame sequences, a new bouncing shape every 15 frames (up to 3)",
        {"train_multi": 60, "test": 60, "train_single": 60},
        moving_shapes.MOVING_SHAPES_SEED, moving_shapes.IMAGE_SHAPE, frames=1000, plan=_plan_moving(1000, False)),
}
DATASETS.update({f"shapes_multiobj_{a}_{b}": _shapes_multiobj(a, b) for a in (2, 3, 4) for b in (2, 3, 4)})

_MULTIOBJ = re.compile(r"shapes_multiobj_([1-9])_([1-9])")


def dataset_info(name: str) -> DatasetInfo:
    """The registered dataset ``name`` (any ``shapes_multiobj_<a>_<b>`` with 1..9 objects is accepted)."""
    if name in DATASETS:
        return DATASETS[name]
    match = _MULTIOBJ.fullmatch(name)
    if match:
        return _shapes_multiobj(int(match.group(1)), int(match.group(2)))
    raise KeyError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")


def dataset_path(name: str, data_dir: str | Path = Path("data")) -> Path:
    """Where ``make_dataset`` writes ``name`` by default: ``data_dir / f"{name}.h5"``."""
    return Path(data_dir) / f"{name}.h5"


def _load_mnist_for(info: DatasetInfo, mnist: Mnist | None, data_dir: Path) -> Mnist | None:
    if not info.needs_mnist:
        return None
    if mnist is None:  # never downloads here: `hnnwb data get mnist` does that
        mnist = load_mnist(cache_dir=data_dir / "mnist", download=False)
    if not isinstance(mnist, Mnist):
        raise TypeError(f"mnist must be a workbench.data.mnist.Mnist, got {type(mnist).__name__}")
    return mnist


def _chunks(name: str, sizes, mnist: Mnist | None, data_dir: Path):
    info = dataset_info(name)
    resolved = info.resolve_sizes(sizes)
    mnist = _load_mnist_for(info, mnist, data_dir)
    layout, chunks = info.plan(resolved, mnist)
    return info, layout, chunks, mnist


def collect_splits(name: str, *, sizes: Mapping[str, int] | None = None, mnist: Mnist | None = None,
                   data_dir: str | Path = Path("data")) -> dict[str, Scenes]:
    """All splits of ``name`` in memory, ``{split: Scenes}`` (sequences ``[n, T, H, W]`` for moving shapes)."""
    _, layout, chunks, _ = _chunks(name, sizes, mnist, Path(data_dir))
    parts: dict[str, list[Scenes]] = {split: [] for split in layout}
    for split, _start, scenes in chunks:
        parts[split].append(scenes)
    return {split: concat_scenes(p) if p else _empty(dataset_info(name)) for split, p in parts.items()}


def _empty(info: DatasetInfo) -> Scenes:
    shape = (0, *((info.frames,) if info.frames else ()), *info.image_shape)
    return Scenes(np.zeros(shape, np.uint8), np.zeros(shape, np.uint8), np.zeros(shape, bool))


def _progress_bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, desc=desc, unit="img", disable=not (progress and interactive), leave=False)


def make_dataset(name: str, out: str | Path | None = None, *, data_dir: str | Path = Path("data"),
                 progress: bool = True, sizes: Mapping[str, int] | None = None,
                 mnist: Mnist | None = None) -> Path:
    """Generate dataset ``name`` and write it to ``out`` (default ``data_dir/<name>.h5``); returns the path.

    ``sizes`` overrides split sizes, e.g. ``{"train_multi": 200}`` for a quick file; the later splits'
    random streams then shift (see the module docstring). MNIST datasets read MNIST from
    ``data_dir/mnist`` (never downloading; ``hnnwb data get mnist`` fetches it) unless ``mnist`` is given,
    e.g. a stand-in ``Mnist.from_arrays(...)``; without it they raise ``MnistUnavailableError``.
    Written atomically: an interrupted run leaves no file.
    """
    data_dir = Path(data_dir)
    info, layout, chunks, mnist = _chunks(name, sizes, mnist, data_dir)
    out = dataset_path(info.name, data_dir) if out is None else Path(out)
    frames = info.frames or 1
    attrs = {"dataset": info.name, "description": info.description, "spec": info.spec, "seed": info.seed,
             "sizes": layout, "generator": "workbench.data.datasets.make_dataset"}
    if info.frames:
        attrs["frames"] = info.frames
    if mnist is not None:
        attrs["mnist_source"] = mnist.source
        attrs["mnist_checksums"] = dict(mnist.checksums)
    total = sum(layout.values()) * frames
    with DatasetWriter(out, attrs=attrs) as writer, _progress_bar(total, info.name, progress) as bar:
        for split, n in layout.items():
            writer.create_split(split, n * frames, info.image_shape, overlap=True)
        for split, start, scenes in chunks:
            flat = [a.reshape(-1, *info.image_shape) for a in scenes]
            writer.write(split, start * frames, *flat[:2], overlap=flat[2])
            bar.update(flat[0].shape[0])
    return out

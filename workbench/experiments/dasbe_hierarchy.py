"""DASBE Fig 4: a two-level hierarchy, CLRNET's spiking hidden layer bound with the pixels (spec §2.5, §10).

CLRNET (``workbench.models.spiking_dae.clrnet``) is trained on single shapes with a contrastive term that
pushes the hidden spike vectors of one shape class together. In the binding loop its 1600 hidden units
(shown as 40 x 40) spike with refractoriness r_a, so both layers can fall into phase: each object's pixels
and the hidden units that code it fire in the same volleys. One function per panel's data:

* (a) ``activity_maps``: mean hidden firing probability per shape class and per position P1..P3, from the
  single-shape sets, and the most selective units of each map;
* (b) ``bind_hierarchy``: the binding run on Shapes ``train_multi[1109]`` with D = 32, r = r_a = 9,
  30 iterations and 5 seeds, with k-means (K = 4, smooth 1) on the pixel spikes and on the hidden spikes;
* (c) ``group_rasters``: rasters and population counts of the high-level groups and the low-level objects,
  and which hidden group fires with which object;
* (d) ``decode_clusters``: each hidden cluster's unit mask sent through the decoder, one object per cluster.

``fig4_summary`` condenses (b)-(d) into JSON-ready numbers. ``quick_clrnet`` / ``load_clrnet`` get a net.
The reference did not seed Fig 4 (spec §8): the image index and the seeds are parameters with fixed defaults.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from workbench.binding.dasbe import DasbeParams, run_binding_hidden
from workbench.binding.readout import group_pixels
from workbench.data.store import list_splits, read_split, split_size
from workbench.metrics import ami
from workbench.record import SpikeRecord

__all__ = ["FIG4_IMAGE", "FIG4_SEEDS", "FIG4_DELAY", "FIG4_REFRACTORY", "FIG4_N_ITER", "FIG4_K", "FIG4_SMOOTH",
           "FIG4_BACK", "SHAPE_NAMES", "ActivityMaps", "HierarchyBinding", "GroupRasters", "DecodedClusters",
           "activity_maps", "bind_hierarchy", "group_rasters", "decode_clusters", "fig4_summary", "quick_clrnet",
           "load_clrnet", "clrnet_info", "tiny_shapes_file", "reconstruction_check", "CLRNET_RUN"]

# --- Fig 4 constants (spec §10; the reference script) ---------------------------------------------------------
FIG4_IMAGE = 1109  # Shapes train_multi image of the figure
FIG4_SEEDS = (111, 222, 333, 444, 555)  # 5 seeds; the reference left them unseeded, these are Table I's
FIG4_DELAY = 32  # D
FIG4_REFRACTORY = 9  # r for the pixels and r_a for the hidden units
FIG4_N_ITER = 30
FIG4_K = 4  # k-means K (3 objects + background / silent units)
FIG4_SMOOTH = 1  # raw trains
FIG4_BACK = 10  # iterations read out by k-means (the Table I readout window; the figure does not say)
RASTER_ITERATIONS = 2  # panel (c): the last 2 iterations, 64 steps (~6 volleys)
SHAPE_NAMES = ("square", "triangle", "inverted triangle")  # classes 0, 1, 2 = splits train_single_0/1/2
POSITION_RADIUS = 4.0  # a single shape is "at P_i" when its centre lies within this many pixels of object i's
CLRNET_RUN = Path("runs") / "clrnet"


# --- (a) mean high-level activity per class and per position ------------------------------------------------


@dataclass
class ActivityMaps:
    """Panel (a). Maps are mean firing probabilities ``P(u + U > 1) = clip(u, 0, 1)`` on clean input.

    Attributes:
        class_maps: ``[3, H]`` per shape class (``SHAPE_NAMES``).
        position_maps: ``[P, H]`` per position P1..P3 (the objects of the binding image, in label order).
        positions: ``[P, 2]`` (row, col) centres of those objects.
        class_counts, position_counts: images averaged per map (a position with no image has a NaN map).
        class_selective, position_selective: ``[maps, n_selective]`` unit indices, most selective first:
            largest map value minus the mean of the other maps of the same family.
        side: maps are ``side x side`` when H is a square (CLRNET: 40), else None.
    """

    class_maps: np.ndarray
    position_maps: np.ndarray
    positions: np.ndarray
    class_counts: list[int]
    position_counts: list[int]
    class_selective: np.ndarray
    position_selective: np.ndarray
    side: int | None


def activity_maps(model: Any, data_file: str | os.PathLike, *, image: int = FIG4_IMAGE, n_per_class: int = 2000,
                  radius: float = POSITION_RADIUS, n_selective: int = 10, batch_size: int = 1000) -> ActivityMaps:
    """Panel (a): mean hidden activity per shape class and per position, on the single-shape sets.

    Per class c: the last ``n_per_class`` images of ``train_single_c`` (the validation tail of CLRNET's
    training split when it holds 20000). Per position P_i (the centre of object i of ``train_multi[image]``):
    every one of those images whose shape's centre lies within ``radius`` pixels of it, of any class.
    """
    path = Path(data_file)
    splits = list_splits(path)
    names = [f"train_single_{c}" for c in range(len(SHAPE_NAMES))]
    missing = [s for s in names if s not in splits]
    if missing:
        raise ValueError(f"{path} lacks the single-shape splits {missing}; make the Shapes file with "
                         "`hnnwb data make shapes`")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    _, labels = _read_image(path, image)
    positions = np.array([_centre(labels == k) for k in range(1, int(labels.max()) + 1) if (labels == k).any()])
    probs, centres, classes = [], [], []
    for c, split in enumerate(names):
        n = splits[split][0]
        lo = max(0, n - int(n_per_class))
        x, _ = read_split(path, split, start=lo, stop=n)
        flat = x.reshape(len(x), -1)
        probs.append(_firing_probability(model, flat, batch_size))
        centres.append(np.array([_centre(img > 0) for img in x]))
        classes.append(np.full(len(x), c))
    p, centre, cls = np.concatenate(probs), np.concatenate(centres), np.concatenate(classes)
    class_maps = np.stack([p[cls == c].mean(axis=0) for c in range(len(names))])
    near = np.linalg.norm(centre[None, :, :] - positions[:, None, :], axis=2) <= radius  # [P, images]
    with np.errstate(invalid="ignore"):
        position_maps = np.stack([p[m].mean(axis=0) if m.any() else np.full(p.shape[1], np.nan) for m in near])
    side = int(round(np.sqrt(p.shape[1])))
    return ActivityMaps(class_maps, position_maps, positions, [int((cls == c).sum()) for c in range(len(names))],
                        [int(m.sum()) for m in near], _selective(class_maps, n_selective),
                        _selective(position_maps, n_selective), side if side * side == p.shape[1] else None)


@torch.no_grad()
def _firing_probability(model: Any, flat: np.ndarray, batch_size: int) -> np.ndarray:
    model = model.eval()
    dtype = next(model.parameters()).dtype
    out = [model.membrane(torch.as_tensor(flat[i:i + batch_size], dtype=dtype)).clamp(0, 1).double().numpy()
           for i in range(0, len(flat), batch_size)]
    return np.concatenate(out)


def _selective(maps: np.ndarray, n: int) -> np.ndarray:
    maps = np.nan_to_num(maps, nan=-np.inf)
    if len(maps) < 2:
        return np.argsort(-maps, axis=1)[:, :n]
    finite = np.where(np.isfinite(maps), maps, 0.0)
    others = (finite.sum(axis=0, keepdims=True) - finite) / (len(maps) - 1)
    return np.argsort(-(maps - others), axis=1, kind="stable")[:, :n]


def _centre(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([rows.mean(), cols.mean()]) if len(rows) else np.array([np.nan, np.nan])


def _read_image(path: Path, image: int, split: str = "train_multi") -> tuple[np.ndarray, np.ndarray]:
    size = split_size(path, split, make_hint=f"hnnwb data make shapes --out {path}")
    if not 0 <= image < size:
        raise ValueError(f"image {image} is outside {split} of {path} ({size} images); "
                         f"Fig 4 uses image {FIG4_IMAGE}: make the file with at least {FIG4_IMAGE + 1}")
    x, labels = read_split(path, split, start=image, stop=image + 1)
    return x[0], labels[0]


# --- (b) the binding run, k-means on both layers ---------------------------------------------------------


@dataclass
class HierarchyBinding:
    """Panel (b).

    Attributes:
        image, labels: the input ``[H, W]`` and its labels (0 = background or overlap, 1..3 objects).
        pixels, hidden: spike records ``[steps, S, 784]`` and ``[steps, S, H]`` (one row per seed).
        pixel_groups, hidden_groups: k-means groups ``[S, 784]`` and ``[S, H]`` (0..K-1, arbitrary order).
        pixel_ami: per seed, AMI of the pixel groups over labelled pixels.
        seeds, params, k, smooth, back_steps, image_index: the settings.
    """

    image: np.ndarray
    labels: np.ndarray
    pixels: SpikeRecord
    hidden: SpikeRecord
    pixel_groups: np.ndarray
    hidden_groups: np.ndarray
    pixel_ami: list[float]
    seeds: list[int]
    params: DasbeParams
    k: int
    smooth: int
    back_steps: int
    image_index: int


def bind_hierarchy(model: Any, data_file: str | os.PathLike, *, image: int = FIG4_IMAGE,
                   seeds: Sequence[int] = FIG4_SEEDS, delay: int = FIG4_DELAY, refractory: int = FIG4_REFRACTORY,
                   hidden_refractory: int | None = None, n_iter: int = FIG4_N_ITER, k: int = FIG4_K,
                   smooth: int = FIG4_SMOOTH, back: int = FIG4_BACK, device: str = "cpu") -> HierarchyBinding:
    """Panel (b): bind ``train_multi[image]`` under every seed and group both layers' spikes by k-means.

    ``hidden_refractory`` is r_a (default: ``refractory``, as in the figure); the model is copied when its
    own differs, never changed. k-means runs on the last ``back`` iterations (smooth ``smooth``), with K
    clusters for the pixels and for the hidden units alike.
    """
    x, labels = _read_image(Path(data_file), image)
    r_a = refractory if hidden_refractory is None else int(hidden_refractory)
    if not hasattr(model, "initial_state"):
        raise ValueError(f"bind_hierarchy needs a spiking-hidden DAE (CLRNET), got {type(model).__name__}")
    if getattr(model, "refractory", r_a) != r_a:
        model = copy.deepcopy(model)
        model.refractory = r_a
    params = DasbeParams(delay=delay, refractory=refractory, n_iter=n_iter)
    back = min(int(back), int(n_iter))
    pixels, hidden = run_binding_hidden(model, x.reshape(1, -1), params, seed=list(seeds), image_ids=[image],
                                        labels=labels.reshape(1, -1), device=device, image_shape=x.shape)
    pixels, hidden = pixels.to("cpu"), hidden.to("cpu")
    back_steps = back * delay
    pixel_groups = group_pixels(pixels, k, back_steps=back_steps, smooth=smooth).numpy()
    hidden_groups = group_pixels(hidden, k, back_steps=back_steps, smooth=smooth).numpy()
    flat_labels = labels.reshape(-1)
    return HierarchyBinding(x, labels, pixels, hidden, pixel_groups, hidden_groups,
                            [float(ami(flat_labels, g)) for g in pixel_groups], [int(s) for s in seeds], params,
                            int(k), int(smooth), back_steps, int(image))


# --- (c) rasters of high-level groups and low-level objects ---------------------------------------------


@dataclass
class GroupRasters:
    """Panel (c) for one seed, over the last ``steps`` steps.

    Attributes:
        steps: global step of each column ``[T]``.
        group_ids: hidden clusters shown (the least active cluster, the silent units, is left out).
        group_units: per shown cluster, its unit indices.
        group_spikes: per shown cluster, bool ``[T, units]``.
        group_counts: ``[G, T]`` population counts; ``object_counts``: ``[O, T]`` for labels 1..O.
        object_pixels, object_spikes: per object, its pixel indices and bool ``[T, pixels]``.
        correlation: ``[G, O]`` Pearson correlation of the population counts (smoothed over 3 steps).
        match: per shown cluster, the object (1..O) it is assigned to (one-to-one where possible), or 0.
        group_rates: mean spikes per unit per step of every cluster ``[K]`` (all clusters).
    """

    steps: np.ndarray
    group_ids: list[int]
    group_units: list[np.ndarray]
    group_spikes: list[np.ndarray]
    group_counts: np.ndarray
    object_pixels: list[np.ndarray]
    object_spikes: list[np.ndarray]
    object_counts: np.ndarray
    correlation: np.ndarray
    match: list[int]
    group_rates: list[float]


def group_rasters(binding: HierarchyBinding, *, seed_index: int = 0,
                  iterations: int = RASTER_ITERATIONS) -> GroupRasters:
    """Panel (c): per high-level group and per low-level object, its raster and population count."""
    if not 0 <= seed_index < len(binding.seeds):
        raise ValueError(f"seed_index must be in 0..{len(binding.seeds) - 1}, got {seed_index}")
    D = binding.params.delay
    T = min(int(iterations) * D, binding.pixels.spikes.shape[0])
    hid = binding.hidden.spikes[-T:, seed_index].numpy()
    pix = binding.pixels.spikes[-T:, seed_index].numpy()
    first = binding.pixels.meta.get("first_step", 0) + binding.pixels.spikes.shape[0] - T
    groups = binding.hidden_groups[seed_index]
    back = binding.hidden.spikes[-binding.back_steps:, seed_index].numpy()
    rates = [float(back[:, groups == g].mean()) if (groups == g).any() else 0.0 for g in range(binding.k)]
    shown = [g for g in np.argsort(rates)[::-1] if (groups == g).any()][:-1]  # drop the least active cluster
    units = [np.flatnonzero(groups == g) for g in shown]
    labels = binding.labels.reshape(-1)
    objects = [np.flatnonzero(labels == o) for o in range(1, int(labels.max()) + 1)]
    group_counts = np.stack([hid[:, u].sum(axis=1) for u in units]) if units else np.zeros((0, T))
    object_counts = np.stack([pix[:, p].sum(axis=1) for p in objects]) if objects else np.zeros((0, T))
    corr = _correlation(_smooth3(group_counts), _smooth3(object_counts))
    return GroupRasters(np.arange(first, first + T), [int(g) for g in shown], units, [hid[:, u] for u in units],
                        group_counts, objects, [pix[:, p] for p in objects], object_counts, corr, _match(corr),
                        rates)


def _smooth3(counts: np.ndarray) -> np.ndarray:
    if counts.size == 0:
        return counts.astype(float)
    padded = np.pad(counts.astype(float), ((0, 0), (1, 1)))
    return (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / 3.0


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full((len(a), len(b)), np.nan)
    for i, u in enumerate(a):
        for j, v in enumerate(b):
            if u.std() > 0 and v.std() > 0:
                out[i, j] = float(np.corrcoef(u, v)[0, 1])
    return out


def _match(corr: np.ndarray) -> list[int]:
    """One-to-one assignment maximising the summed correlation; objects are numbered 1..O (0 = none)."""
    if corr.size == 0:
        return [0] * len(corr)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-np.nan_to_num(corr, nan=-1.0))
    match = [0] * len(corr)
    for r, c in zip(rows, cols):
        match[r] = int(c) + 1
    return match


# --- (d) decode each high-level cluster ------------------------------------------------------------


@dataclass
class DecodedClusters:
    """Panel (d) for one seed.

    Attributes:
        group_ids: hidden clusters decoded (as ``group_rasters``: all but the least active one).
        images: ``[G, H, W]`` decoder output for each cluster's unit mask (1 on its units, 0 elsewhere).
        iou: ``[G, O]`` intersection over union of the decoded image (> 0.5) with each object's pixels
            (objects as drawn, overlaps included).
        best_object: per cluster, the object (1..O) with the largest IoU.
    """

    group_ids: list[int]
    images: np.ndarray
    iou: np.ndarray
    best_object: list[int]


@torch.no_grad()
def decode_clusters(model: Any, binding: HierarchyBinding, *, seed_index: int = 0,
                    group_ids: Sequence[int] | None = None) -> DecodedClusters:
    """Panel (d): the decoder's image of each high-level cluster's mask."""
    groups = binding.hidden_groups[seed_index]
    if group_ids is None:
        group_ids = group_rasters(binding, seed_index=seed_index).group_ids
    masks = np.stack([(groups == g).astype(np.float64) for g in group_ids]) if len(group_ids) else \
        np.zeros((0, groups.shape[0]))
    model = model.eval()
    dtype = next(model.parameters()).dtype
    decoded = model.decode(torch.as_tensor(masks, dtype=dtype)).double().numpy()
    H, W = binding.image.shape
    objects = _object_masks(binding)
    iou = np.array([[_iou(d > 0.5, o) for o in objects] for d in decoded]).reshape(len(decoded), len(objects))
    best = [int(np.argmax(row)) + 1 if len(row) and np.max(row) > 0 else 0 for row in iou]
    return DecodedClusters([int(g) for g in group_ids], decoded.reshape(-1, H, W), iou, best)


def _object_masks(binding: HierarchyBinding) -> list[np.ndarray]:
    """Each object's labelled pixels (overlap pixels carry label 0 and belong to none)."""
    labels = binding.labels.reshape(-1)
    return [labels == o for o in range(1, int(labels.max()) + 1)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


# --- summary ----------------------------------------------------------------------------------------


def fig4_summary(model: Any, binding: HierarchyBinding) -> dict[str, Any]:
    """JSON-ready numbers of panels (b)-(d) for every seed: pixel AMI, hidden-group/object correlation of the
    matched pairs, decoded IoU with the matched object, and how many clusters decode to distinct objects."""
    per_seed = []
    for i, seed in enumerate(binding.seeds):
        rasters = group_rasters(binding, seed_index=i)
        decoded = decode_clusters(model, binding, seed_index=i, group_ids=rasters.group_ids)
        matched = [(g, o) for g, o in enumerate(rasters.match) if o > 0]
        per_seed.append({
            "seed": seed, "pixel_ami": _num(binding.pixel_ami[i]),
            "matched_correlation": [_num(rasters.correlation[g, o - 1]) for g, o in matched],
            "decoded_iou_with_matched_object": [_num(decoded.iou[g, o - 1]) for g, o in matched],
            "decoded_best_object": decoded.best_object,
            "distinct_decoded_objects": len({o for o in decoded.best_object if o > 0}),
            "hidden_group_sizes": [int(len(u)) for u in rasters.group_units],
            "hidden_rates": [_num(r) for r in rasters.group_rates],
        })

    def mean(key: str) -> float | None:
        values = [v for s in per_seed for v in (s[key] if isinstance(s[key], list) else [s[key]]) if v is not None]
        return _num(np.mean(values)) if values else None

    return {"image": binding.image_index, "seeds": binding.seeds, "k": binding.k, "smooth": binding.smooth,
            "D": binding.params.delay, "r": binding.params.refractory, "n_iter": binding.params.n_iter,
            "pixel_ami_mean": mean("pixel_ami"), "matched_correlation_mean": mean("matched_correlation"),
            "decoded_iou_mean": mean("decoded_iou_with_matched_object"),
            "distinct_decoded_objects_mean": mean("distinct_decoded_objects"), "per_seed": per_seed}


def _num(value: Any) -> float | None:
    v = float(value)
    return v if np.isfinite(v) else None


# --- the network -----------------------------------------------------------------------------------


@torch.no_grad()
def reconstruction_check(model: Any, data_file: str | os.PathLike, *, n_per_class: int = 500,
                         seed: int = 0) -> dict[str, dict[str, float]]:
    """How well the net reconstructs clean single shapes (the feedback the binding loop relies on).

    Per class: BCE (mean over pixels) of the reconstruction, and the mean output on object pixels and on
    background pixels, from the last ``n_per_class`` images of ``train_single_c`` with hidden noise from a
    generator seeded by ``seed`` (training-style pass, no refractoriness).
    """
    from torch.nn import functional as F

    path = Path(data_file)
    splits = list_splits(path)
    model = model.eval()
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for c, name in enumerate(SHAPE_NAMES):
        split = f"train_single_{c}"
        if split not in splits:
            raise ValueError(f"{path} lacks {split}; make the Shapes file with `hnnwb data make shapes`")
        n = splits[split][0]
        x, _ = read_split(path, split, start=max(0, n - int(n_per_class)), stop=n)
        x = torch.as_tensor(x.reshape(len(x), -1), dtype=dtype)
        noise = torch.rand(len(x), model.n_hidden, generator=gen, dtype=torch.float64).to(dtype)
        y, spikes, _ = model.train_forward(x, noise)
        on = x > 0
        out[name] = {"bce": float(F.binary_cross_entropy(y, x)), "output_on_object": float(y[on].mean()),
                     "output_on_background": float(y[~on].mean()), "hidden_spikes_per_unit": float(spikes.mean())}
    return out


def tiny_shapes_file(path: str | os.PathLike, *, n_multi: int = FIG4_IMAGE + 1, n_single: int = 300) -> Path:
    """A quick Shapes file: ``train_multi[0:n_multi]`` equal to the full file's (it is generated first, so
    image 1109 is the paper's), ``n_single`` images in each single-shape split, nothing else."""
    from workbench.data.datasets import make_dataset

    sizes = {"train_multi": int(n_multi), "test": 0, "train_single": 0, "train_single_0": int(n_single),
             "train_single_1": int(n_single), "train_single_2": int(n_single)}
    return make_dataset("shapes", path, sizes=sizes, progress=False)


def quick_clrnet(data_file: str | os.PathLike, out_dir: str | os.PathLike, *, epochs: int | None, seed: int = 0,
                 resume: bool = True, progress: bool = False, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Train (or continue training) the ``clrnet`` preset for at most ``epochs`` epochs (None: the full recipe,
    500 epochs with early stopping) into ``out_dir``;
    returns the best epoch's net and ``clrnet_info`` of it. Resumable: a later call with more epochs goes on."""
    from workbench.models.presets import train_preset

    result = train_preset("clrnet", data_file, out_dir, seed=seed, epochs=epochs, resume=resume, progress=progress,
                          device=device)
    return load_clrnet(result.best_path)


def load_clrnet(path: str | os.PathLike = CLRNET_RUN / "best.pt") -> tuple[Any, dict[str, Any]]:
    """``(net, info)`` from a CLRNET checkpoint; raises FileNotFoundError naming the command that makes it."""
    from workbench.checkpoints import load_dae

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CLRNET checkpoint at {path}; train one with `python -m workbench.models.presets "
                                f"clrnet --data data/shapes.h5 --out {path.parent} --seed 0 [--epochs N] --resume` "
                                "(full recipe: up to 500 epochs, ~30 s/epoch on CPU; use a GPU)")
    return load_dae(path), clrnet_info(path)


def clrnet_info(path: str | os.PathLike) -> dict[str, Any]:
    """Training budget of a checkpoint: epochs run, best epoch and its validation loss, seconds."""
    from workbench.checkpoints import load_checkpoint

    path = Path(path)
    extra = load_checkpoint(path).extra or {}
    info = {"path": str(path), **{k: extra.get(k) for k in ("epoch", "val_loss", "epochs_run", "seconds")},
            "best_epoch": extra.get("epoch"), "best_val_loss": extra.get("val_loss")}  # a best.pt on its own
    last = path.with_name("last.pt")
    if last.is_file() and last != path:  # the run's totals (best.pt holds them as of its own epoch)
        run = load_checkpoint(last).extra or {}
        info.update({k: run.get(k) for k in ("epochs_run", "seconds", "best_epoch", "best_val_loss")})
    return info

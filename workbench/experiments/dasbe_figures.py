"""The data behind DASBE's Fig 2 (one Shapes image, close up) and Fig 3 (scores over iterations), spec §6.3, §10.

Fig 2 runs one Shapes image under several seeds (D = 32, r = 9, N_iter = 30, the figure scripts' constants)
and looks at its spikes from several sides; every function here takes the ``SpikeRecord`` of that run and a
row ``b`` (one seed) and returns arrays:

* ``slot_spike_maps``: the pixel spike map of every slot of chosen iterations (Fig 2 ii);
* ``slot_group_counts`` / ``slot_purity``: per slot, how many spikes each object fired, and how much of a
  slot's spikes belong to a single object ("one whole shape fires per step");
* ``volley_stats``: the population count (all pixels, or one object's) of the last iterations, its volleys
  (peaks), their spacing and height (Fig 2 iii: volleys every ~10-11 steps, peaks ~40-50);
* ``example_neurons``: a few random neurons per object as a small record (Fig 2 iv);
* ``cofiring_matrix``: the "fMRI" co-firing matrix of object pixels ordered by label (Fig 2 v, §6.3);
* ``population_autocorrelation``: the autocorrelation of each object's population count (Fig 2 vi);
* ``scores_over_time``: synchrony (q = 1/3), rate, clustering and AMI per iteration, mean +- CI over seeds.

Fig 3 uses ``workbench.experiments.dasbe.synchrony_protocol`` per dataset; ``fig3_scatter`` turns its
per-image scores into the subsampled (syn, clustering) and (rate, clustering) points of Fig 3c/d with
robust (Huber) regression lines, and ``fig3_comparison`` lays our curves next to the numbers measured
with the authors' code (spec §7.2). Published numbers are kept as named constants for display only.

``find_shapes_image`` picks a Fig 2 image like the reference's (two inverted triangles and a square, all
fully visible) from the Shapes file; ``shape_kinds`` names the sprite of each object of a label map.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from workbench.binding.dasbe import DasbeParams, run_binding
from workbench.binding.readout import scores_per_cycle
from workbench.data.sprites import SHAPE_NAMES, SHAPES
from workbench.data.store import list_splits, read_split
from workbench.experiments.dasbe import check_data
from workbench.record import SpikeRecord
from workbench.runtime import resolve_device

__all__ = [
    "FIG2_DELAY", "FIG2_REFRACTORY", "FIG2_N_ITER", "FIG2_Q", "FIG2_PHASE_ITERATIONS", "REFERENCE_KINDS",
    "SPEC_VOLLEY_INTERVAL", "SPEC_VOLLEY_PEAK", "AUTHORS_CODE_CORRELATION", "PAPER_FIG3_FINAL_SYN", "FIG3_DATASETS",
    "MULTI_MNIST_NOTE", "shape_kinds", "find_shapes_image", "fig2_params", "fig2_run", "spike_map_iterations",
    "slot_spike_maps", "slot_group_counts", "slot_purity", "VolleyStats", "volley_stats", "volley_summary",
    "example_neurons", "on_pixel_record", "CoFiring", "cofiring_matrix", "population_autocorrelation", "autocorrelation_side_peak",
    "scores_over_time", "fig3_datasets", "robust_line", "fig3_scatter", "fig3_comparison",
]

# --- Fig 2 constants (spec §2.4 "figure scripts", §6.3, §10) ------------------------------------------
FIG2_DELAY = 32  # D
FIG2_REFRACTORY = 9  # r
FIG2_N_ITER = 30
FIG2_Q = 1 / 3  # the Fig 2 / Fig 4 scripts' VP shift cost (Fig 3 uses 1/6)
FIG2_PHASE_ITERATIONS = (0, 2, 4, 9, 19, 29)
FIG2_SPIKE_MAP_ITERATIONS = 3  # the first 3 and the last 3 iterations
RASTER_ITERATIONS = 4  # the labelled raster shows the last 4 iterations (128 steps)
COFIRING_BACK = 10  # the co-firing matrix uses the last 10 iterations
COFIRING_ALPHA = 0.5
AUTOCORR_MAX_LAG = 19
AUTOCORR_BACK = 10  # iterations the autocorrelation is taken over (the spec does not say; see the function)
REFERENCE_KINDS = ("inverted_triangle", "inverted_triangle", "square")  # the reference's Fig 2 image

# --- published values: for display next to ours, NEVER used as results ------------------------------
SPEC_VOLLEY_INTERVAL = (10.0, 11.0)  # Fig 2 (iii): volleys every ~10-11 steps (~D/3, >= r + 1)
SPEC_VOLLEY_PEAK = (40.0, 50.0)  # Fig 2 (iii): population peaks ~40-50 spikes
# Authors' code, synchrony protocol (first 20 images, seed 111, N_iter 30), spec §7.2: Pearson correlation of
# the clustering score with syn (q = 1/6) and with rate over all (image, iteration) points.
AUTHORS_CODE_CORRELATION = {
    "bars": {"clustering_vs_synchrony": 0.989, "clustering_vs_rate": 0.68},
    "corners": {"clustering_vs_synchrony": 0.938, "clustering_vs_rate": 0.51},
}
# Paper Fig 3a, final syn read off the plot (spec §7.2).
PAPER_FIG3_FINAL_SYN = {"bars": 0.97, "shapes": 0.85, "corners": 0.79, "multi_mnist": 0.45, "mnist_shape": 0.27}


# --- picking the Fig 2 image --------------------------------------------------------------------------


def shape_kinds(labels: Any, image_shape: tuple[int, int] | None = None) -> list[str | None]:
    """Sprite name of each object 1..max(label) of one label map: ``"square"``, ``"triangle"`` or
    ``"inverted_triangle"`` when the object's labelled pixels are exactly that sprite (so it is fully
    visible: no pixel lost to an overlap), else None (partly hidden, or absent)."""
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if image_shape is not None:
        lab = lab.reshape(image_shape)
    if lab.ndim != 2:
        raise ValueError(f"labels must be one [H, W] label map (or [N] with image_shape); got shape {lab.shape}")
    kinds: list[str | None] = []
    for k in range(1, int(lab.max(initial=0)) + 1):
        rows, cols = np.nonzero(lab == k)
        if rows.size == 0:
            kinds.append(None)
            continue
        box = lab[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == k
        kinds.append(next((name for name, sprite in zip(SHAPE_NAMES, SHAPES)
                           if box.shape == sprite.shape and np.array_equal(box, sprite)), None))
    return kinds


def find_shapes_image(data_file: str | os.PathLike, kinds: Sequence[str] = REFERENCE_KINDS, *,
                      split: str = "train_multi", start: int = 0, limit: int = 500) -> int:
    """Index of the first image in ``split[start:start+limit]`` whose objects are exactly ``kinds`` (in any
    order), each fully visible. The default asks for the reference's Fig 2 image: two inverted triangles
    and a square. Raises ValueError when no image in the range qualifies."""
    unknown = sorted(set(kinds) - set(SHAPE_NAMES))
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty list of {SHAPE_NAMES}; got {list(kinds)!r}")
    path = check_data(data_file, split, 0, "shapes")
    n = list_splits(path)[split][0]
    stop = min(n, int(start) + int(limit))
    want = Counter(kinds)
    _, labels = read_split(path, split, start=int(start), stop=stop)
    for i, lab in enumerate(labels):
        found = shape_kinds(lab)
        if None not in found and Counter(found) == want:
            return int(start) + i
    raise ValueError(f"no image of {path} {split}[{start}:{stop}] holds exactly {sorted(kinds)} fully visible; "
                     "raise limit or choose other kinds")


# --- the Fig 2 run -------------------------------------------------------------------------------------


def fig2_params(n_iter: int = FIG2_N_ITER, *, delay: int = FIG2_DELAY, refractory: int = FIG2_REFRACTORY
                ) -> DasbeParams:
    """The Fig 2 scripts' loop constants: D = 32, r = 9, 30 iterations (the Shapes preset's D and r)."""
    return DasbeParams.shapes(delay=delay, refractory=refractory, n_iter=n_iter)


def fig2_run(data_file: str | os.PathLike, image_index: int, *, seeds: Sequence[int],
             dae: nn.Module | str | os.PathLike | None = None, params: DasbeParams | None = None,
             split: str = "train_multi", device: str | torch.device = "cpu") -> SpikeRecord:
    """Run one image of ``split`` under every seed: a record with one row per seed (row ``i`` = ``seeds[i]``),
    every step kept, the image's labels and its dataset index as the random key. ``dae``: a module, a
    checkpoint path, or None for the shipped Shapes DAE."""
    from workbench.experiments.dasbe import resolve_dae

    path = check_data(data_file, split, 0, "shapes")
    n = list_splits(path)[split][0]
    if isinstance(image_index, bool) or not isinstance(image_index, (int, np.integer)) or not 0 <= image_index < n:
        raise ValueError(f"image_index must be an int in 0..{n - 1} ({path} {split} has {n} images), "
                         f"got {image_index!r}")
    seeds = [int(s) for s in ([seeds] if isinstance(seeds, (int, np.integer)) else seeds)]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    module, source = resolve_dae(dae, "shapes", data_file=path)
    x, labels = read_split(path, split, start=int(image_index), stop=int(image_index) + 1)
    record = run_binding(module, x.reshape(1, -1), params or fig2_params(), seed=seeds, image_ids=[int(image_index)],
                         labels=labels.reshape(1, -1), record="all", device=resolve_device(device),
                         image_shape=tuple(x.shape[1:]))
    record.meta.update({"data_file": str(path), "split": split, "image_index": int(image_index), "dae": source})
    return record.to("cpu")


def spike_map_iterations(n_iter: int, each_end: int = FIG2_SPIKE_MAP_ITERATIONS) -> list[int]:
    """The first and last ``each_end`` iterations (Fig 2 ii: 0, 1, 2, 27, 28, 29), without repeats."""
    return sorted(set(range(min(each_end, n_iter))) | set(range(max(0, n_iter - each_end), n_iter)))


# --- per-row views of a record ---------------------------------------------------------------------------


def slot_spike_maps(record: SpikeRecord, b: int = 0, iterations: Sequence[int] | None = None) -> np.ndarray:
    """Pixel spike maps ``[I, D, H, W]`` (bool) of row ``b``: one per slot of each chosen iteration
    (default: every iteration). Iteration indices count the record's own cycles (negatives from the end)."""
    cycles = _cycles(record, b)  # [K, D, N]
    shape = _image_shape(record)
    chosen = _iterations(cycles.shape[0], iterations)
    return cycles[chosen].reshape(len(chosen), record.cycle, *shape)


def slot_group_counts(record: SpikeRecord, b: int = 0) -> np.ndarray:
    """Spikes per (iteration, slot, label) of row ``b``: int ``[K, D, L + 1]``; column 0 counts label 0
    (background or overlap pixels), column k object k."""
    labels = _row_labels(record, b)
    onehot = (labels[:, None] == np.arange(int(labels.max(initial=0)) + 1)[None, :]).astype(np.int64)  # [N, L+1]
    return _cycles(record, b).astype(np.int64) @ onehot


def slot_purity(counts: np.ndarray) -> np.ndarray:
    """Per iteration, the share of object spikes fired by each slot's most active object, weighted by the
    slot's spikes: 1 when every slot holds one object only. ``counts`` is ``slot_group_counts``'s
    ``[K, D, L + 1]`` (label 0 is left out). NaN for an iteration without object spikes."""
    obj = np.asarray(counts)[..., 1:]
    if obj.ndim != 3:
        raise ValueError(f"counts must be [iterations, slots, labels + 1]; got shape {np.shape(counts)}")
    total = obj.sum(axis=(1, 2)).astype(np.float64)
    top = obj.max(axis=2, initial=0).sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, top / total, np.nan)


@dataclass(frozen=True)
class VolleyStats:
    """Population volleys of one row over a window: ``steps``/``count`` are the window's global steps and
    spikes per step; ``peaks`` the steps of the volleys (local maxima >= ``threshold``)."""

    steps: np.ndarray
    count: np.ndarray
    peaks: np.ndarray
    threshold: float

    @property
    def intervals(self) -> np.ndarray:
        """Steps between consecutive volleys."""
        return np.diff(self.peaks)

    @property
    def heights(self) -> np.ndarray:
        """Spikes in each volley's peak step."""
        return self.count[np.searchsorted(self.steps, self.peaks)]

    def summary(self) -> dict[str, float | int | None]:
        iv, h = self.intervals, self.heights
        return {"volleys": int(len(self.peaks)),
                "median_interval": float(np.median(iv)) if len(iv) else None,
                "mean_interval": float(np.mean(iv)) if len(iv) else None,
                "median_peak": float(np.median(h)) if len(h) else None,
                "max_peak": int(self.count.max(initial=0))}


def volley_stats(record: SpikeRecord, b: int = 0, *, group: int | None = None, iterations: int = RASTER_ITERATIONS,
                 min_fraction: float = 0.5) -> VolleyStats:
    """Volleys of the population count of row ``b`` over its last ``iterations`` iterations: of all pixels
    (``group=None``) or of the pixels labelled ``group``.

    A volley is a step whose count exceeds the step before and is at least the step after (the first step
    of a flat top counts) and reaches ``min_fraction`` of the window's highest count; the window's first
    and last steps qualify against their one neighbour. Steps are global (0 = the record's first step).
    """
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    cycles = _cycles(record, b)
    k = min(int(iterations), cycles.shape[0])
    if k < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    block = cycles[cycles.shape[0] - k:].reshape(k * record.cycle, record.N)
    if group is not None:
        labels = _row_labels(record, b)
        if not np.any(labels == group):
            raise ValueError(f"no pixel of row {b} has label {group!r}; labels present: {np.unique(labels).tolist()}")
        block = block[:, labels == group]
    count = block.sum(axis=1).astype(np.int64)
    steps = np.arange((cycles.shape[0] - k) * record.cycle, cycles.shape[0] * record.cycle)
    padded = np.concatenate([[-1], count, [-1]])
    threshold = float(min_fraction * count.max(initial=0))
    is_peak = (count > padded[:-2]) & (count >= padded[2:]) & (count >= threshold) & (count > 0)
    return VolleyStats(steps, count, steps[is_peak], threshold)


def volley_summary(record: SpikeRecord, *, iterations: int = RASTER_ITERATIONS, min_fraction: float = 0.5
                   ) -> dict[str, dict[str, float | int | None]]:
    """``volley_stats`` of every row pooled: for the whole population and for each object, the number of
    volleys, the median and mean interval and the median peak over all rows' volleys. Keys: ``"population"``,
    ``"object 1"``, ...; ``"rows"`` counts the rows pooled."""
    if record.labels is None:
        raise ValueError("the record has no labels; run the binding with labels=...")
    groups: list[int | None] = [None] + [int(k) for k in torch.unique(record.labels).tolist() if k != 0]
    out: dict[str, dict[str, float | int | None]] = {}
    for g in groups:
        intervals, heights, n = [], [], 0
        for b in range(record.B):
            if g is not None and not bool((record.labels[b] == g).any()):
                continue
            v = volley_stats(record, b, group=g, iterations=iterations, min_fraction=min_fraction)
            intervals.append(v.intervals)
            heights.append(v.heights)
            n += len(v.peaks)
        iv, h = np.concatenate(intervals or [[]]), np.concatenate(heights or [[]])
        out["population" if g is None else f"object {g}"] = {
            "volleys": n, "median_interval": float(np.median(iv)) if iv.size else None,
            "mean_interval": float(np.mean(iv)) if iv.size else None,
            "median_peak": float(np.median(h)) if h.size else None, "rows": record.B}
    return out


def example_neurons(record: SpikeRecord, b: int = 0, *, per_group: int = 4, seed: int = 0) -> SpikeRecord:
    """A small record of ``per_group`` random on-pixels of each object (fewer if an object is smaller) of row
    ``b``, objects in label order, drawn with ``RandomState(seed)`` (Fig 2 iv). It keeps the cycle and
    labels; ``meta["pixels"]`` lists each neuron's pixel index in the image."""
    if int(per_group) < 1:
        raise ValueError(f"per_group must be >= 1, got {per_group}")
    labels = _row_labels(record, b)
    rng = np.random.RandomState(seed)
    picks = []
    for k in range(1, int(labels.max(initial=0)) + 1):
        members = np.flatnonzero(labels == k)
        if members.size:
            picks.append(np.sort(rng.choice(members, min(int(per_group), members.size), replace=False)))
    pixels = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    index = torch.as_tensor(pixels, dtype=torch.long)
    return SpikeRecord(record.spikes[:, b:b + 1][:, :, index], dt=record.dt, cycle=record.cycle,
                       labels=torch.as_tensor(labels[pixels])[None], meta={**record.meta, "pixels": pixels.tolist(),
                                                                          "row": int(b)})


def on_pixel_record(record: SpikeRecord) -> SpikeRecord:
    """The record restricted to the image's on-pixels (objects and overlaps; background pixels never fire),
    for rasters that should not spend rows on the background. All rows must hold the same image (one image
    under several seeds, as ``fig2_run`` makes). ``meta["pixels"]`` maps each neuron to its pixel index."""
    if record.images is None or record.labels is None:
        raise ValueError("the record needs images and labels (run the binding with labels=...)")
    images = record.images.cpu()
    if not bool((images == images[:1]).all()):
        raise ValueError("the rows hold different images; select one image's rows first (record.select)")
    pixels = torch.nonzero(images[0] > 0)[:, 0]
    return SpikeRecord(record.spikes[:, :, pixels.to(record.spikes.device)], dt=record.dt, cycle=record.cycle,
                       labels=record.labels[:, pixels.to(record.labels.device)],
                       images=record.images[:, pixels.to(record.images.device)],
                       meta={**record.meta, "pixels": pixels.tolist()})


@dataclass(frozen=True)
class CoFiring:
    """Co-firing matrix of the object pixels of one row, ordered by label (then pixel index)."""

    matrix: np.ndarray  # [P, P], normalised by its maximum
    pixels: np.ndarray  # [P] pixel index of each row/column
    labels: np.ndarray  # [P] label of each row/column (1..K, non-decreasing)

    def block_means(self) -> tuple[float, float]:
        """Mean of the matrix within objects (same label, diagonal excluded) and between objects."""
        same = self.labels[:, None] == self.labels[None, :]
        np.fill_diagonal(same, False)
        other = self.labels[:, None] != self.labels[None, :]
        within = float(self.matrix[same].mean()) if same.any() else float("nan")
        between = float(self.matrix[other].mean()) if other.any() else float("nan")
        return within, between


def cofiring_matrix(record: SpikeRecord, b: int = 0, *, back: int = COFIRING_BACK,
                    alpha: float = COFIRING_ALPHA) -> CoFiring:
    """The "fMRI" co-firing matrix of row ``b`` over its last ``back`` iterations (spec §6.3):
    C = SᵀS + α Sᵀ(S + S₊) + α Sᵀ S₋ with S the (time x pixel) spikes, S₊(t) = S(t+1), S₋(t) = S(t-1)
    (zero beyond the window), normalised by max(C); only object pixels (label != 0), ordered by label.
    The formula is the spec's as written: SᵀS enters with weight 1 + α, and the one-step shifts with α."""
    labels = _row_labels(record, b)
    cycles = _cycles(record, b)
    k = min(int(back), cycles.shape[0])
    if k < 1:
        raise ValueError(f"back must be >= 1, got {back}")
    pixels = np.argsort(np.where(labels == 0, np.iinfo(np.int64).max, labels), kind="stable")
    pixels = pixels[: int((labels != 0).sum())]
    S = cycles[cycles.shape[0] - k:].reshape(-1, record.N)[:, pixels].astype(np.float64)  # [T, P]
    plus = np.vstack([S[1:], np.zeros((1, S.shape[1]))])
    minus = np.vstack([np.zeros((1, S.shape[1])), S[:-1]])
    C = S.T @ S + alpha * S.T @ (S + plus) + alpha * S.T @ minus
    top = C.max(initial=0.0)
    return CoFiring(C / top if top > 0 else C, pixels, labels[pixels])


def population_autocorrelation(record: SpikeRecord, b: int = 0, *, max_lag: int = AUTOCORR_MAX_LAG,
                               back: int | None = AUTOCORR_BACK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Autocorrelation of each object's population count n_k(t) of row ``b`` (spec §6.3):
    ρ(τ) = Σ_t n_k(t) n_k(t+τ) / Σ_t n_k(t)² for τ = 0..max_lag, mirrored to -max_lag..max_lag. The sums run
    over the last ``back`` iterations (None: the whole record) with no wrap-around. The spec does not say
    which steps; the default takes the same last 10 iterations as the co-firing matrix and the readout.
    Returns (lags ``[2L+1]``, ρ ``[K, 2L+1]``, object labels ``[K]``); an object that never fired gets NaN."""
    if int(max_lag) < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    counts = slot_group_counts(record, b)  # [K_iter, D, L+1]
    k = counts.shape[0] if back is None else min(int(back), counts.shape[0])
    if k < 1:
        raise ValueError(f"back must be >= 1 or None, got {back}")
    n = counts[counts.shape[0] - k:].reshape(-1, counts.shape[2])[:, 1:].astype(np.float64)  # [T, K]
    L = min(int(max_lag), n.shape[0] - 1)
    energy = (n * n).sum(axis=0)
    rho = np.stack([(n[: n.shape[0] - tau] * n[tau:]).sum(axis=0) for tau in range(L + 1)], axis=1)  # [K, L+1]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(energy[:, None] > 0, rho / energy[:, None], np.nan)
    lags = np.arange(-L, L + 1)
    return lags, np.concatenate([rho[:, :0:-1], rho], axis=1), np.arange(1, n.shape[1] + 1)


def autocorrelation_side_peak(lags: Any, rho: Any, *, min_lag: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per object, the positive lag >= ``min_lag`` where ρ is highest and that height: (lags ``[K]``,
    heights ``[K]``; NaN for an object without a defined ρ). With ``min_lag`` = r + 1 this is the object's
    own re-firing period."""
    lags, rho = np.asarray(lags), np.asarray(rho, dtype=np.float64)
    side = lags >= int(min_lag)
    if not side.any():
        raise ValueError(f"no lag >= min_lag={min_lag} among lags {lags.min()}..{lags.max()}")
    part = rho[:, side]
    defined = np.isfinite(part).any(axis=1)
    best = np.argmax(np.where(np.isfinite(part), part, -np.inf), axis=1)
    peak_lag = np.where(defined, lags[side][best], np.nan)
    height = np.where(defined, part[np.arange(len(part)), best], np.nan)
    return peak_lag, height


def scores_over_time(record: SpikeRecord, *, q: float = FIG2_Q, smooth: int = 2, n_init: int = 10
                     ) -> dict[str, Any]:
    """Per iteration, AMI, synchrony (VP_q silhouette), rate (VP_0) and clustering (Euclidean) scores of
    each row's own D steps, over labelled pixels (``scores_per_cycle``), summarised over the rows (seeds):
    ``mean`` and ``ci95`` (1.96 x SE; NaN rows skipped) per score, ``per_row`` ``[K, rows]`` and ``steps``
    = D x iteration (the time axis of Fig 2 vi)."""
    scores = scores_per_cycle(record, q=q, smooth=smooth, n_init=n_init)
    per_row = scores.scores()
    summary = {name: _mean_ci(values) for name, values in per_row.items()}
    cycles = np.asarray(scores.cycles)
    return {"iterations": cycles, "steps": cycles * record.cycle, "q": float(q),
            "mean": {k: v[0] for k, v in summary.items()}, "ci95": {k: v[1] for k, v in summary.items()},
            "per_row": per_row, "n_nan": scores.n_nan()}


# --- Fig 3 --------------------------------------------------------------------------------------------


FIG3_DATASETS = ("bars", "corners", "shapes", "mnist_shape", "multi_mnist")
MULTI_MNIST_NOTE = ("not available: the bcdae is not shipped (hours of training: hnnwb dasbe train --preset "
                    "multi_mnist); pass a trained one as daes={'multi_mnist': 'RUN/best.pt'}")


def fig3_datasets(data_dir: str | os.PathLike, *, names: Sequence[str] = FIG3_DATASETS, n_multi: int | None = None,
                  mnist: bool = True, daes: Mapping[str, Any] | None = None) -> dict[str, Path | str]:
    """Which Fig 3 datasets can run: ``{name: data file}`` or ``{name: "not available: <why and the fix>"}``.

    Missing files are made under ``data_dir`` (``n_multi``: only that many ``train_multi`` images and no other
    split, for quick tests). MNIST-based datasets are skipped when ``mnist`` is false, or when MNIST can be
    neither found under ``data_dir/mnist`` nor downloaded. Multi-MNIST runs only with a trained bcdae in ``daes``:
    none ships (22 MB, CPU-hours of training). Any other dataset without a shipped DAE (and no entry in
    ``daes``) is skipped with the training command."""
    from workbench.data.datasets import dataset_info
    from workbench.experiments.dasbe import prepare_datasets, tiny_sizes, train_command
    from workbench.models.presets import shipped_checkpoint

    out: dict[str, Path | str] = {}
    runnable = []
    for name in names:
        if name == "multi_mnist" and (daes or {}).get(name) is None:
            out[name] = MULTI_MNIST_NOTE
        elif dataset_info(name).needs_mnist and not mnist:
            out[name] = "not available: MNIST-based datasets are skipped in this mode"
        elif (daes or {}).get(name) is None and shipped_checkpoint(name) is None:
            out[name] = f"not available: no trained DAE ({train_command(name)})"
        else:
            runnable.append(name)
    sizes = {name: tiny_sizes(name, int(n_multi)) for name in runnable} if n_multi is not None else None
    made = prepare_datasets(runnable, data_dir, sizes=sizes, fetch_mnist=mnist, progress=False)
    for name in names:
        if name in made:
            value = made[name]
            out[name] = value if isinstance(value, Path) else f"not available: {value}"
    return {name: out[name] for name in names}


def robust_line(x: Any, y: Any, *, epsilon: float = 1.35) -> tuple[float, float]:
    """(slope, intercept) of a Huber regression of y on x (robust to outliers), NaN pairs dropped; NaN when
    fewer than 3 points or x is constant. Stands in for the figure's robust lmplot line."""
    from sklearn.linear_model import HuberRegressor

    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    fit = HuberRegressor(epsilon=epsilon, alpha=0.0, max_iter=1000).fit(x[:, None], y)
    return float(fit.coef_[0]), float(fit.intercept_)


def fig3_scatter(results: Mapping[str, Mapping[str, Any]], *, fraction: float = 1 / 30, seed: int = 0
                 ) -> dict[str, dict[str, Any]]:
    """Fig 3c/d's points per dataset from ``synchrony_protocol`` results (run with ``per_image=True``).

    For each dataset: a random ``fraction`` of all (iteration, image) points with defined scores (at least
    one point), drawn with ``RandomState(seed)``, as ``synchrony``, ``rate`` and ``clustering`` arrays; the
    robust lines clustering ~ syn and clustering ~ rate fitted on **all** points (``fit_synchrony``,
    ``fit_rate`` = (slope, intercept)); Pearson correlations over all points; the point counts."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    out: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        if "per_image" not in result:
            raise ValueError(f"{name}: the result has no per-image scores; run synchrony_protocol(per_image=True)")
        arrays = {k: np.asarray(result["per_image"][k], dtype=np.float64).ravel()
                  for k in ("synchrony", "rate", "clustering")}
        keep = np.flatnonzero(np.all([np.isfinite(v) for v in arrays.values()], axis=0))
        rng = np.random.RandomState(seed)
        n_pick = max(1, int(round(fraction * keep.size))) if keep.size else 0
        pick = np.sort(rng.choice(keep, n_pick, replace=False)) if n_pick else keep
        syn, rate, km = (arrays[k][keep] for k in ("synchrony", "rate", "clustering"))
        out[name] = {**{k: v[pick] for k, v in arrays.items()},
                     "fit_synchrony": robust_line(syn, km), "fit_rate": robust_line(rate, km),
                     "correlation": {"clustering_vs_synchrony": _corr(km, syn), "clustering_vs_rate": _corr(km, rate)},
                     "n_points": int(keep.size), "n_shown": int(len(pick))}
    return out


def fig3_comparison(results: Mapping[str, Mapping[str, Any]],
                    iterations: Sequence[int] = (0, 1, 2, 3, 4, 5, 9, 14, 19, 29)) -> str:
    """A plain-text table: per dataset and score, our mean at chosen iterations, and below it the authors'
    code's value where spec §7.2 has one (published numbers, marked as such), then the correlations and the
    paper's final syn (Fig 3a, read off the plot)."""
    from workbench.experiments.dasbe import AUTHORS_CODE_SYNCHRONY

    def cell(v: Any) -> str:
        return "   -  " if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:6.3f}"

    lines = []
    for name, result in results.items():
        n_iter = len(result["mean"]["synchrony"])
        its = [i for i in iterations if i < n_iter]
        n_img = len(result.get("image_indices", []))
        lines.append(f"{name} ({n_img} images, seed {result.get('seed')}, q = {result.get('q', 1 / 6):.4g})")
        lines.append(f"  {'iteration':24s}" + "".join(f"{i:>7d}" for i in its))
        for score in ("synchrony", "rate", "clustering", "ami"):
            lines.append(f"  {score + ' (ours)':24s}" + "".join(f" {cell(result['mean'][score][i])}" for i in its))
            ref = AUTHORS_CODE_SYNCHRONY.get(name, {}).get(score)
            if ref:
                lines.append(f"  {score + ' (authors code)':24s}" + "".join(f" {cell(ref.get(i))}" for i in its))
        corr = result.get("correlation", {})
        ref = AUTHORS_CODE_CORRELATION.get(name, {})
        for key, title in (("clustering_vs_synchrony", "corr(km, syn)"), ("clustering_vs_rate", "corr(km, rate)")):
            extra = f"   authors' code: {ref[key]:.3f}" if key in ref else ""
            lines.append(f"  {title:24s} {cell(corr.get(key))}{extra}")
        if name in PAPER_FIG3_FINAL_SYN:
            lines.append(f"  {'final syn, paper Fig 3a':24s} ~{PAPER_FIG3_FINAL_SYN[name]:.2f} (read off the plot)")
        lines.append("")
    return "\n".join(lines)


# --- helpers -----------------------------------------------------------------------------------------


def _cycles(record: SpikeRecord, b: int) -> np.ndarray:
    """Row ``b``'s spikes folded as ``[K, D, N]`` (bool numpy)."""
    if not record.cycle:
        raise ValueError("the record has no cycle length (D); these views need a DASBE record")
    if not isinstance(b, (int, np.integer)) or not -record.B <= b < record.B:
        raise IndexError(f"row b={b!r} out of range for a record with {record.B} rows")
    return record.cycles()[:, :, int(b)].cpu().numpy()


def _row_labels(record: SpikeRecord, b: int) -> np.ndarray:
    if record.labels is None:
        raise ValueError("the record has no labels; run the binding with labels=...")
    return record.labels[int(b)].cpu().numpy().astype(np.int64)


def _image_shape(record: SpikeRecord) -> tuple[int, int]:
    if record.image_shape is None:
        raise ValueError("the record has no image_shape; pixel maps need it")
    return record.image_shape


def _iterations(K: int, iterations: Sequence[int] | None) -> list[int]:
    if iterations is None:
        return list(range(K))
    chosen = []
    for i in iterations:
        if not isinstance(i, (int, np.integer)) or not -K <= i < K:
            raise IndexError(f"iteration {i!r} out of range for a record of {K} iterations")
        chosen.append(int(i) % K)
    return chosen


def _mean_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 1.96 x SE over the last axis, NaNs skipped (CI NaN with fewer than 2 values)."""
    v = np.asarray(values, dtype=np.float64)
    n = np.sum(np.isfinite(v), axis=1)
    with np.errstate(all="ignore"):
        mean = np.nansum(v, axis=1) / n
        sd = np.sqrt(np.nansum((v - mean[:, None]) ** 2, axis=1) / (n - 1))
        return mean, np.where(n > 1, 1.96 * sd / np.sqrt(n), np.nan)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])

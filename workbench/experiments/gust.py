"""GUST evaluation: the data behind the AMI / SynScore curves, the generalisation table and the figures.

Spec gust.md §5-§6 and §9.

* ``evaluate``: the dataset protocol (primary, §5.4): the first ``images`` images of a split, IT = 30 cycles,
  clean input, one batched forward per image and seed, then k-medoids + AMI + SynScore for cycles 1..IT-1
  of every (image, seed) row at once. Curves are the mean and 95 % CI over rows.
* ``reference_protocol``: the authors' README curve protocol: image 10 of ``train_multi``, ``runs`` seeds.
* ``generalisation_table``: train {2, 3, 4} x test {2, 3, 4} objects, AMI and SynScore at the last cycle.
* ``scores_by_overlap``: the last-cycle scores of ``evaluate`` against how much the objects of each image overlap.
* ``slot_offsets``: how precisely each object keeps its phase: its pixels' slots relative to the object's modal slot.
* ``mixed_cluster_ami``: what AMI a grouping keeps when a share of every object's pixels sits in one shared
  cluster, the way k-medoids groups pixels that miss their object's slot (``evaluate``'s ``silent_share``).
* ``figure_record``: one image's full record (for colourings, spike maps and rasters, §5.5).
* training curves: ``workbench.experiments.gust_train.training_curve``.

The 95 % CI is the Student-t interval mean +- t(0.975, n-1) s / sqrt(n) over the non-NaN rows of a cycle.
Results are plain dicts of lists (JSON-ready); nothing here plots.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.binding.kmedoids import cycle_scores
from workbench.data.datasets import dataset_path
from workbench.data.store import read_overlap, read_split, split_size

__all__ = [
    "AUTHORS_CURVE",
    "COLOURING_CYCLES",
    "SPIKE_MAP_CYCLES",
    "evaluate",
    "format_score",
    "reference_protocol",
    "generalisation_table",
    "generalisation_files",
    "training_budget",
    "budget_text",
    "figure_record",
    "curve_stats",
    "load_net",
    "scores_by_overlap",
    "mixed_cluster_ami",
    "slot_offsets",
    "OVERLAP_BINS",
]

# §6.1: mean over the authors' 5 runs on image 10, cycles 1..29 (their figure notebook's hard-coded values)
AUTHORS_CURVE: dict[str, list[float]] = {
    "cycles": list(range(1, 30)),
    "ami": [-0.003, 0.131, 0.361, 0.522, 0.557, 0.539, 0.634, 0.682, 0.652, 0.654, 0.658, 0.691, 0.715, 0.722,
            0.714, 0.709, 0.772, 0.694, 0.810, 0.776, 0.795, 0.793, 0.784, 0.817, 0.784, 0.807, 0.748, 0.809, 0.795],
    "synscore": [0.000, 0.447, 0.402, 0.443, 0.470, 0.581, 0.624, 0.693, 0.684, 0.658, 0.621, 0.624, 0.745, 0.760,
                 0.698, 0.674, 0.780, 0.710, 0.807, 0.801, 0.804, 0.831, 0.823, 0.854, 0.822, 0.831, 0.724, 0.800,
                 0.806],
}
COLOURING_CYCLES = (0, 5, 10, 15, 20, 25, 29)  # §5.5
SPIKE_MAP_CYCLES = (0, 1, 2, 27, 28, 29)  # §5.5: rows of the spike-map grid
REFERENCE_IMAGE = 10  # train_multi[10], used by every figure script of the reference
TABLE_COUNTS = (2, 3, 4)  # §3: train {2, 3, 4} x test {2, 3, 4}
OVERLAP_BINS = (0, 1, 8, 16, 30)  # left edges (overlap pixels per image) of the scores_by_overlap bins


def load_net(net_or_checkpoint: Any, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """A GustNet from a net, a ``.pt`` checkpoint or a run folder (its best.pt), plus a description."""
    from workbench.models.gust import GustNet, gust_checkpoint, gust_from_checkpoint

    if isinstance(net_or_checkpoint, GustNet):
        return net_or_checkpoint.to(device).eval(), {"net": "in-memory GustNet"}
    path = Path(net_or_checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"no GUST checkpoint at {path}; train one with `hnnwb gust train --out DIR`")
    ckpt = gust_checkpoint(path)
    info: dict[str, Any] = {"net": str(path)}
    info.update({k: v for k, v in (ckpt.extra or {}).items() if isinstance(v, (int, float, str, bool))})
    return gust_from_checkpoint(ckpt, device), info


def curve_stats(values: np.ndarray) -> dict[str, list[float]]:
    """Mean, 95 % Student-t CI and non-NaN count per column of ``values [rows, cycles]`` (NaN rows skipped)."""
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=np.float64)
    n = np.sum(~np.isnan(v), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(v, axis=0) / np.maximum(n, 1), np.nan)
        sd = np.sqrt(np.nansum((v - mean) ** 2, axis=0) / np.maximum(n - 1, 1))
        half = np.where(n > 1, student_t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(np.maximum(n, 1)), np.nan)
    return {"mean": _list(mean), "ci_low": _list(mean - half), "ci_high": _list(mean + half), "n": n.tolist()}


def _list(x: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)] \
        if np.asarray(x).ndim <= 1 else [_list(r) for r in x]


def _summary(ami: np.ndarray, syn: np.ndarray, cycles: list[int], T: int) -> dict[str, Any]:
    last_ami, last_syn = ami[:, -1], syn[:, -1]
    tail = [i for i, c in enumerate(cycles) if c >= cycles[-1] - 4]  # the last 5 cycles (25-29 for IT = 30)
    return {
        "cycles": cycles,
        "steps": [T * (c + 1) for c in cycles],  # cycle c is plotted at step 10 (c + 1), as the reference
        "ami": {**curve_stats(ami), "per_image": _list(ami)},
        "synscore": {**curve_stats(syn), "per_image": _list(syn)},
        "ami_mean": float(np.nanmean(last_ami)) if np.any(~np.isnan(last_ami)) else None,
        "synscore_mean": float(np.nanmean(last_syn)) if np.any(~np.isnan(last_syn)) else None,
        "ami_mean_last5": float(np.nanmean(ami[:, tail])),
        "synscore_mean_last5": float(np.nanmean(syn[:, tail])) if np.any(~np.isnan(syn[:, tail])) else None,
        "n_nan": int(np.isnan(syn).sum()),
        "n_nan_last": int(np.isnan(last_syn).sum()),
    }


def _run_and_score(net: Any, images: np.ndarray, labels: np.ndarray, ids: np.ndarray, seeds: Sequence[int],
                   cycles: int, device: str | torch.device) -> tuple[Any, np.ndarray, float, float]:
    """One batch: the ``CycleScoreResult`` of every (seed, image) row, the last cycle's ``slot_offsets``,
    forward seconds, scoring seconds."""
    from workbench.models.gust import run_gust

    t0 = time.perf_counter()
    run = run_gust(net, images, cycles=cycles, seed=list(seeds), image_ids=torch.as_tensor(ids), labels=labels,
                   device=device)
    t1 = time.perf_counter()
    rec = run.record
    res = cycle_scores(rec.spikes, rec.labels, T=rec.cycle, seeds=run.seeds, image_ids=run.image_ids)
    offsets = slot_offsets(rec.spikes, rec.labels, T=rec.cycle)
    return res, offsets, t1 - t0, time.perf_counter() - t1


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    s = [int(seeds)] if isinstance(seeds, (int, np.integer)) else [int(x) for x in seeds]
    if not s:
        raise ValueError("seeds must name at least one seed")
    return s


def evaluate(net_or_checkpoint: Any, data_file: str | os.PathLike, *, split: str = "test", images: int = 100,
             seeds: int | Sequence[int] = (0,), cycles: int = 30, batch_size: int = 50,
             device: str | torch.device = "cpu", progress: bool = True, start: int = 0) -> dict[str, Any]:
    """Dataset protocol (§5.4): images ``start..start+images`` of ``split``, every seed, IT = ``cycles``.

    Returns a JSON-ready dict: ``cycles`` (1..IT-1), ``steps``, ``ami`` / ``synscore`` with ``mean``,
    ``ci_low``, ``ci_high``, ``n`` per cycle and ``per_image`` [rows][cycles] (rows seed-major: seed s of
    image i is row s * images + i), ``ami_mean`` / ``synscore_mean`` at the last cycle, their means over the
    last 5 cycles, ``n_nan`` (undefined SynScores: one predicted cluster among object pixels), the AMI
    decomposition ``silent_share`` / ``bound_ami`` per cycle and ``silent_share_mean`` / ``bound_ami_mean`` at
    the last cycle (object pixels grouped with the silent pixels, and the AMI of the rest: see
    ``CycleScoreResult``; their last cycle per row in ``last_per_image``), likewise ``unfired_share`` (object
    pixels without a spike in the cycle), ``slot_offsets`` (the last cycle's ``slot_offsets`` pooled over all
    rows, as shares), timings (``seconds``) and what was evaluated.
    """
    if int(images) < 1 or int(batch_size) < 1 or int(cycles) < 2:
        raise ValueError(f"images and batch_size must be >= 1 and cycles >= 2; got {images}, {batch_size}, {cycles}")
    seeds = _seeds(seeds)
    path = Path(data_file)
    size = split_size(path, split, make_hint=f"hnnwb data make shapes_multiobj_3_3 --out {path}")
    stop = start + int(images)
    if stop > size:
        raise ValueError(f"split {split!r} of {path} has {size} images; asked for {start}..{stop}")
    net, info = load_net(net_or_checkpoint, device)
    t_start = time.perf_counter()
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("ami", "synscore", "silent_share", "bound_ami",
                                                                 "unfired_share")}
    t_fwd, t_score, offset_counts = 0.0, 0.0, None
    bar = tqdm(total=int(images), desc="gust eval", unit="img", disable=not progress or None)
    for lo in range(start, stop, int(batch_size)):
        hi = min(stop, lo + int(batch_size))
        imgs, labs = read_split(path, split, start=lo, stop=hi)
        res, offsets, f, sc = _run_and_score(net, imgs, labs, np.arange(lo, hi), seeds, int(cycles), device)
        offset_counts = offsets if offset_counts is None else offset_counts + offsets
        for name, part in parts.items():
            part.append(getattr(res, name).reshape(len(seeds), hi - lo, -1))
        t_fwd, t_score = t_fwd + f, t_score + sc
        bar.update(hi - lo)
    bar.close()
    ami, syn, silent, bound, unfired = (np.concatenate(parts[name], axis=1).reshape(len(seeds) * int(images), -1)
                                        for name in parts)  # seed-major rows
    out = _summary(ami, syn, list(range(1, int(cycles))), net.params.slots)
    out.update({"silent_share": {**curve_stats(silent), "last_per_image": _list(silent[:, -1])},
                "silent_share_mean": float(np.mean(silent[:, -1])),
                "bound_ami": {**curve_stats(bound), "last_per_image": _list(bound[:, -1])},
                "bound_ami_mean": _nanmean_or_none(bound[:, -1]),
                "unfired_share": curve_stats(unfired), "unfired_share_mean": float(np.mean(unfired[:, -1])),
                "slot_offsets": (offset_counts / max(int(offset_counts.sum()), 1)).tolist()})
    problems = ami.size
    out.update({
        "protocol": "dataset", "data_file": str(path), "split": split, "start": int(start), "images": int(images),
        "seeds": seeds, "n_cycles": int(cycles), **info,
        "seconds": {"forward": t_fwd, "scores": t_score, "total": time.perf_counter() - t_start,
                    "scores_ms_per_image_cycle": 1e3 * t_score / max(problems, 1)},
    })
    return out


def reference_protocol(net: Any, data_file: str | os.PathLike, image_index: int = REFERENCE_IMAGE, runs: int = 5, *,
                       split: str = "train_multi", cycles: int = 30, seed0: int = 0,
                       device: str | torch.device = "cpu") -> dict[str, Any]:
    """The README-curve protocol (§5.4): one image (``train_multi[10]``), ``runs`` seeds (``seed0 ..``),
    cycles 1..IT-1; mean +- 95 % CI over the runs. Same dict layout as ``evaluate`` (rows = runs)."""
    if int(runs) < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    return evaluate(net, data_file, split=split, images=1, start=int(image_index),
                    seeds=list(range(seed0, seed0 + int(runs))), cycles=cycles, device=device, progress=False) | {
        "protocol": "reference", "image_index": int(image_index)}


_OVERLAP_SCORES = ("ami", "synscore", "silent_share", "bound_ami")


def _seed_mean_last(result: Mapping[str, Any], key: str, n: int) -> np.ndarray | None:
    """Per image, the seed mean of ``result[key]``'s last cycle (NaN where every seed is undefined); None when
    the result keeps no per-image values of ``key`` (the decomposition before it was stored per image)."""
    scores = result.get(key, {})
    if "per_image" in scores:  # whole curves per row (AMI, SynScore)
        values = [row[-1] for row in scores["per_image"]]
    elif "last_per_image" in scores:  # the decomposition keeps only the last cycle per row
        values = scores["last_per_image"]
    else:
        return None
    last = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if last.size != len(result["seeds"]) * n:
        raise ValueError(f"result[{key!r}] has {last.size} rows, expected seeds x images = "
                         f"{len(result['seeds'])} x {n}; pass evaluate()'s result unchanged")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an image whose every seed is NaN stays NaN
        return np.nanmean(last.reshape(len(result["seeds"]), n), axis=0)


def scores_by_overlap(result: Mapping[str, Any], bins: Sequence[int] = OVERLAP_BINS) -> dict[str, Any]:
    """Last-cycle AMI and SynScore of a dataset-protocol ``evaluate`` result against each image's overlap.

    Overlap = pixels covered by more than one object: the file's ``overlap`` mask, or for files without one
    (the authors') the on-pixels labelled 0. The AMI leaves them out, but they are where two objects
    touch, so they measure how entangled a scene is. Per image the scores are averaged over the seeds;
    ``bins`` are left edges (the last bin is open). Returns per-image ``overlap`` / ``ami`` / ``synscore``
    (and ``silent_share`` / ``bound_ami`` when the result has them per image), per bin ``lo``, ``hi``
    (None = open), ``label`` ("0", "1-7", "30+"), ``n``, ``overlap_mean`` and the same scores (means, None
    for an empty bin), and ``corr_ami``, the Pearson correlation of per-image AMI
    with overlap (None when undefined).
    """
    if result.get("protocol") != "dataset":
        raise ValueError("scores_by_overlap needs a dataset-protocol result of evaluate(); got protocol "
                         f"{result.get('protocol')!r}")
    edges = [int(b) for b in bins]
    if not edges or edges[0] != 0 or any(b >= c for b, c in zip(edges, edges[1:])):
        raise ValueError(f"bins must be increasing left edges starting at 0, got {list(bins)}")
    path, split, start, n = result["data_file"], result["split"], int(result["start"]), int(result["images"])
    mask = read_overlap(path, split, start=start, stop=start + n)
    source = "overlap mask"
    if mask is None:
        images, labels = read_split(path, split, start=start, stop=start + n)
        mask, source = (images > 0) & (labels == 0), "unlabelled on-pixels"
    overlap = mask.reshape(n, -1).sum(axis=1)
    per_image = {key: values for key in _OVERLAP_SCORES if (values := _seed_mean_last(result, key, n)) is not None}
    out: dict[str, Any] = {"overlap": overlap.tolist(), **{k: _list(v) for k, v in per_image.items()},
                           "source": source, "bins": []}
    for lo, hi in zip(edges, edges[1:] + [None]):
        inside = (overlap >= lo) & (overlap < hi if hi is not None else True)
        label = f"{lo}+" if hi is None else str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"
        out["bins"].append({"lo": lo, "hi": hi, "label": label, "n": int(inside.sum()),
                            "overlap_mean": _nanmean_or_none(overlap[inside].astype(np.float64)),
                            **{k: _nanmean_or_none(v[inside]) for k, v in per_image.items()}})
    ok = np.isfinite(per_image["ami"])
    spread = ok.sum() > 1 and np.ptp(overlap[ok]) > 0 and np.ptp(per_image["ami"][ok]) > 0
    out["corr_ami"] = float(np.corrcoef(overlap[ok], per_image["ami"][ok])[0, 1]) if spread else None
    return out


def slot_offsets(spikes: Any, labels: Any, *, T: int = 10, cycle: int = -1) -> np.ndarray:
    """Phase precision of every object in one cycle, pooled over the record's rows.

    ``spikes`` bool ``[S, B, N]`` (S = cycles * T), ``labels`` ``[B, N]`` (0 = background or overlap). For each
    object (label > 0) of each row, its pixels that fire exactly once in the cycle define its modal slot (ties:
    the earliest); returns the counts ``[T]`` of those pixels by their slot's offset from it, mod T (0: on the
    modal slot, 1: one slot late, T - 1: one slot early). Under the Hamming grouping metric only offset 0 joins
    the object's cluster.
    """
    s = torch.as_tensor(spikes).to(torch.bool)
    lab = torch.as_tensor(labels, dtype=torch.int64)
    if s.dim() != 3 or tuple(lab.shape) != tuple(s.shape[1:]):
        raise ValueError(f"need spikes [S, B, N] and labels [B, N]; got {tuple(s.shape)} and {tuple(lab.shape)}")
    n_cycles = s.shape[0] // T
    if s.shape[0] % T or not -n_cycles <= cycle < n_cycles:
        raise ValueError(f"the record has {s.shape[0]} steps ({T}-slot cycles); cycle {cycle} is not among them")
    block = s.reshape(n_cycles, T, *s.shape[1:])[cycle].cpu()  # [T, B, N]
    single = (block.sum(0) == 1) & (lab > 0)
    slot = block.to(torch.int64).argmax(0)  # the slot of a single spike
    B, K = lab.shape[0], int(lab.max()) + 1 if lab.numel() else 1
    per_object = torch.zeros(B, K, T, dtype=torch.int64)
    rows = torch.arange(B)[:, None].expand_as(lab)
    per_object.index_put_((rows[single], lab[single], slot[single]), torch.ones(int(single.sum()), dtype=torch.int64),
                          accumulate=True)
    modal = per_object.argmax(-1)  # [B, K]
    offset = (slot - modal.gather(1, lab)) % T
    return torch.bincount(offset[single], minlength=T).numpy()


def mixed_cluster_ami(n_objects: int, share: float, pixels_per_object: int = 100) -> float:
    """AMI of a grouping of ``n_objects`` equal objects that is perfect except that ``share`` of every object's
    pixels sit together in one extra cluster (as off-slot pixels sit with the silent ones, see ``evaluate``).

    The same share costs more AMI with fewer objects, because the true grouping carries less information:
    e.g. a share of 0.29 leaves 0.55 / 0.63 / 0.66 for 2 / 3 / 4 objects.
    """
    from workbench.metrics import ami

    n, size = int(n_objects), int(pixels_per_object)
    if n < 1 or size < 1 or not 0.0 <= float(share) <= 1.0:
        raise ValueError(f"need n_objects >= 1, pixels_per_object >= 1 and 0 <= share <= 1; "
                         f"got {n_objects}, {pixels_per_object}, {share}")
    labels = np.repeat(np.arange(1, n + 1), size)
    pred = labels.copy()
    mixed = np.arange(size) < round(float(share) * size)  # the first pixels of each object
    pred[np.tile(mixed, n)] = 0
    return float(ami(labels, pred, ignore_label=None))


def _nanmean_or_none(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def generalisation_files(data_dir: str | os.PathLike) -> dict[int, Path]:
    """Test files of the 3x3 table (§3): the ``test`` split of shapes_multiobj_3_<n> for n in 2, 3, 4."""
    return {n: dataset_path(f"shapes_multiobj_3_{n}", data_dir) for n in TABLE_COUNTS}


def train_command(n_train: int, data_dir: str | os.PathLike = "data") -> str:
    """The command that makes the data and the net of one table row (shown for missing cells)."""
    return f"hnnwb gust train --objects {n_train} --out runs/gust/train_{n_train}"


def training_budget(net: Any) -> dict[str, Any] | None:
    """What a table row's net cost to train, from its checkpoint (and the run's ``history.json`` beside it):
    batch size, learning rate, the run's iterations, epochs and wall time, and the iteration and epoch of
    the checkpoint itself. None for an in-memory net or a file that does not say."""
    import json

    from workbench.models.gust import GustNet, gust_checkpoint

    if isinstance(net, GustNet):
        return None
    ckpt = gust_checkpoint(net)
    train, extra = ckpt.config.get("train") or {}, ckpt.extra or {}
    if "batch_size" not in train or "iteration" not in extra:
        return None
    out = {"batch_size": int(train["batch_size"]), "lr": train.get("lr"), "n_train": train.get("n_train"),
           "checkpoint_iteration": int(extra["iteration"]), "checkpoint_epoch": extra.get("epoch"),
           "val_loss": extra.get("val_loss"), "stored_dtype": extra.get("stored_dtype", "float32")}
    history = ckpt.path.parent / "history.json"
    if history.exists():
        h = json.loads(history.read_text())
        iters = len(h.get("train_loss", []))
        out.update({"run_iterations": iters, "run_epochs": iters / max(int(h.get("iterations_per_epoch", 1)), 1),
                    "run_hours": float(h.get("seconds", math.nan)) / 3600, "stopped_early": h.get("stopped_early")})
    return out


def budget_text(budget: Mapping[str, Any] | None) -> str:
    """One line for a table row's training budget (see ``training_budget``)."""
    if not budget:
        return "training budget unknown"
    text = f"batch {budget['batch_size']}, lr {budget['lr']:g}"
    if "run_iterations" in budget:
        text += (f", {budget['run_iterations']:,} iterations ({budget['run_epochs']:.1f} epochs of "
                 f"{budget['n_train']:,} images), {budget['run_hours']:.1f} h wall")
    text += f"; checkpoint of iteration {budget['checkpoint_iteration']:,} (epoch {budget['checkpoint_epoch']})"
    return text + (f", weights stored as {budget['stored_dtype']}" if budget["stored_dtype"] != "float32" else "")


def generalisation_table(nets: Mapping[int, Any], data_dir: str | os.PathLike = "data", images: int = 100,
                         seeds: int | Sequence[int] = (0,), *, cycles: int = 30, batch_size: int = 50,
                         device: str | torch.device = "cpu", progress: bool = True,
                         test_files: Mapping[int, Any] | None = None) -> dict[str, Any]:
    """Combinatorial generalisation (§3, §10.6): AMI and SynScore (and AMI's decomposition into
    ``silent_share`` and ``bound_ami``, see ``evaluate``) at the last cycle for every net
    (``{n_train: net or checkpoint}``) on every test set (``{n_test: file}``, default
    ``generalisation_files(data_dir)``). Cells without a net or test file stay ``None`` and ``missing``
    says which command produces them; nothing is filled in otherwise. ``budget[n_train]`` records what
    each row's net cost to train (``training_budget``), so unequal rows are visible."""
    files = dict(test_files) if test_files is not None else generalisation_files(data_dir)
    rows, cols = list(TABLE_COUNTS), sorted(set(TABLE_COUNTS) | set(files))
    out: dict[str, Any] = {"train": rows, "test": cols, "ami": [[None] * len(cols) for _ in rows],
                           "synscore": [[None] * len(cols) for _ in rows], "ami_ci": [[None] * len(cols) for _ in rows],
                           "synscore_ci": [[None] * len(cols) for _ in rows],
                           "silent_share": [[None] * len(cols) for _ in rows],
                           "bound_ami": [[None] * len(cols) for _ in rows], "missing": {}, "cells": {},
                           "budget": {}, "images": int(images), "seeds": _seeds(seeds)}
    for n_te in cols:
        if files.get(n_te) is None or not Path(files[n_te]).exists():
            out["missing"][f"test{n_te}"] = f"hnnwb data make shapes_multiobj_3_{n_te} --out {files.get(n_te)}"
    for i, n_tr in enumerate(rows):
        net = nets.get(n_tr)
        if net is None or (isinstance(net, (str, os.PathLike)) and not Path(net).exists()):
            out["missing"][f"train{n_tr}"] = train_command(n_tr, data_dir)
            continue
        out["budget"][n_tr] = training_budget(net)
        for j, n_te in enumerate(cols):
            f = files.get(n_te)
            if f is None or not Path(f).exists():
                continue
            res = evaluate(net, f, split="test", images=images, seeds=seeds, cycles=cycles, batch_size=batch_size,
                           device=device, progress=progress)
            out["ami"][i][j], out["synscore"][i][j] = res["ami_mean"], res["synscore_mean"]
            out["silent_share"][i][j], out["bound_ami"][i][j] = res["silent_share_mean"], res["bound_ami_mean"]
            k = len(res["cycles"]) - 1
            out["ami_ci"][i][j] = [res["ami"]["ci_low"][k], res["ami"]["ci_high"][k]]
            out["synscore_ci"][i][j] = [res["synscore"]["ci_low"][k], res["synscore"]["ci_high"][k]]
            out["cells"][f"{n_tr}x{n_te}"] = {"net": str(net) if not hasattr(net, "params") else "in-memory",
                                               "data_file": str(f), "n_nan_last": res["n_nan_last"],
                                               "seconds": res["seconds"]["total"]}
    return out


def compare_nets(nets: Mapping[str, Any], data_file: str | os.PathLike, *, images: int = 100,
                 seeds: int | Sequence[int] = (0,), cycles: int = 30, batch_size: int = 50,
                 device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
    """The dataset protocol (``evaluate``) for several nets (``{name: net, .pt file or run folder}``) on the same
    test images and seeds. The random streams are keyed by (seed, image), so every net sees the same neuron
    noise, initial state and k-medoids init, and the nets can be compared image by image.

    Returns ``{"images", "seeds", "data_file", "results": {name: evaluate(...)}, "rows": [...]}``, one row per
    net in the given order: ``ami_mean``, ``synscore_mean`` and their 95 % CIs at the last cycle,
    ``silent_share_mean``, ``bound_ami_mean``, the training ``budget`` (``training_budget``), and
    ``ami_diff`` / ``synscore_diff``: the paired difference to the first net (mean and 95 % CI over the
    (seed, image) rows): it tests one net against the other on the images that both find hard or easy, which
    two CIs side by side do not. Every path is checked before anything runs."""
    if not nets:
        raise ValueError("compare_nets needs at least one net, e.g. {'mine': 'runs/gust/train_3'}")
    for name, net in nets.items():
        if isinstance(net, (str, os.PathLike)):
            load_net(net)  # a missing or foreign checkpoint fails here, not after the first net's evaluation
    results = {name: evaluate(net, data_file, images=images, seeds=seeds, cycles=cycles, batch_size=batch_size,
                              device=device, progress=progress) for name, net in nets.items()}
    first = next(iter(results.values()))
    rows = []
    for (name, net), res in zip(nets.items(), results.values()):
        k = len(res["cycles"]) - 1
        row = {"name": name, "net": str(net) if isinstance(net, (str, os.PathLike)) else "in-memory",
               "budget": training_budget(net), "silent_share_mean": res["silent_share_mean"],
               "bound_ami_mean": res["bound_ami_mean"]}
        for key in ("ami", "synscore"):
            row[f"{key}_mean"] = res[f"{key}_mean"]
            row[f"{key}_ci"] = [res[key]["ci_low"][k], res[key]["ci_high"][k]]
            diff = _last_cycle(res, key) - _last_cycle(first, key)
            stats = curve_stats(diff[:, None])
            row[f"{key}_diff"] = {"mean": stats["mean"][0], "ci_low": stats["ci_low"][0],
                                  "ci_high": stats["ci_high"][0], "n": stats["n"][0]}
        rows.append(row)
    return {"images": int(images), "seeds": _seeds(seeds), "data_file": str(data_file), "results": results,
            "rows": rows}


def _last_cycle(result: Mapping[str, Any], key: str) -> np.ndarray:
    """The last cycle's score of every (seed, image) row of an ``evaluate`` result (None -> NaN)."""
    return np.array([np.nan if r[-1] is None else r[-1] for r in result[key]["per_image"]], dtype=np.float64)


def comparison_text(comparison: Mapping[str, Any]) -> list[str]:
    """One line per net of ``compare_nets``: scores at the last cycle with CIs, AMI's two parts, the paired
    difference to the first net and the training budget."""
    lines, first, fmt = [], comparison["rows"][0]["name"], format_score
    for i, row in enumerate(comparison["rows"]):
        text = (f"{row['name']}: AMI {fmt(row['ami_mean'])} ({fmt(row['ami_ci'][0])}-{fmt(row['ami_ci'][1])}), "
                f"SynScore {fmt(row['synscore_mean'])}; with the silent pixels {fmt(row['silent_share_mean'])}, "
                f"AMI of the others {fmt(row['bound_ami_mean'])}")
        if i:
            d = row["ami_diff"]
            text += (f"; AMI minus {first}'s on the same (seed, image) rows {fmt(d['mean'], sign=True)} "
                     f"({fmt(d['ci_low'], sign=True)} to {fmt(d['ci_high'], sign=True)})")
        lines.append(text + f"\n    {budget_text(row['budget'])}")
    return lines


def format_score(value: float | None, *, sign: bool = False) -> str:
    """A score to 3 decimals for logs and tables; ``nan`` for an undefined one (None or NaN)."""
    if value is None or not math.isfinite(value):
        return "nan"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def figure_record(net: Any, data_file: str | os.PathLike, image_index: int = REFERENCE_IMAGE, *,
                  split: str = "train_multi", seeds: int | Sequence[int] = 0, cycles: int = 30,
                  device: str | torch.device = "cpu", scores: bool = True) -> dict[str, Any]:
    """One image's record for the §5.5 figures (colourings, spike maps, labelled rasters), one row per seed.

    Returns ``{"record": SpikeRecord [cycles*T, seeds, N] with labels and images, "scores": CycleScoreResult
    (k-medoids labels in ``pred`` [seeds, cycles-1, N]) or None, "image_index", "seeds"}``.
    """
    from workbench.models.gust import run_gust

    net, _ = load_net(net, device)
    imgs, labs = read_split(data_file, split, start=int(image_index), stop=int(image_index) + 1)
    seeds = _seeds(seeds)
    run = run_gust(net, imgs, cycles=int(cycles), seed=seeds, image_ids=torch.tensor([int(image_index)]),
                   labels=labs, device=device)
    rec = run.record
    res = cycle_scores(rec.spikes, rec.labels, T=rec.cycle, seeds=run.seeds, image_ids=run.image_ids,
                       keep_pred=True) if scores else None
    return {"record": rec, "scores": res, "image_index": int(image_index), "seeds": seeds}


def ci_halfwidth(values: Sequence[float]) -> float:
    """Half-width of the 95 % Student-t CI of ``values`` (NaN for fewer than 2)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size < 2:
        return float("nan")
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))

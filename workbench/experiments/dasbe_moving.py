"""The data behind DASBE's Fig 5: binding moving shapes with the recurrent rbae (spec §2.5, §10).

``fig5`` runs one moving-shapes trace (``moving_shapes_3`` train_multi sequence 267, D = 32, r = 9, 60
iterations = 60 frames; shapes appear at frames 0, 15 and 30) and, in the same batch, a set of other
sequences; every iteration's own D steps are grouped by k-means (K = objects present + 1, the largest
cluster relabelled 0) and scored by AMI against that frame's labels. It returns the trace's frames, labels,
groupings and AMI per iteration (Fig 5's 6 x 20 panel grid) and the mean AMI per iteration over the
sequences (a quantitative curve the paper does not show).

Iterations whose frame holds fewer than ``min_objects`` objects (the first 15 frames hold one) get AMI = NaN:
with one object the AMI over labelled pixels is 0 or 1 by convention and says nothing about binding.

Command line (writes JSON)::

    python -m workbench.experiments.dasbe_moving --data data/moving_shapes_3.h5 --out results/fig5.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from workbench.binding.moving import (MemorylessStep, group_per_iteration, iteration_frames, moving_params,
                                      run_moving_binding)
from workbench.data.moving_shapes import APPEAR_EVERY, read_sequences
from workbench.data.store import read_attrs, split_size
from workbench.runtime import resolve_device

__all__ = ["FIG5_DATASET", "FIG5_SPLIT", "FIG5_TRACE", "FIG5_SEED", "FIG5_DELAY", "FIG5_REFRACTORY", "FIG5_N_ITER",
           "FIG5_COLUMNS", "FIG5_APPEAR_FRAMES", "FIG5_SEQUENCES", "Fig5Data", "fig5", "load_rbae",
           "static_control"]

FIG5_DATASET = "moving_shapes_3"
FIG5_SPLIT = "train_multi"  # the rbae is trained on train_single (one shape per sequence): no leakage
FIG5_TRACE = 267  # the sequence shown in the paper's figure
FIG5_SEED = 111  # the first of the paper's seeds (the figure script is unseeded)
FIG5_DELAY = 32  # D
FIG5_REFRACTORY = 9  # r
FIG5_N_ITER = 60  # iterations = frames (one frame per iteration)
FIG5_COLUMNS = 20  # panels per row: 3 row pairs x 20 columns = 60 iterations
FIG5_APPEAR_FRAMES = tuple(range(0, 3 * APPEAR_EVERY, APPEAR_EVERY))  # (0, 15, 30): a new shape each
FIG5_SEQUENCES = 20  # sequences of the mean-AMI curve: train_multi[0:20]
FIG5_MIN_OBJECTS = 2  # AMI is reported only for frames with at least two objects
SMOOTH = 2  # readout feature s(t) + 0.5 s(t-1)
N_INIT = 10  # k-means restarts


@dataclass
class Fig5Data:
    """Fig 5 of one run. Arrays over iterations ``k`` (frame ``frames_index[k]``):

    ``frames`` / ``labels`` / ``groups``: the trace's input frame, its labels and the k-means grouping
    (0 = largest cluster), ``[K, H, W]``; ``ami``: the trace's AMI ``[K]`` (NaN when < ``min_objects``);
    ``n_objects``: objects present ``[K]``; ``curve_ami``: ``[K, rows]`` of all curve rows (seed-major over
    ``curve_sequences``); ``curve_mean`` / ``curve_ci``: their mean and 95 % CI half-width per iteration;
    ``overlap`` ``[K]`` / ``curve_overlap`` ``[K, rows]``: on-pixels covered by two or more shapes (crossings).
    """

    trace: int
    seed: int
    params: dict
    frames_index: np.ndarray
    frames: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    ami: np.ndarray
    n_objects: np.ndarray
    curve_sequences: list[int]
    curve_seeds: list[int]
    curve_ami: np.ndarray
    curve_mean: np.ndarray
    curve_ci: np.ndarray
    overlap: np.ndarray | None = None
    curve_overlap: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    model: str = ""

    def summary(self) -> dict[str, Any]:
        """Mean AMI (x 100) of the trace and of the curve over the iterations that have a value, per third."""
        thirds = np.array_split(np.arange(len(self.ami)), 3)

        def mean(values: np.ndarray) -> float | None:
            v = values[~np.isnan(values)]
            return round(float(v.mean()) * 100, 2) if v.size else None

        crossing = {}
        if self.curve_overlap is not None:
            scored = ~np.isnan(self.curve_ami)
            crossing = {"curve_ami_crossing": mean(self.curve_ami[scored & (self.curve_overlap > 0)]),
                        "curve_ami_apart": mean(self.curve_ami[scored & (self.curve_overlap == 0)]),
                        "crossing_fraction": round(float((self.curve_overlap[scored] > 0).mean()), 3)
                        if scored.any() else None}
        return {"trace_ami": mean(self.ami), "curve_ami": mean(self.curve_mean), **crossing,
                "trace_ami_thirds": [mean(self.ami[t]) for t in thirds],
                "curve_ami_thirds": [mean(self.curve_mean[t]) for t in thirds],
                "n_curve_rows": int(self.curve_ami.shape[1]), "seconds": self.seconds, "model": self.model}

    def to_json(self) -> dict[str, Any]:
        out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}
        out["summary"] = self.summary()
        return out


def load_rbae(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> nn.Module:
    """The rbae of ``path``, default the shipped ``data/checkpoints/dasbe_rbae.pt``."""
    from workbench.checkpoints import load_dae
    from workbench.models.presets import shipped_checkpoint

    if path is None:
        path = shipped_checkpoint("rbae")
        if path is None:
            raise FileNotFoundError("no shipped rbae checkpoint (data/checkpoints/dasbe_rbae.pt); train one with "
                                    "`python -m workbench.models.presets rbae --data data/moving_shapes_3.h5 "
                                    "--out runs/rbae --ship`")
    return load_dae(path, device=device)


def static_control(dae: nn.Module) -> MemorylessStep:
    """A feed-forward DAE (e.g. the shipped Shapes DAE) as a step model: Fig 5 without the recurrence."""
    return MemorylessStep(dae)


def fig5(rbae: Any, data_file: str | os.PathLike, *, trace: int = FIG5_TRACE,
         sequences: Sequence[int] | int = FIG5_SEQUENCES, split: str = FIG5_SPLIT, seed: int = FIG5_SEED,
         curve_seeds: Sequence[int] | None = None, n_iter: int = FIG5_N_ITER, delay: int = FIG5_DELAY,
         refractory: int = FIG5_REFRACTORY, start_frame: int = 0, smooth: int = SMOOTH, n_init: int = N_INIT,
         min_objects: int = FIG5_MIN_OBJECTS, recurrence: bool = True,
         device: str | torch.device | None = "cpu") -> Fig5Data:
    """Run Fig 5: trace ``trace`` under ``seed``, and the curve over ``sequences`` (an int ``n`` means
    ``0..n-1``) under ``curve_seeds`` (default ``[seed]``), all as rows of one batched run.
    ``recurrence=False`` is the ablation that keeps the rbae's per-slot state at zero."""
    seqs = list(range(int(sequences))) if isinstance(sequences, (int, np.integer)) else [int(s) for s in sequences]
    if not seqs:
        raise ValueError("sequences must name at least one sequence for the mean-AMI curve")
    curve_seeds = [int(seed)] if curve_seeds is None else [int(s) for s in curve_seeds]
    params = moving_params(n_iter, delay=delay, refractory=refractory)
    path = _check_file(data_file, split, max(seqs + [int(trace)]) + 1, start_frame + n_iter)
    t0 = time.perf_counter()
    ids = [int(trace)] + [s for s in seqs if s != int(trace)]
    frames, labels = _read(path, split, ids, start_frame + n_iter)
    t1 = time.perf_counter()
    seeds = [int(seed)] + [s for s in curve_seeds if s != int(seed)]
    record = run_moving_binding(rbae, frames, params, seed=seeds, sequence_ids=ids, labels=labels,
                                start_frame=start_frame, recurrence=recurrence, device=device)
    t2 = time.perf_counter()
    g = group_per_iteration(record, labels, smooth=smooth, n_init=n_init)
    t3 = time.perf_counter()
    ami = g.ami.copy()
    n_objects = g.n_clusters - 1
    objects = g.labels.max(dim=2).values.numpy()  # [K, rows]: objects present (labels by appearance order)
    ami[objects < min_objects] = np.nan
    B = len(ids)
    row_of = {(s, i): si * B + b for si, s in enumerate(seeds) for b, i in enumerate(ids)}
    curve_rows = [row_of[(s, i)] for s in curve_seeds for i in seqs]
    curve = ami[:, curve_rows]
    mean, ci = _mean_ci(curve)
    seen = iteration_frames(frames, record)  # [K, rows, N]: what each row saw in each iteration
    overlap = ((seen > 0) & (g.labels == 0)).sum(dim=2).numpy()  # on-pixels of 2+ shapes, [K, rows]
    shape = record.image_shape or (1, record.N)
    return Fig5Data(trace=int(trace), seed=int(seed), params=asdict(params), frames_index=g.frames,
                    frames=seen[:, 0].reshape(-1, *shape).numpy(), labels=g.labels[:, 0].reshape(-1, *shape).numpy(),
                    groups=g.groups[:, 0].reshape(-1, *shape).numpy(), ami=ami[:, 0], n_objects=n_objects[:, 0],
                    curve_sequences=seqs, curve_seeds=curve_seeds, curve_ami=curve, curve_mean=mean, curve_ci=ci,
                    overlap=overlap[:, 0], curve_overlap=overlap[:, curve_rows],
                    seconds={"read": round(t1 - t0, 3), "binding": round(t2 - t1, 3), "readout": round(t3 - t2, 3)},
                    model=type(rbae).__name__ + ("" if recurrence else " (state reset every frame)"))


def _mean_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95 % CI half-width (normal approximation) over axis 1, NaNs skipped."""
    valid = ~np.isnan(values)
    n = valid.sum(axis=1)
    filled = np.where(valid, values, 0.0)
    with np.errstate(all="ignore"):
        mean = np.where(n > 0, filled.sum(axis=1) / np.maximum(n, 1), np.nan)
        var = np.where(valid, (values - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(n - 1, 1)
        ci = np.where(n > 1, 1.96 * np.sqrt(var / np.maximum(n, 1)), np.nan)
    return mean, ci


def _check_file(data_file: str | os.PathLike, split: str, n_sequences: int, n_frames: int) -> Path:
    path = Path(data_file)
    size = split_size(path, split, make_hint=f"hnnwb data make {FIG5_DATASET} --out {path}")
    frames = int(read_attrs(path).get("frames", 0) or 0)
    if frames < 1:
        raise ValueError(f"{path} has no 'frames' attribute: it is not a moving-shapes file")
    available = size // frames
    if n_sequences > available:
        raise ValueError(f"{path} split {split!r} has {available} sequences; asked for sequence {n_sequences - 1}")
    if n_frames > frames:
        raise ValueError(f"{path} has {frames} frames per sequence; the run needs {n_frames} "
                         "(lower n_iter or start_frame)")
    return path


def _read(path: Path, split: str, ids: list[int], n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences ``ids`` (first ``n_frames`` frames), read as one contiguous block when that is small."""
    lo, hi = min(ids), max(ids) + 1
    if hi - lo <= 2 * len(ids) + 8:
        frames, labels = read_sequences(path, split, start=lo, stop=hi)
        pick = [i - lo for i in ids]
    else:
        parts = [read_sequences(path, split, start=i, stop=i + 1) for i in ids]
        frames, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        pick = list(range(len(ids)))
    if len(pick) and max(pick) >= len(frames):
        raise ValueError(f"{path} split {split!r} has {len(frames) + lo} sequences; asked for sequence {max(ids)}")
    if frames.shape[1] < n_frames:
        raise ValueError(f"{path} has {frames.shape[1]} frames per sequence; the run needs {n_frames} "
                         "(lower n_iter or start_frame)")
    return frames[pick, :n_frames], labels[pick, :n_frames]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The Fig 5 options, shared by ``python -m workbench.experiments.dasbe_moving`` and ``hnnwb dasbe moving``."""
    parser.add_argument("--data", type=Path, default=Path("data/moving_shapes_3.h5"))
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--checkpoint", type=Path, default=None, help="rbae checkpoint (default: the shipped one)")
    parser.add_argument("--static-dae", type=Path, default=None,
                        help="run the no-recurrence control with this feed-forward DAE instead of the rbae")
    parser.add_argument("--no-recurrence", action="store_true", help="ablation: keep the per-slot state at zero")
    parser.add_argument("--trace", type=int, default=FIG5_TRACE)
    parser.add_argument("--sequences", type=int, default=FIG5_SEQUENCES, help="curve over train_multi[0:n]")
    parser.add_argument("--seed", type=int, default=FIG5_SEED)
    parser.add_argument("--curve-seeds", type=int, nargs="+", default=None, help="seeds of the curve (default: --seed)")
    parser.add_argument("--n-iter", type=int, default=FIG5_N_ITER)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)


def run_from_args(args: argparse.Namespace) -> int:
    from workbench.fileio import write_json
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    if args.static_dae is not None:
        from workbench.checkpoints import load_dae

        model: Any = static_control(load_dae(args.static_dae))
    else:
        model = load_rbae(args.checkpoint)
    data = fig5(model, args.data, trace=args.trace, sequences=args.sequences, seed=args.seed,
                curve_seeds=args.curve_seeds, n_iter=args.n_iter, recurrence=not args.no_recurrence,
                device=resolve_device(args.device))
    write_json(args.out, data.to_json())
    print(data.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.experiments.dasbe_moving",
                                     description="DASBE Fig 5: binding moving shapes with the rbae (writes JSON)")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

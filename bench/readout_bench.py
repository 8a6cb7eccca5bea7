"""DASBE readout cost: ``group_pixels`` (batched k-means) and the per-image AMI, timed separately.

    python bench/readout_bench.py --dataset corners --images 256
    python bench/readout_bench.py --dataset bars --images 256 --profile

Builds realistic records: the authors' DAE (``<repo>/../shared/reference/dasbe/<dataset>_dae.pt``, or
``--dae PATH``) bound on ``train_multi[0:images]`` of ``data/<dataset>.h5`` (``hnnwb data make <dataset>``
writes it; without the file the scenes are generated in memory with the paper's seed) by ``run_binding``
with ``record="last:10"``, seed 111. ``--cache DIR`` keeps the record as HDF5 so that later runs skip the
binding. Then times, per image (median of ``--repeats``):

* ``group_pixels`` on the whole record (``chunk`` images at a time, as ``evaluate_grouping`` runs it);
* ``workbench.metrics.ami_batch`` (scikit-learn per image) and the readout's batched AMI, which must agree
  to 1e-9;

``--save-labels PATH`` / ``--compare-labels PATH`` store or check ``group_pixels``'s labels (bit-for-bit),
to confirm that a faster readout gives the same grouping. ``--profile`` prints the top of a cProfile table
of one ``group_pixels`` + AMI pass.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from workbench.binding.dasbe import DasbeParams, run_binding
from workbench.binding.readout import group_pixels
from workbench.metrics import ami, ami_batch
from workbench.record import SpikeRecord
from workbench.runtime import configure_threads

REPO = Path(__file__).resolve().parents[1]
REFERENCE_WEIGHTS = REPO.parent / "shared" / "reference" / "dasbe"
SEEDS = {"bars": 471958, "corners": 746519283}


def load_text() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def load_scenes(dataset: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``train_multi[0:n]`` as float32 images and int64 labels ``[n, N]``: from data/<dataset>.h5 if present."""
    path = REPO / "data" / f"{dataset}.h5"
    if path.exists():
        from workbench.data.store import read_split

        images, labels = read_split(path, "train_multi", stop=n)
    elif dataset == "bars":
        from workbench.data.bars import generate_bars

        images, labels = generate_bars(n, np.random.RandomState(SEEDS["bars"]))
    else:
        from workbench.data.corners import generate_corners

        scenes = generate_corners(n, np.random.RandomState(SEEDS["corners"]))
        images, labels = scenes.images, scenes.labels
    return (np.asarray(images).reshape(n, -1).astype(np.float32),
            np.asarray(labels).reshape(n, -1).astype(np.int64))


def build_record(dataset: str, n: int, dae_path: str | None, cache: str | None) -> SpikeRecord:
    cached = Path(cache) / f"readout_{dataset}_{n}.h5" if cache else None
    if cached is not None and cached.exists():
        return SpikeRecord.from_hdf5(cached)
    from workbench.checkpoints import load_dae

    path = Path(dae_path) if dae_path else REFERENCE_WEIGHTS / f"{dataset}_dae.pt"
    if not path.exists():
        sys.exit(f"no DAE at {path}: pass --dae PATH (a plain state dict or an hnnwb checkpoint)")
    images, labels = load_scenes(dataset, n)
    t0 = time.perf_counter()
    record = run_binding(load_dae(path), images, getattr(DasbeParams, dataset)(), seed=111,
                         image_ids=np.arange(n), labels=labels, record="last:10")
    print(f"binding {n} {dataset} images: {time.perf_counter() - t0:.1f} s")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        record.to_hdf5(cached)
    return record


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["bars", "corners"], default="corners")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=64, help="group_pixels chunk (images clustered at once)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dae", default=None)
    parser.add_argument("--cache", default=None, help="folder for the binding record (HDF5), reused if present")
    parser.add_argument("--save-labels", default=None, help="write group_pixels's labels (torch.save) here")
    parser.add_argument("--compare-labels", default=None, help="check group_pixels's labels against this file")
    parser.add_argument("--profile", action="store_true", help="print a cProfile table of one readout pass")
    parser.add_argument("--top", type=int, default=25, help="rows of the profile table")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats must be >= 1")

    threads = configure_threads(args.threads)
    record = build_record(args.dataset, args.images, args.dae, args.cache)
    B = record.B
    labels = record.labels.numpy()
    print(f"readout {args.dataset}: {B} images, N={record.N}, {record.T} steps kept, torch {torch.__version__}, "
          f"{threads} thread(s), {load_text()}")

    group_pixels(record.select(list(range(min(2, B)))), chunk=args.chunk)  # warm-up
    group_s, pred = median_seconds(lambda: group_pixels(record, chunk=args.chunk), args.repeats)
    pred_np = pred.numpy()
    sklearn_per_image = lambda: np.array([ami(labels[i], pred_np[i]) for i in range(B)])  # noqa: E731
    sk_s, sk_ami = median_seconds(sklearn_per_image, args.repeats)
    print(f"group_pixels: {1e3 * group_s / B:.2f} ms/image (median of {args.repeats}, chunk {args.chunk})")
    print(f"AMI, sklearn per image: {1e3 * sk_s / B:.3f} ms/image; mean AMI {100 * np.nanmean(sk_ami):.2f}")
    fast_s, fast_ami = median_seconds(lambda: ami_batch(labels, pred_np), args.repeats)
    diff = np.nanmax(np.abs(fast_ami - sk_ami)) if B else 0.0
    same_nan = np.array_equal(np.isnan(fast_ami), np.isnan(sk_ami))
    print(f"AMI, batched ami_batch: {1e3 * fast_s / B:.3f} ms/image; max |diff| vs sklearn {diff:.2e}, NaNs agree {same_nan}")
    print(f"total readout (group_pixels + ami_batch): {1e3 * (group_s + fast_s) / B:.2f} ms/image; {load_text()}")

    if args.save_labels:
        torch.save(pred, args.save_labels)
        print(f"labels saved to {args.save_labels}")
    if args.compare_labels:
        saved = torch.load(args.compare_labels, weights_only=True)
        same = torch.equal(saved, pred)
        print(f"labels identical to {args.compare_labels}: {same}"
              + ("" if same else f" ({int((saved != pred).any(dim=1).sum())} images differ)"))
        if not same:
            return 1
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        p = group_pixels(record, chunk=args.chunk)
        ami_batch(labels, p.numpy())
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

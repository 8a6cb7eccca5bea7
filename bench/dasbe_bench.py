"""DASBE speed and accuracy: our batched loop vs a faithful one-image loop, both including the readout.

    python bench/dasbe_bench.py --dataset corners --images 256 --batch 256 --reference-images 16
    python bench/dasbe_bench.py --dataset bars --images 200 --seeds 111 222 333 444 555 --reference-images 0 \\
        --baseline-images 200

Images are ``train_multi[0:images]`` of the authors' generators (seeds 471958 / 746519283). The DAE is the
authors' published one (``<repo>/../shared/reference/dasbe/<dataset>_dae.pt``) or ``--dae PATH``.

* reference: the authors' structure, one image at a time and one step at a time (``impl="reference"``, the
  DAE called on one image per step in its own float32), then scikit-learn ``KMeans(n_init)`` on the smoothed
  last 10 iterations and scikit-learn's AMI over labelled pixels, image by image;
* ours: ``run_binding`` on ``--batch`` images (x seeds) at once, then the batched torch k-means readout
  (``evaluate_grouping``).

Both are timed in this process on the first ``--reference-images`` images, so the per-image ratio compares
like with like on the same machine under the same load (this CPU is shared: the load average is printed).
``--baseline-images`` adds the pure-ANN and PCNN baselines (spec §3) with the same readout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from workbench.binding.baselines import run_pcnn, run_pure_ann
from workbench.binding.dasbe import DasbeParams, run_binding
from workbench.binding.readout import DEFAULT_BACK_CYCLES, evaluate_grouping, group_pixels
from workbench.metrics import ami_batch, smooth_trains
from workbench.models.dae import MLPDAE
from workbench.runtime import configure_threads

REFERENCE_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "dasbe"
AUTHORS_SECONDS_PER_IMAGE = {"bars": 1.15, "corners": 0.68}  # spec §7.2, uncontended, readout included


def load_scenes(dataset: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``train_multi[0:n]``: images float32 ``[n, N]`` and labels int64 ``[n, N]``."""
    if dataset == "bars":
        from workbench.data.bars import BARS_SEED, generate_bars

        images, labels = generate_bars(n, np.random.RandomState(BARS_SEED))
    else:
        from workbench.data.corners import CORNERS_SEED, generate_corners

        scenes = generate_corners(n, np.random.RandomState(CORNERS_SEED))
        images, labels = scenes.images, scenes.labels
    return images.reshape(n, -1).astype(np.float32), labels.reshape(n, -1).astype(np.int64)


def load_dae(dataset: str, path: str | None) -> MLPDAE:
    if path is None:
        path = REFERENCE_WEIGHTS / f"{dataset}_dae.pt"
        if not path.exists():
            sys.exit(f"no DAE: the authors' weights are not at {path}; pass --dae PATH (a plain or hnnwb checkpoint)")
    try:
        from workbench.checkpoints import load_dae as load_checkpoint_dae
    except ImportError:  # the checkpoints module is optional here
        return MLPDAE.from_state_dict(torch.load(path, weights_only=True))
    return load_checkpoint_dae(path)


def summary(values: np.ndarray) -> str:
    v = 100 * np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return "n/a"
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return f"{v.mean():5.1f} ± {se:.1f} (SE, n={v.size}; SD {v.std(ddof=1) if v.size > 1 else 0:.1f}, " \
           f"min {v.min():.1f}, median {np.median(v):.1f})"


def load_text() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def run_reference(dae: MLPDAE, x: np.ndarray, labels: np.ndarray, params: DasbeParams, seed: int,
                  n_init: int) -> tuple[np.ndarray, float, float]:
    """One image at a time, one step at a time, then scikit-learn k-means and AMI, like the authors.

    Returns per-image AMI, total seconds and seconds in the loop alone."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score

    back = min(DEFAULT_BACK_CYCLES, params.n_iter)
    scores, loop_s = [], 0.0
    start = time.perf_counter()
    for i in range(len(x)):
        t0 = time.perf_counter()
        rec = run_binding(dae, x[i:i + 1], params, seed=seed, image_ids=[i], record=back, impl="reference",
                          dae_dtype=None)
        loop_s += time.perf_counter() - t0
        features = smooth_trains(rec.spikes[:, 0].T.to(torch.float64), m=2).numpy()  # [N, back*D]
        k = int(labels[i].max()) + 1
        pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(features)
        obj = labels[i] > 0
        scores.append(adjusted_mutual_info_score(labels[i][obj], pred[obj], average_method="arithmetic"))
    return np.asarray(scores), time.perf_counter() - start, loop_s


def run_ours(dae: MLPDAE, x: np.ndarray, labels: np.ndarray, params: DasbeParams, seeds: list[int],
             batch: int, n_init: int) -> tuple[np.ndarray, float, float]:
    """Batched loop + batched readout; per-row AMI ``[S, n]``, total seconds, seconds in the loop alone."""
    back = min(DEFAULT_BACK_CYCLES, params.n_iter)
    scores, loop_s = [], 0.0
    start = time.perf_counter()
    for lo in range(0, len(x), batch):
        hi = min(lo + batch, len(x))
        t0 = time.perf_counter()
        rec = run_binding(dae, x[lo:hi], params, seed=seeds, image_ids=np.arange(lo, hi), labels=labels[lo:hi],
                          record=back)
        loop_s += time.perf_counter() - t0
        # chunk 32: smaller k-means blocks stay in cache (7-9 % faster than 64 here; same labels for any chunk)
        scores.append(evaluate_grouping(rec, n_init=n_init, chunk=32).reshape(len(seeds), hi - lo))
    return np.concatenate(scores, axis=1), time.perf_counter() - start, loop_s


def run_baselines(dae: MLPDAE, x: np.ndarray, labels: np.ndarray, params: DasbeParams, shape: tuple[int, int],
                  seed: int, batch: int, n_init: int) -> dict[str, tuple[np.ndarray, float]]:
    out = {}
    back = min(DEFAULT_BACK_CYCLES, params.n_iter)
    ann, t0 = [], time.perf_counter()
    for lo in range(0, len(x), batch):
        hi = min(lo + batch, len(x))
        m = run_pure_ann(dae, x[lo:hi], params, seed=seed, image_ids=np.arange(lo, hi), back=back)
        k = labels[lo:hi].max(axis=1) + 1
        pred = group_pixels(m, k, back_steps=m.shape[0], n_init=n_init, seed=seed, image_ids=np.arange(lo, hi))
        ann.append(ami_batch(labels[lo:hi], pred.numpy()))
    out["pure-ANN"] = (np.concatenate(ann), time.perf_counter() - t0)
    pcnn, t0 = [], time.perf_counter()
    for lo in range(0, len(x), batch):
        hi = min(lo + batch, len(x))
        rec = run_pcnn(x[lo:hi], shape, seed=seed, image_ids=np.arange(lo, hi), labels=labels[lo:hi])
        pcnn.append(evaluate_grouping(rec, n_init=n_init))
    out["PCNN"] = (np.concatenate(pcnn), time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["bars", "corners"], default="corners")
    parser.add_argument("--images", type=int, default=256, help="train_multi[0:images] for our batched loop")
    parser.add_argument("--batch", type=int, default=256, help="images per batched run (times the seeds)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on <= 2 cores)")
    parser.add_argument("--n-iter", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[111])
    parser.add_argument("--reference-images", type=int, default=16,
                        help="first images also run through the one-image reference loop (0 = skip)")
    parser.add_argument("--baseline-images", type=int, default=0, help="first images for pure-ANN and PCNN")
    parser.add_argument("--n-init", type=int, default=10, help="k-means restarts (spec §6.1: 10)")
    parser.add_argument("--dae", default=None, help="DAE checkpoint (default: the authors' weights)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.images < 1 or args.batch < 1 or args.reference_images < 0 or args.baseline_images < 0:
        parser.error("--images and --batch must be >= 1; --reference-images and --baseline-images >= 0")

    threads = configure_threads(args.threads)
    try:  # scikit-learn's k-means (reference side) must use the same number of threads as torch
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except ImportError:
        pass
    params = getattr(DasbeParams, args.dataset)(n_iter=args.n_iter)
    n_all = max(args.images, args.reference_images, args.baseline_images)
    x_all, labels_all = load_scenes(args.dataset, n_all)
    side = int(round(x_all.shape[1] ** 0.5))
    dae = load_dae(args.dataset, args.dae)
    x, labels = x_all[: args.images], labels_all[: args.images]
    print(f"DASBE {args.dataset}: D={params.delay} r={params.refractory} N_iter={params.n_iter} "
          f"({params.n_steps} steps/image), torch {torch.__version__}, {threads} thread(s), {load_text()}")
    results: dict = {"dataset": args.dataset, "n_iter": params.n_iter, "threads": threads, "seeds": args.seeds}

    # warm-up (first-call costs of the libraries are not part of either loop)
    run_binding(dae, x[:2], getattr(DasbeParams, args.dataset)(n_iter=2), seed=0, record=1)

    ours, ours_s, loop_s = run_ours(dae, x, labels, params, args.seeds, args.batch, args.n_init)
    rows = ours.size
    print(f"\nours (batch {args.batch} images x {len(args.seeds)} seed(s)): {rows} runs in {ours_s:.1f} s = "
          f"{rows / ours_s:.1f} images/s ({1e3 * ours_s / rows:.2f} ms/image: loop {1e3 * loop_s / rows:.2f}, "
          f"readout {1e3 * (ours_s - loop_s) / rows:.2f}); {load_text()}")
    for s, seed in enumerate(args.seeds):
        print(f"  AMI seed {seed}: {summary(ours[s])}")
    if len(args.seeds) > 1:
        means = 100 * ours.mean(axis=1)
        print(f"  mean over seed-means: {means.mean():.2f} ± {means.std():.2f} (std of the {len(means)} seed-means)")
    results["ours"] = {"seconds": ours_s, "loop_seconds": loop_s, "runs": rows,
                       "ami_per_seed": (100 * ours.mean(axis=1)).tolist()}

    if args.reference_images:
        m = min(args.reference_images, args.images)
        ref, ref_s, ref_loop_s = run_reference(dae, x[:m], labels[:m], params, args.seeds[0], args.n_init)
        ref_per_image, ours_per_image = ref_s / m, ours_s / rows
        print(f"\nreference (one image, one step at a time; sklearn k-means): {m} images in {ref_s:.1f} s = "
              f"{m / ref_s:.2f} images/s ({1e3 * ref_per_image:.0f} ms/image: loop "
              f"{1e3 * ref_loop_s / m / params.n_steps:.3f} ms/step, readout {1e3 * (ref_s - ref_loop_s) / m:.0f} "
              f"ms); {load_text()}")
        print(f"  AMI seed {args.seeds[0]}: {summary(ref)}")
        print(f"  ours on the same {m} images: {summary(ours[0, :m])}")
        print(f"\nper-image speed-up, ours vs the reference in this process: {ref_per_image / ours_per_image:.1f}x")
        full_steps = getattr(DasbeParams, args.dataset)().n_steps
        authors = AUTHORS_SECONDS_PER_IMAGE[args.dataset] * params.n_steps / full_steps  # scaled to --n-iter
        print(f"per-image speed-up vs the authors' code (spec §7.2: {authors:.2f} s/image uncontended): "
              f"{authors / ours_per_image:.1f}x")
        results["reference"] = {"seconds": ref_s, "images": m, "ami": float(100 * ref.mean()),
                                "speedup": ref_per_image / ours_per_image}

    if args.baseline_images:
        k = min(args.baseline_images, n_all)
        base = run_baselines(dae, x_all[:k], labels_all[:k], params, (side, side), args.seeds[0], args.batch,
                             args.n_init)
        print()
        for name, (scores, seconds) in base.items():
            print(f"{name} seed {args.seeds[0]}: {summary(scores)}; {k / seconds:.1f} images/s; {load_text()}")
            results[name] = {"ami": float(100 * scores.mean()), "se": float(100 * scores.std(ddof=1) / np.sqrt(k)),
                             "seconds": seconds, "images": k}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""GUST speed: training images/second and evaluation time per image, against faithful loops in this process.

    python bench/gust_bench.py                       # training part: batch 64, 2 timed iterations, 4 per-image
    python bench/gust_bench.py --batch 1024 --iterations 1 --per-image 8 --out runs/gust/bench.json

Training (``bench_training``), all with 1 torch thread by default, forward + backward + Adam, IT = 8:

* ours: ``gust_dynamics`` on the whole batch, one decoder and one encoder call per cycle ([B*T] rows),
  with the exact sparse fast path the trainer uses (``ours_dense``: the same without it);
* step loop: the spec's loop verbatim (2T MLP calls per cycle) on the whole batch; this is the structure
  of the authors' ``train.py``;
* per image: the same step loop on one image at a time, gradients accumulated over the batch, one Adam step.

Images/second = images / wall seconds; process CPU seconds are printed too, since this machine is shared
(the load average is printed: wall times are inflated when it exceeds the core count).

Evaluation (``bench_evaluation``) is filled in by the evaluation part of the GUST work.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from workbench.experiments.gust_train import GustTrainConfig, _forward_loss, load_training_data
from workbench.models.gust import GustNet, generator_draws, gust_loss, gust_reference_loop
from workbench.runtime import configure_threads

DATA = Path("data/shapes_multiobj_3_3.h5")


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call, after one warm-up call."""
    fn()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats


def bench_training(args: argparse.Namespace) -> dict[str, Any]:
    """Training images/second: our cycle-batched loop vs the step loop (batched) vs a per-image step loop."""
    train, _, _ = load_training_data(args.data, n_train=max(args.batch, args.per_image), n_val=1)
    config = GustTrainConfig(batch_size=args.batch, cycles=args.cycles)
    net = GustNet(seed=0)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)  # tiny lr: timing only, keeps the net near init
    batch = train[: args.batch]
    gen = torch.Generator().manual_seed(0)
    p = net.params

    def step(loss: torch.Tensor) -> None:
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    dense_config = dataclasses.replace(config, sparse=False)

    def ours() -> None:
        step(_forward_loss(net, batch, config, gen))

    def ours_dense() -> None:
        step(_forward_loss(net, batch, dense_config, gen))

    def step_loop(x: torch.Tensor) -> torch.Tensor:
        keep = torch.rand(x.shape, generator=gen) >= config.drop_p
        h0 = torch.rand((len(x), p.slots, p.hidden), generator=gen)
        draws = generator_draws(len(x), p.n_pixels, p.keep_p, gen, x.device)
        dyn = gust_reference_loop(net, x * keep, h0, config.cycles, draws)
        return gust_loss(dyn.prediction, x)

    def batched_step_loop() -> None:
        step(step_loop(batch))

    per_image_batch = train[: args.per_image]

    def per_image() -> None:
        optimiser.zero_grad(set_to_none=True)
        for i in range(len(per_image_batch)):
            step_loop(per_image_batch[i:i + 1]).backward()
        optimiser.step()

    result: dict[str, Any] = {"batch": args.batch, "cycles": args.cycles, "threads": torch.get_num_threads(),
                              "load_average": os.getloadavg()}
    for name, fn, n_images in (("ours", ours, args.batch), ("ours_dense", ours_dense, args.batch),
                               ("step_loop", batched_step_loop, args.batch),
                               ("per_image", per_image, args.per_image)):
        if n_images == 0:
            continue
        wall, cpu = _timed(fn, args.iterations)
        result[name] = {"images": n_images, "wall_s": wall, "cpu_s": cpu, "images_per_s": n_images / wall,
                        "cpu_ms_per_image": 1e3 * cpu / n_images}
        print(f"training {name:10s}: {n_images:5d} images in {wall:7.3f} s wall ({cpu:7.3f} s CPU): "
              f"{n_images / wall:8.1f} images/s, {1e3 * cpu / n_images:7.2f} CPU ms/image", flush=True)
    if "per_image" in result:
        result["speedup_vs_per_image"] = result["ours"]["images_per_s"] / result["per_image"]["images_per_s"]
    result["speedup_vs_step_loop"] = result["ours"]["images_per_s"] / result["step_loop"]["images_per_s"]
    vs_image = f"{result['speedup_vs_per_image']:.1f}x" if "speedup_vs_per_image" in result else "not run"
    print(f"ours vs per-image loop: {vs_image}, vs batched step loop: {result['speedup_vs_step_loop']:.2f}x "
          f"(load average {result['load_average']})")
    return result


# === EVALUATION PART (owned by the GUST evaluation work) ===========================================
# Evaluation (spec §8, §10.7-10.8): ms per (image, cycle) for k-medoids + AMI + SynScore, batched over
# images x cycles (``workbench.binding.kmedoids.cycle_scores``), against the reference's per-image loop in
# this process: a 784 x 784 VP matrix by the pure-Python DP (q = 3), scikit-learn-extra's k-medoids
# algorithm (NumPy, "alternate", k-medoids++), scikit-learn's AMI, and the silhouette over the labelled
# pixels with a pure-Python DP matrix at q = 1/3. The per-image loop is timed on --eval-ref-problems
# (image, cycle) pairs (it takes seconds each) and, given the same k-medoids++ draws, its labels are
# checked against ours there and on --eval-agree recorded cycles (there with a NumPy Hamming matrix).
# --eval-vp-check compares the lookup tables with the textbook DP on all 1024^2 pattern pairs.


from workbench.binding.kmedoids import reference_kpp_init  # noqa: E402


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("evaluation")
    g.add_argument("--skip-evaluation", action="store_true", help="only the training part")
    g.add_argument("--eval-net", default="untrained", help="checkpoint / run folder, or 'untrained' (default)")
    g.add_argument("--eval-data", type=Path, default=None, help="dataset for evaluation (default --data)")
    g.add_argument("--eval-split", default="test", help="split (default test)")
    g.add_argument("--eval-images", type=int, default=100, help="images scored by the batched path (100)")
    g.add_argument("--eval-cycles", type=int, default=30, help="IT cycles (30)")
    g.add_argument("--eval-ref-problems", type=int, default=2,
                   help="(image, cycle) pairs run through the per-image pure-Python loop (2; ~6+ s each)")
    g.add_argument("--eval-agree", type=int, default=50, help="recorded cycles for the label agreement check (50)")
    g.add_argument("--eval-vp-check", action="store_true",
                   help="check the VP tables against the DP on all 1024^2 pairs for q = 3, 1/3, 0 (~1-2 min)")


def _ref_alternate(D: Any, medoids: list[int], max_iter: int = 300) -> Any:
    """scikit-learn-extra ``KMedoids(method="alternate")`` iterations, as written there (NumPy)."""
    import numpy as np

    medoids = np.array(medoids)
    for _ in range(max_iter):
        old = medoids.copy()
        labels = np.argmin(D[medoids, :], axis=0)
        for k in range(len(medoids)):
            idx = np.where(labels == k)[0]
            if len(idx) == 0:
                continue
            costs = np.sum(D[idx, idx[:, None]], axis=1)
            best = np.argmin(costs)
            if costs[best] < costs[np.argmax(idx == medoids[k])]:
                medoids[k] = idx[best]
        if np.all(old == medoids):
            break
    return np.argmin(D[medoids, :], axis=0)


def _dp_matrix(pattern: Any, q: float) -> Any:
    """All-pairs VP by the pure-Python DP over one cycle's pixel patterns ``[N, T]`` (the reference's way)."""
    import numpy as np

    from workbench.metrics import victor_purpura

    times = [np.flatnonzero(row) for row in pattern]
    N = len(times)
    D = np.zeros((N, N))
    for i in range(N):
        for j in range(i + 1, N):
            D[i, j] = D[j, i] = victor_purpura(times[i], times[j], q)
    return D


def _reference_problem(pattern: Any, labels: Any, u: Any) -> tuple[Any, float, float]:
    """One (image, cycle) the reference's way: DP matrix, k-medoids, AMI, silhouette (DP at q = 1/3)."""
    from sklearn.metrics import adjusted_mutual_info_score, silhouette_score

    K = int(labels.max()) + 1
    D = _dp_matrix(pattern, 3.0)
    pred = _ref_alternate(D, reference_kpp_init(D, K, u))
    keep = labels != 0
    ami = adjusted_mutual_info_score(labels[keep], pred[keep])
    Ds = _dp_matrix(pattern[keep], 1 / 3)
    syn = float("nan") if len(set(pred[keep].tolist())) < 2 else (
        0.0 if Ds.max() == 0 else silhouette_score(Ds, pred[keep], metric="precomputed"))
    return pred, float(ami), float(syn)


def _vp_check() -> dict[str, Any]:
    import numpy as np

    from workbench.metrics import victor_purpura, vp_cycle_table

    times = [np.flatnonzero((c >> np.arange(10)) & 1).tolist() for c in range(1024)]
    out = {}
    for name, q in (("3", 3.0), ("1/3", 1 / 3), ("0", 0.0)):
        t0 = time.perf_counter()
        table = vp_cycle_table(10, q).numpy()
        worst = 0.0
        for i in range(1024):
            for j in range(i, 1024):
                worst = max(worst, abs(victor_purpura(times[i], times[j], q) - table[i, j]))
        out[name] = {"pairs": 1024 * 1024, "max_abs_diff": worst, "seconds": time.perf_counter() - t0,
                     "symmetric": bool(np.array_equal(table, table.T))}
        print(f"VP table q={name}: max |table - DP| over all 1024^2 pairs = {worst:g} "
              f"({out[name]['seconds']:.0f} s)")
    return out


def bench_evaluation(args: argparse.Namespace) -> dict[str, Any] | None:
    """Evaluation time per (image, cycle): batched k-medoids + AMI + SynScore vs the per-image DP loop."""
    if args.skip_evaluation:
        return None
    import numpy as np

    from workbench.binding.kmedoids import cycle_scores, kmedoids_cycles, kmedoids_draws
    from workbench.data.store import read_split
    from workbench.experiments.gust import load_net
    from workbench.metrics import encode_cycles
    from workbench.models.gust import run_gust

    result: dict[str, Any] = {"load_average": os.getloadavg()[0], "threads": torch.get_num_threads()}
    if args.eval_vp_check:
        result["vp_check"] = _vp_check()
    net, info = load_net(GustNet(seed=0) if args.eval_net == "untrained" else args.eval_net)
    data = args.eval_data or args.data
    imgs, labs = read_split(data, args.eval_split, start=0, stop=args.eval_images)
    ids = torch.arange(args.eval_images)
    t0 = time.perf_counter()
    run = run_gust(net, imgs, cycles=args.eval_cycles, seed=0, image_ids=ids, labels=labs)
    t_fwd = time.perf_counter() - t0
    rec = run.record
    cycle_scores(rec.spikes[:, :2], rec.labels[:2], cycles=[1])  # warm-up (table building)
    wall, cpu = time.perf_counter(), time.process_time()
    res = cycle_scores(rec.spikes, rec.labels, seeds=0, image_ids=ids, keep_pred=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    problems = res.ami.size
    ours = {"images": args.eval_images, "cycles": len(res.cycles), "problems": problems, "seconds": wall,
            "cpu_seconds": cpu, "ms_per_image_cycle": 1e3 * wall / problems,
            "cpu_ms_per_image_cycle": 1e3 * cpu / problems, "forward_seconds": t_fwd,
            "ami_last": float(np.nanmean(res.ami[:, -1])), "synscore_last": float(np.nanmean(res.synscore[:, -1]))}
    print(f"batched: {problems} (image, cycle) problems in {wall:.2f} s = {ours['ms_per_image_cycle']:.2f} ms each "
          f"(CPU {ours['cpu_ms_per_image_cycle']:.2f} ms; forward {t_fwd:.1f} s); net {info['net']}, "
          f"cycle {res.cycles[-1]} AMI {ours['ami_last']:.3f} SynScore {ours['synscore_last']:.3f}")
    result["ours"] = ours

    T = rec.cycle
    blocks = rec.spikes.reshape(-1, T, rec.B, rec.N)  # [cycles, T, B, N]
    g = np.random.default_rng(0)
    pick = [(int(b), int(c)) for b, c in zip(g.integers(0, rec.B, 10 ** 4), g.integers(1, len(blocks), 10 ** 4))]
    # per-image reference loop, timed
    ref_times, ref_agree = [], []
    for b, c in pick[: args.eval_ref_problems]:
        pattern = blocks[c, :, b].T.numpy()
        lab = rec.labels[b].numpy()
        u = kmedoids_draws(torch.tensor([0]), ids[b:b + 1], torch.tensor([c]), int(lab.max()) + 1)[0].numpy()
        t0 = time.perf_counter()
        pred, ami, syn = _reference_problem(pattern, lab, u)
        ref_times.append(time.perf_counter() - t0)
        k = res.cycles.index(c)
        ref_agree.append(bool(np.array_equal(pred, res.pred[b, k].numpy()))
                         and abs(ami - res.ami[b, k]) < 1e-9
                         and (abs(syn - res.synscore[b, k]) < 1e-6 or (np.isnan(syn) and np.isnan(res.synscore[b, k]))))
        print(f"per-image loop: image {b} cycle {c}: {ref_times[-1]:.2f} s (AMI {ami:.3f}, SynScore {syn:.3f}; "
              f"equal to ours: {ref_agree[-1]})")
    if ref_times:
        ref_ms = 1e3 * float(np.mean(ref_times))
        result["per_image_loop"] = {"problems": len(ref_times), "ms_per_image_cycle": ref_ms,
                                    "identical_results": all(ref_agree)}
        result["speedup"] = ref_ms / ours["ms_per_image_cycle"]
        print(f"speed-up of the batched path: {result['speedup']:.0f}x")
    # label agreement on recorded cycles (Hamming matrix in NumPy: the same distances as the DP at q = 3)
    n_agree = 0
    agree = pick[: args.eval_agree]
    for b, c in agree:
        x = blocks[c, :, b].T.numpy().astype(np.int64)
        D = (x[:, None, :] != x[None, :, :]).sum(-1).astype(np.float64)
        K = int(rec.labels[b].max()) + 1
        u = kmedoids_draws(torch.tensor([0]), ids[b:b + 1], torch.tensor([c]), K)[0].numpy()
        want = _ref_alternate(D, reference_kpp_init(D, K, u))
        got = kmedoids_cycles(encode_cycles(blocks[c, :, b].T)[None], K, T=T, seeds=0, image_ids=int(b),
                              cycles=c).labels[0].numpy()
        n_agree += bool(np.array_equal(want, got))
    result["label_agreement"] = {"cycles": len(agree), "identical": n_agree}
    print(f"k-medoids labels identical to the reference algorithm on {n_agree}/{len(agree)} recorded cycles")
    return result
# === END EVALUATION PART ===========================================================================


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shapes_multiobj dataset (train_multi is read)")
    ap.add_argument("--batch", type=int, default=64, help="training batch (64: the §10.4 smoke; 1024: §4)")
    ap.add_argument("--cycles", type=int, default=8, help="IT cycles per training forward (8)")
    ap.add_argument("--iterations", type=int, default=2, help="timed training iterations per variant")
    ap.add_argument("--per-image", type=int, default=4, help="images in the per-image loop (0 = skip)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--skip-training", action="store_true", help="only the evaluation part")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    add_evaluation_arguments(ap)
    args = ap.parse_args(argv)
    configure_threads(args.threads)
    results: dict[str, Any] = {}
    if not args.skip_training:
        results["training"] = bench_training(args)
    evaluation = bench_evaluation(args)
    if evaluation is not None:
        results["evaluation"] = evaluation
    if args.out is not None:
        from workbench.fileio import write_json

        write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

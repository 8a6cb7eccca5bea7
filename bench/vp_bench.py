"""Victor-Purpura all-pairs matrix: vectorised DP vs the textbook per-pair DP, on realistic spike trains.

    python bench/vp_bench.py                         # 784 pixels x 300 steps, 15 % active, rate 0.05, q = 1/6
    python bench/vp_bench.py --active 0.15 1.0 --q 1/3 --threads 1

By default the per-pair DP is timed on a random sample of pairs and extrapolated to all N(N-1)/2 pairs;
``--dp-pairs 0`` runs it on every pair (seconds to a minute), so the ratio is measured, not extrapolated.
Either way the DP distances are checked against the matrix, and the header line says which was done.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from fractions import Fraction

import torch

from workbench.metrics import victor_purpura, victor_purpura_matrix
from workbench.runtime import configure_threads


def fraction(text: str) -> float:
    return float(Fraction(text))


def make_trains(pixels: int, steps: int, active: float, rate: float, seed: int) -> torch.Tensor:
    """Active pixels fire Bernoulli(rate) per step (about one spike per 1/rate steps); the rest are silent."""
    gen = torch.Generator().manual_seed(seed)
    on = torch.rand(pixels, generator=gen) < active
    return (torch.rand(pixels, steps, generator=gen) < rate) & on[:, None]


def time_matrix(trains: torch.Tensor, q: float, repeats: int) -> tuple[float, torch.Tensor]:
    dist = victor_purpura_matrix(trains, q)  # warm-up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dist = victor_purpura_matrix(trains, q)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), dist


def time_dp(trains: torch.Tensor, q: float, dist: torch.Tensor, n_pairs: int, seed: int) -> tuple[float, float]:
    """Seconds per pair of the plain DP (spike-time lists prepared outside the clock) and max |DP - matrix|."""
    n = trains.shape[0]
    if n_pairs <= 0:  # every unordered pair: the full matrix's worth of DP work, nothing extrapolated
        a, b = torch.triu_indices(n, n, offset=1)
    else:
        gen = torch.Generator().manual_seed(seed + 1)
        a = torch.randint(0, n, (n_pairs,), generator=gen)
        b = (a + torch.randint(1, n, (n_pairs,), generator=gen)) % n  # a != b
    times = [torch.nonzero(t).flatten().tolist() for t in trains]
    pairs = list(zip(a.tolist(), b.tolist()))
    n_pairs = len(pairs)
    t0 = time.perf_counter()
    values = [victor_purpura(times[i], times[j], q) for i, j in pairs]
    per_pair = (time.perf_counter() - t0) / n_pairs
    error = max(abs(v - dist[i, j].item()) for v, (i, j) in zip(values, pairs))
    return per_pair, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pixels", type=int, default=784)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--active", type=fraction, nargs="+", default=[0.15], help="fraction of pixels that fire")
    parser.add_argument("--rate", type=fraction, nargs="+", default=[0.05], help="spike probability per step")
    parser.add_argument("--q", type=fraction, default=1 / 6, help="shift cost per step (fractions like 1/6 work)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dp-pairs", type=int, default=3000,
                        help="pairs sampled for the plain DP timing; 0 = run the DP on all N(N-1)/2 pairs")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the matrix (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    threads = configure_threads(args.threads)
    n = args.pixels
    all_pairs = n * (n - 1) // 2
    how = (f"DP run on all {all_pairs} pairs" if args.dp_pairs <= 0 else
           f"DP time extrapolated from {args.dp_pairs} sampled pairs to all {all_pairs} pairs")
    print(f"VP_q matrix, q = {args.q:.6g}, torch threads = {threads}; {how}")
    columns = ["pixels", "steps", "active", "rate", "spikes/act", "vectorised s", "DP s (all pairs)", "ratio", "max|err|"]
    widths = [6, 5, 6, 6, 10, 12, 14, 8, 9]
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    ok = True
    for active in args.active:
        for rate in args.rate:
            trains = make_trains(n, args.steps, active, rate, args.seed)
            counts = trains.sum(1)
            mean_spikes = counts[counts > 0].double().mean().item() if counts.any() else 0.0
            seconds, dist = time_matrix(trains, args.q, args.repeats)
            per_pair, error = time_dp(trains, args.q, dist, args.dp_pairs, args.seed)
            dp_seconds = per_pair * all_pairs
            ok &= error <= 1e-9
            print(f"{n:>6} {args.steps:>5} {active:>6.3g} {rate:>6.3g} {mean_spikes:>10.1f} {seconds:>12.4f} "
                  f"{dp_seconds:>14.2f} {dp_seconds / seconds:>7.0f}x {error:>9.1e}")
    if not ok:
        print("ERROR: the sampled DP distances differ from the matrix by more than 1e-9", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Batched k-medoids on one-cycle spike patterns, and GUST's per-cycle AMI / SynScore (GUST spec §5.2-5.3).

One *problem* is one (image, cycle): the N pixels are the samples, each with its T-slot binary pattern of
that cycle, encoded as a T-bit integer (``workbench.metrics.encode_cycles``). The algorithm is the
reference's (scikit-learn-extra ``KMedoids(method="alternate", init="k-medoids++")``), exactly:

* k-medoids++ init: the first medoid is a uniformly drawn pixel. Each further medoid draws
  ``2 + floor(ln K)`` candidate pixels with probability proportional to (distance to the nearest chosen
  medoid)^2 (inverse-CDF search over the pixels in index order, the leftmost pixel whose cumulative mass
  reaches ``u * total``) and keeps the first candidate with the smallest summed squared nearest distance.
* "alternate": assign every pixel to its nearest medoid (ties -> lowest medoid index); for every non-empty
  cluster, move the medoid to the member with the smallest summed in-cluster distance (ties -> lowest pixel
  index) only if that is strictly smaller than the current medoid's; stop when no medoid changes, after
  at most ``max_iter`` rounds. The final labels are the assignment to the last medoids.

Why it is fast: a cycle has only ``2**T`` possible patterns and a GUST pixel fires at most once per cycle
(twice only at slots 0 and T-1), so an image has a handful of distinct patterns. Pixels with equal patterns
have equal distances to everything, so they always share a cluster and have equal medoid costs: the
algorithm runs on the distinct patterns with multiplicities (the cost of a candidate is a weighted sum), and
a medoid is represented by the lowest pixel index of its pattern. This gives the same medoids, labels and
iteration count as the pixel-level algorithm (tested against a plain-Python version of it). The init samples
over the pixels themselves (the cumulative mass is over N pixels), so the drawn pixels are the same too.
All problems of a chunk run at once in torch.

Distance: Victor-Purpura with q >= 2 is the Hamming distance between patterns (any shift costs more than a
delete plus an insert), computed as popcount(a XOR b); other q use the exact DP table ``vp_cycle_table``.

Seeding: the uniforms of a problem come from the counter RNG ``workbench.rng`` keyed by
``(seed, Stream.KMEANS, image_id, KMEDOIDS_STEP + cycle)``; draw 0 is the first medoid, draw
``1 + (c - 1) * 16 + trial`` the trial-th candidate of medoid c. A problem's result therefore does not depend
on which other problems share its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from workbench import rng
from workbench.metrics import weighted_silhouette
from workbench.metrics import ami_batch, encode_cycles, vp_cycle_table
from workbench.rng import Stream

__all__ = [
    "KMedoidsResult",
    "KMEDOIDS_STEP",
    "kmedoids_cycles",
    "kmedoids_draws",
    "pattern_distances",
    "cycle_scores",
    "CycleScoreResult",
    "silent_cluster",
    "reference_kpp_init",
]

KMEDOIDS_STEP = 1 << 40  # step offset in Stream.KMEANS: keeps k-medoids draws apart from DASBE's k-means
_TRIAL_STRIDE = 16  # draw index stride per medoid; 2 + floor(ln K) <= 16 for every K < e**14
HAMMING_Q = 2.0  # VP_q for q >= 2 equals the Hamming distance of the patterns


@dataclass(frozen=True)
class KMedoidsResult:
    """labels ``[P, N]`` int64 (cluster index 0..K-1 per pixel), medoids ``[P, Kmax]`` pixel indices
    (-1 where k >= K of that problem), n_iter ``[P]`` (alternate rounds run, as scikit-learn-extra's
    ``n_iter_ + 1``)."""

    labels: torch.Tensor
    medoids: torch.Tensor
    n_iter: torch.Tensor


# --- distinct patterns ---------------------------------------------------------------------------


@dataclass
class _Patterns:
    """Distinct codes per problem, padded to U: codes/weights/first pixel ``[P, U]``, inverse ``[P, N]``."""

    codes: torch.Tensor
    weights: torch.Tensor  # pixels with this code (0 = padding)
    first: torch.Tensor  # lowest pixel index with this code (N for padding)
    inverse: torch.Tensor  # pixel -> its distinct-code index
    valid: torch.Tensor

    @classmethod
    def build(cls, codes: torch.Tensor) -> "_Patterns":
        P, N = codes.shape
        srt, order = torch.sort(codes, dim=1, stable=True)
        new = torch.ones_like(srt, dtype=torch.bool)
        new[:, 1:] = srt[:, 1:] != srt[:, :-1]
        rank = new.cumsum(1) - 1  # distinct-code index of each sorted pixel (codes ascending)
        U = int(rank.max()) + 1 if rank.numel() else 1
        inverse = torch.empty_like(rank).scatter_(1, order, rank)
        ucodes = torch.zeros(P, U, dtype=torch.int64, device=codes.device).scatter_(1, rank, srt)
        weights = torch.zeros(P, U, dtype=torch.float64, device=codes.device).scatter_add_(
            1, rank, torch.ones_like(srt, dtype=torch.float64))
        first = torch.full((P, U), N, dtype=torch.int64, device=codes.device).scatter_reduce_(
            1, rank, order, reduce="amin")
        return cls(ucodes, weights, first, inverse, weights > 0)


def pattern_distances(codes_a: torch.Tensor, codes_b: torch.Tensor, q: float, T: int) -> torch.Tensor:
    """VP_q (float64) between patterns given as T-bit codes; broadcasts ``codes_a`` against ``codes_b``."""
    if q >= HAMMING_Q:
        x = codes_a ^ codes_b
        return sum(((x >> t) & 1) for t in range(T)).to(torch.float64)
    table = vp_cycle_table(T, q).to(codes_a.device)
    return table[codes_a, codes_b]


# --- the algorithm ---------------------------------------------------------------------------------


def _max_distinct(codes: torch.Tensor) -> int:
    """The largest number of distinct codes in a row of ``codes [P, N]`` (sizes the chunks)."""
    if codes.numel() == 0:
        return 1
    srt = codes.sort(dim=1).values
    return int(((srt[:, 1:] != srt[:, :-1]).sum(1) + 1).max())


def kmedoids_draws(seeds: torch.Tensor, image_ids: torch.Tensor, cycles: torch.Tensor, k_max: int) -> torch.Tensor:
    """The uniforms ``[P, 1 + (k_max - 1) * 16]`` that seed the k-medoids++ init of each problem."""
    n = 1 + max(k_max - 1, 0) * _TRIAL_STRIDE
    return rng.uniform(seeds, Stream.KMEANS, image_ids, KMEDOIDS_STEP + cycles, n)


def _as_rows(value: Any, P: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.int64)
    if t.dim() == 0:
        t = t.expand(P)
    if tuple(t.shape) != (P,):
        raise ValueError(f"{name} must be an int or have one entry per problem ({P}); got shape {tuple(t.shape)}")
    return t.contiguous()


def kmedoids_cycles(patterns: Any, k: Any, *, T: int | None = None, seeds: Any = 0, image_ids: Any = None,
                    cycles: Any = 0, q: float = 3.0, max_iter: int = 300, init: Any = None,
                    draws: torch.Tensor | None = None, chunk_cells: int = 1 << 22) -> KMedoidsResult:
    """K-medoids of every problem's pixels under VP_q (default q = 3: Hamming), all problems at once.

    Args:
        patterns: bool ``[P, N, T]`` (one cycle of one image per row), or int64 codes ``[P, N]`` from
            ``encode_cycles`` together with ``T``.
        k: clusters per problem (int or ``[P]``), e.g. ``max(label) + 1``.
        seeds, image_ids, cycles: the counter-RNG key of each problem (int or ``[P]``); image ids default
            to 0..P-1 (pass real dataset indices for batch invariance across calls).
        init: optional initial medoids ``[P, Kmax]`` (pixel indices; entries for k >= K are ignored),
            replacing the k-medoids++ init (used to compare with a reference implementation).
        draws: optional uniforms replacing the RNG (``kmedoids_draws``' layout).
        chunk_cells: problems are processed in chunks of about this many distance-matrix cells.
    """
    x = torch.as_tensor(patterns)
    if x.dtype == torch.bool:
        if x.dim() != 3:
            raise ValueError(f"bool patterns must be [P, N, T]; got shape {tuple(x.shape)}")
        T = int(x.shape[2])
        codes = encode_cycles(x)
    else:
        if x.dim() != 2 or T is None:
            raise ValueError(f"pattern codes must be [P, N] int64 with T given; got shape {tuple(x.shape)}, T={T}")
        codes = x.to(torch.int64)
    P, N = codes.shape
    K = _as_rows(k, P, "k")
    if P and (int(K.min()) < 1 or int(K.max()) > N):
        raise ValueError(f"k must be in 1..N={N} for every problem; got min {int(K.min())}, max {int(K.max())}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    seeds_t = _as_rows(seeds, P, "seeds")
    ids = torch.arange(P) if image_ids is None else _as_rows(image_ids, P, "image_ids")
    cyc = _as_rows(cycles, P, "cycles")
    k_max = int(K.max()) if P else 1
    init_t = None if init is None else torch.as_tensor(init, dtype=torch.int64)
    if init_t is not None and (init_t.dim() != 2 or init_t.shape[0] != P or init_t.shape[1] < k_max):
        raise ValueError(f"init must be [P={P}, >= {k_max}] pixel indices; got shape {tuple(init_t.shape)}")
    labels = torch.zeros(P, N, dtype=torch.int64, device=codes.device)
    medoids = torch.full((P, k_max), -1, dtype=torch.int64, device=codes.device)
    n_iter = torch.zeros(P, dtype=torch.int64, device=codes.device)
    step = max(1, chunk_cells // max(_max_distinct(codes) ** 2 * k_max, N * k_max))
    for lo in range(0, P, step):
        hi = min(P, lo + step)
        d = None if draws is None else draws[lo:hi]
        if d is None and init_t is None:
            d = kmedoids_draws(seeds_t[lo:hi], ids[lo:hi], cyc[lo:hi], k_max).to(codes.device)
        res = _kmedoids_chunk(codes[lo:hi], K[lo:hi].to(codes.device), q, T, int(max_iter), k_max,
                              None if init_t is None else init_t[lo:hi, :k_max].to(codes.device), d)
        labels[lo:hi], medoids[lo:hi], n_iter[lo:hi] = res
    return KMedoidsResult(labels, medoids, n_iter)


def _kmedoids_chunk(codes: torch.Tensor, K: torch.Tensor, q: float, T: int, max_iter: int, k_max: int,
                    init: torch.Tensor | None, draws: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    P, N = codes.shape
    pat = _Patterns.build(codes)
    U = pat.codes.shape[1]
    D = pattern_distances(pat.codes[:, :, None], pat.codes[:, None, :], q, T)  # [P, U, U]
    used = torch.arange(k_max, device=codes.device)[None, :] < K[:, None]  # [P, Kmax]
    if init is not None:
        med_px = torch.where(used, init, 0)
        if int(med_px.min()) < 0 or int(med_px.max()) >= N:
            raise ValueError(f"init medoids must be pixel indices in 0..{N - 1}")
    else:
        med_px = _init_pp(D, pat, K, used, draws, N)
    med = pat.inverse.gather(1, med_px)  # distinct-pattern index of each medoid
    n_iter = torch.zeros(P, dtype=torch.int64, device=codes.device)
    running = torch.ones(P, dtype=torch.bool, device=codes.device)
    ks = torch.arange(k_max, device=codes.device)
    for _ in range(max_iter):
        n_iter += running
        dm = torch.where(used[:, None, :], D.gather(2, med[:, None, :].expand(P, U, k_max)), math.inf)
        lab = dm.argmin(2)  # [P, U]; first minimum = lowest medoid index
        member = (lab[:, :, None] == ks) & pat.valid[:, :, None]  # [P, U, K]
        cost = torch.bmm(D, member.to(torch.float64) * pat.weights[:, :, None])  # [P, U, K]
        cand = torch.where(member, cost, math.inf)
        best_cost = cand.min(1).values  # [P, K]
        tie = torch.where(cand == best_cost[:, None, :], pat.first[:, :, None], N)  # lowest pixel among ties
        best = tie.argmin(1)
        cur_cost = cost.gather(1, med[:, None, :]).squeeze(1)
        change = member.any(1) & used & (best_cost < cur_cost)
        changed = change.any(1)
        running &= changed
        if not bool(changed.any()):
            break
        med = torch.where(change, best, med)
        med_px = torch.where(change, pat.first.gather(1, best), med_px)
    dm = torch.where(used[:, None, :], D.gather(2, med[:, None, :].expand(P, U, k_max)), math.inf)
    labels = dm.argmin(2).gather(1, pat.inverse)
    return labels, torch.where(used, med_px, -1), n_iter


def _init_pp(D: torch.Tensor, pat: _Patterns, K: torch.Tensor, used: torch.Tensor, draws: torch.Tensor,
             N: int) -> torch.Tensor:
    """k-medoids++ (scikit-learn-extra's ``_kpp_init``): returns medoid pixel indices ``[P, Kmax]``."""
    P, k_max = used.shape
    dev = D.device
    d = draws.to(dev, torch.float64)
    med_px = torch.zeros(P, k_max, dtype=torch.int64, device=dev)
    med_px[:, 0] = (d[:, 0] * N).floor().to(torch.int64).clamp_(0, N - 1)
    closest = D.gather(1, pat.inverse.gather(1, med_px[:, :1])[:, :, None].expand(P, 1, D.shape[2]))[:, 0] ** 2
    n_trials = 2 + torch.floor(torch.log(K.to(torch.float64))).to(torch.int64)  # [P]
    L = int(n_trials.max())
    trial_ok = torch.arange(L, device=dev)[None, :] < n_trials[:, None]  # [P, L]
    for c in range(1, k_max):
        mass = closest.gather(1, pat.inverse)  # [P, N] squared distance of every pixel, pixel order
        cum = mass.cumsum(1)
        pot = (closest * pat.weights).sum(1)
        u = d[:, 1 + (c - 1) * _TRIAL_STRIDE: 1 + (c - 1) * _TRIAL_STRIDE + L]
        cand_px = torch.searchsorted(cum, (u * pot[:, None]).contiguous()).clamp_(max=N - 1)  # [P, L]
        cand = pat.inverse.gather(1, cand_px)
        cand_d2 = D.gather(1, cand[:, :, None].expand(P, L, D.shape[2])) ** 2  # [P, L, U]
        new = torch.minimum(closest[:, None, :], cand_d2)
        new_pot = torch.where(trial_ok, (new * pat.weights[:, None, :]).sum(2), math.inf)
        best = new_pot.argmin(1)  # first trial with the smallest potential
        active = used[:, c]
        med_px[:, c] = torch.where(active, cand_px.gather(1, best[:, None])[:, 0], 0)
        chosen = new.gather(1, best[:, None, None].expand(P, 1, new.shape[2]))[:, 0]
        closest = torch.where(active[:, None], chosen, closest)
    return med_px


# --- per-cycle scores ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleScoreResult:
    """Per (image row, cycle) scores, ``[B, C]`` float64; pred ``[B, C, N]`` (optional).

    ``silent_share``: the share of the scored pixels that k-medoids puts in the cluster of the silent pixels.
    Under the Hamming metric (q = 3) a pixel that fires once, in a slot other than its object's medoid, is 1
    from silence and 2 from the medoid, so this counts every object pixel that misses its object's slot (or is
    silent itself); that cluster mixes all objects, which caps AMI. ``bound_ami``: AMI over the other scored
    pixels, i.e. how well the pixels that do fire on a group's slot are grouped (NaN where none are left).
    AMI is roughly what ``bound_ami`` leaves after ``silent_share`` of the pixels are mixed together.
    ``unfired_share``: the share of the scored pixels that do not fire at all in the cycle (part of
    ``silent_share``; the rest of it fires, but off its group's slot).
    """

    cycles: list[int]
    ami: np.ndarray
    synscore: np.ndarray
    pred: torch.Tensor | None = None
    silent_share: np.ndarray | None = None
    bound_ami: np.ndarray | None = None
    unfired_share: np.ndarray | None = None

    @property
    def n_nan(self) -> int:
        """Number of (image, cycle) SynScores left undefined (one predicted cluster among object pixels)."""
        return int(np.isnan(self.synscore).sum())


def cycle_scores(spikes: Any, labels: Any, *, T: int = 10, cycles: Sequence[int] | None = None, k: Any = "oracle",
                 seeds: Any = 0, image_ids: Any = None, q_group: float = 3.0, q_sync: float = 1 / 3,
                 max_iter: int = 300, keep_pred: bool = False, include_background: bool = False
                 ) -> CycleScoreResult:
    """GUST's per-cycle AMI and SynScore (spec §5.2-5.3) for every image of a record, batched.

    Args:
        spikes: bool ``[S, B, N]`` with S = cycles * T (a ``SpikeRecord.spikes``).
        labels: int ``[B, N]`` (0 = background or overlap).
        cycles: cycle indices to score (default: 1..S/T-1, cycle 0 skipped as in the reference).
        k: ``"oracle"`` (max label + 1 per image), an int, or ``[B]``.
        seeds, image_ids: counter-RNG key per image row (ints or ``[B]``); image ids default to 0..B-1.

    AMI: arithmetic normalisation over label != 0 pixels (all pixels with ``include_background``).
    SynScore: silhouette under VP_{q_sync} of the k-medoids labels over label != 0 pixels; 0 when all those
    pixels share one pattern (all distances 0, e.g. a silent cycle), NaN when they fall into a single
    predicted cluster otherwise.
    """
    s = torch.as_tensor(spikes)
    if s.dim() != 3:
        raise ValueError(f"spikes must be [S, B, N] (time-first); got shape {tuple(s.shape)}")
    s = s.to(torch.bool)
    S, B, N = s.shape
    if S % T:
        raise ValueError(f"the record has {S} steps, not a whole number of {T}-slot cycles")
    lab = torch.as_tensor(labels, dtype=torch.int64, device=s.device)
    if tuple(lab.shape) != (B, N):
        raise ValueError(f"labels must be [B, N] = [{B}, {N}]; got {tuple(lab.shape)}")
    n_cyc = S // T
    cyc = list(range(1, n_cyc)) if cycles is None else [int(c) for c in cycles]
    bad = [c for c in cyc if not 0 <= c < n_cyc]
    if bad:
        raise ValueError(f"cycles {bad} are outside the record's 0..{n_cyc - 1}")
    if isinstance(k, str):
        if k != "oracle":
            raise ValueError(f"k must be 'oracle', an int or one value per image; got {k!r}")
        kb = lab.max(1).values + 1
    else:
        kb = _as_rows(k, B, "k").to(s.device)
    C = len(cyc)
    if C == 0:
        empty = np.zeros((B, 0))
        return CycleScoreResult(cyc, empty, empty, None, empty, empty, empty)
    blocks = s.reshape(n_cyc, T, B, N)[cyc]  # [C, T, B, N]
    codes = encode_cycles(blocks.permute(2, 0, 3, 1))  # [B, C, N]

    def per_problem(value: Any, name: str) -> torch.Tensor:  # one value per image -> one per (image, cycle)
        return _as_rows(value, B, name).to(s.device)[:, None].expand(B, C).reshape(-1)

    res = kmedoids_cycles(codes.reshape(B * C, N), per_problem(kb, "k"), T=T, seeds=per_problem(seeds, "seeds"),
                          image_ids=per_problem(torch.arange(B) if image_ids is None else image_ids, "image_ids"),
                          cycles=torch.tensor(cyc, device=s.device).repeat(B), q=q_group, max_iter=max_iter)
    pred = res.labels.reshape(B, C, N)
    lab_rows = lab[:, None, :].expand(B, C, N)
    ami = ami_batch(lab_rows.reshape(B * C, N).cpu().numpy(), pred.reshape(B * C, N).cpu().numpy(),
                    ignore_label=None if include_background else 0).reshape(B, C)
    syn = _synscore(codes.reshape(B * C, N), pred.reshape(B * C, N), lab_rows.reshape(B * C, N) != 0,
                    q_sync, T).reshape(B, C)
    scored = torch.ones_like(lab_rows, dtype=torch.bool) if include_background else lab_rows != 0
    grouped_silent = silent_cluster(codes, pred) & scored
    n_scored = scored.sum(-1).clamp(min=1)
    share = (grouped_silent.sum(-1) / n_scored).double().cpu().numpy()
    unfired = (((codes == 0) & scored).sum(-1) / n_scored).double().cpu().numpy()
    bound = torch.where(scored & ~grouped_silent, lab_rows, -1)  # -1: left out of the bound-pixel AMI
    bound_ami = ami_batch(bound.reshape(B * C, N).cpu().numpy(), pred.reshape(B * C, N).cpu().numpy(),
                          ignore_label=-1).reshape(B, C)
    return CycleScoreResult(cyc, ami, syn, pred if keep_pred else None, share, bound_ami, unfired)


def silent_cluster(codes: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Bool mask ``[..., N]`` of the pixels in the cluster that holds the silent pixels (code 0) of their row.

    Pixels with equal codes always share a cluster, so that cluster is well defined; a row without a silent
    pixel has none (all False).
    """
    silent_px = codes == 0
    silent_label = torch.where(silent_px, pred, -1).amax(-1, keepdim=True)
    return (pred == silent_label) & silent_px.any(-1, keepdim=True)


def _synscore(codes: torch.Tensor, pred: torch.Tensor, scored: torch.Tensor, q: float, T: int,
              chunk_cells: int = 1 << 22) -> np.ndarray:
    """Silhouette under VP_q of ``pred`` over the ``scored`` pixels of each row, on distinct (code, cluster)
    pairs with multiplicities; 0 where all scored pixels share one pattern, NaN for one cluster."""
    P, N = codes.shape
    out = np.full(P, np.nan)
    k = int(pred.max()) + 1 if pred.numel() else 1
    # (cluster, code) -> one key; pixels with equal patterns always share a cluster, so this is the code
    key = torch.where(scored, pred * (1 << T) + codes, -1)
    step = max(1, chunk_cells // (_max_distinct(key) ** 2 * k))
    for lo in range(0, P, step):
        hi = min(P, lo + step)
        pat = _Patterns.build(key[lo:hi])
        w = pat.weights * (pat.codes >= 0)
        cl = torch.where(pat.codes >= 0, pat.codes >> T, 0)
        cd = torch.where(pat.codes >= 0, pat.codes & ((1 << T) - 1), 0)
        D = pattern_distances(cd[:, :, None], cd[:, None, :], q, T)
        score = weighted_silhouette(D, w, cl, k)
        n_patterns = ((w > 0) & (pat.codes >= 0)).sum(1)
        # all scored pixels share one pattern (silent cycle): all distances 0 -> 0 (spec §5.3)
        silent = (n_patterns == 1) | ((D * (w[:, :, None] > 0) * (w[:, None, :] > 0)).amax((1, 2)) == 0)
        score = torch.where(silent & (n_patterns > 0), torch.zeros_like(score), score)
        out[lo:hi] = score.cpu().numpy()
    return out


def reference_kpp_init(D: np.ndarray, K: int, u: np.ndarray) -> list[int]:
    """k-medoids++ on one problem, written plainly after scikit-learn-extra's ``_kpp_init`` (NumPy).

    ``D [N, N]`` distances, ``u`` the uniforms of one problem in ``kmedoids_draws``' layout (u[0] picks the
    first medoid, then 16 slots per further medoid). The oracle for tests and the per-image bench baseline.
    """
    N = D.shape[0]
    centers = [min(int(np.floor(float(u[0]) * N)), N - 1)]
    closest = D[centers[0]] ** 2
    pot = closest.sum()
    trials = 2 + int(np.log(K))
    for c in range(1, K):
        vals = np.asarray(u[1 + (c - 1) * 16: 1 + (c - 1) * 16 + trials], dtype=np.float64) * pot
        cands = np.searchsorted(np.cumsum(closest), vals)
        best = best_pot = best_d = None
        for cand in cands:
            new = np.minimum(closest, D[cand] ** 2)
            if best is None or new.sum() < best_pot:
                best, best_pot, best_d = int(cand), new.sum(), new
        centers.append(best)
        pot, closest = best_pot, best_d
    return centers

"""Grouping and spike-timing metrics: AMI/ARI on labelled pixels, Victor-Purpura distances, silhouette scores.

Conventions (DASBE spec §6, GUST spec §5):

* labels: 0 = background or overlap, 1..K = objects. AMI and ARI score only labelled pixels by default.
* spike trains are ``[N, T]`` (neuron-major, time last; a SpikeRecord ``[T, B, N]`` becomes
  ``record.spikes[:, b].T``). Spike times are step indices; time is linear (no wrap-around).
* Victor-Purpura VP_q: edit distance between spike-time sets, insert/delete cost 1, shift cost q·|dt|.
* silhouette scores are NaN when fewer than 2 predicted clusters remain: the caller counts those cases.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

__all__ = [
    "ami",
    "ami_batch",
    "ari",
    "victor_purpura",
    "victor_purpura_matrix",
    "vp_cycle_table",
    "encode_cycles",
    "silhouette",
    "weighted_silhouette",
    "synchrony_score",
    "rate_score",
    "clustering_score",
    "smooth_trains",
]

MAX_TABLE_SLOTS = 12  # a table has 4**T entries: 16.7M (134 MB) at T = 12


# --- input checks --------------------------------------------------------------------------------


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")


def _as_trains(trains: Any, device: str | torch.device | None = None, ndim: int | None = 2) -> torch.Tensor:
    """Spike trains as a bool tensor; rejects values other than 0/1."""
    x = torch.as_tensor(trains, device=device)
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"spike trains must be [N, T] (neurons x steps); got shape {tuple(x.shape)}")
    if x.dtype != torch.bool:
        if x.numel() and not bool(((x == 0) | (x == 1)).all()):
            raise ValueError("spike trains must be binary (bool or 0/1); got other values")
        x = x.to(torch.bool)
    return x


def _check_q(q: float) -> float:
    q = float(q)
    if not (math.isfinite(q) and q >= 0):
        raise ValueError(f"q (shift cost per step) must be a finite number >= 0, got {q}")
    return q


# --- AMI / ARI -----------------------------------------------------------------------------------


def _kept_pixels(labels: Any, pred: Any, ignore_label: int | None) -> tuple[np.ndarray, np.ndarray]:
    lab, prd = _numpy(labels), _numpy(pred)
    _same_shape(lab, prd, "labels", "pred")
    lab, prd = lab.reshape(-1), prd.reshape(-1)
    if ignore_label is not None:
        keep = lab != ignore_label
        lab, prd = lab[keep], prd[keep]
    return lab, prd


def ami(labels: Any, pred: Any, *, ignore_label: int | None = 0, average_method: str = "arithmetic") -> float:
    """Adjusted mutual information over pixels whose label != ``ignore_label`` (``None``: all pixels).

    Returns NaN when no pixel is left. ``average_method="max"`` gives the older sklearn (< 0.22) variant.
    """
    lab, prd = _kept_pixels(labels, pred, ignore_label)
    if lab.size == 0:
        return float("nan")
    return float(adjusted_mutual_info_score(lab, prd, average_method=average_method))


# --- batched AMI ---------------------------------------------------------------------------------
# scikit-learn's adjusted_mutual_info_score, for all images at once: contingency tables by one bincount,
# MI and entropies from them, and the expected MI (hypergeometric model) as one flat sum over every
# (image, class, cluster, n_ij) term. Equal to sklearn to ~1e-15; its special cases are kept.

_AVERAGES = ("arithmetic", "max", "min", "geometric")


def ami_batch(labels: Any, pred: Any, *, ignore_label: int | None = 0, average_method: str = "arithmetic",
               block: int = 256) -> np.ndarray:
    """AMI per image of ``labels``/``pred`` ``[B, ...]`` over pixels whose label != ``ignore_label``.

    Same values as ``ami`` (scikit-learn) per image to ~1e-15, for all images at once: NaN for an image
    without kept pixels, 1.0 when both labelings have one group, 0.0 when only one of them has, and exactly
    1.0 for a perfect match (sklearn: 1 within a few ulp). The one case that differs is 0/0 in sklearn
    too: ``average_method="min"`` with one labeling all singletons (EMI = MI = min entropy), where
    sklearn's value is rounding noise.
    """
    if average_method not in _AVERAGES:
        raise ValueError(f"average_method must be one of {_AVERAGES}, got {average_method!r}")
    lab, prd = _numpy(labels), _numpy(pred)
    _same_shape(lab, prd, "labels", "pred")
    if lab.ndim < 2:
        raise ValueError(f"ami_batch needs [B, N] (or [B, H, W]) arrays; got shape {lab.shape}")
    B = lab.shape[0]
    lab, prd = lab.reshape(B, -1), prd.reshape(B, -1)
    keep = np.ones(lab.shape, dtype=bool) if ignore_label is None else lab != ignore_label
    lab_codes, n_lab = _codes(lab)
    prd_codes, n_prd = _codes(prd)
    out = np.empty(B, dtype=np.float64)
    block = max(1, min(int(block), 2**24 // (n_lab * n_prd)))
    for lo in range(0, B, block):  # bounds the memory of the contingency tables and the EMI terms
        hi = min(lo + block, B)
        b = hi - lo
        cell = ((np.arange(b)[:, None] * n_lab + lab_codes[lo:hi]) * n_prd + prd_codes[lo:hi])[keep[lo:hi]]
        table = np.bincount(cell, minlength=b * n_lab * n_prd).reshape(b, n_lab, n_prd)
        out[lo:hi] = _ami_from_tables(table, average_method)
    return out


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Values -> codes 0..C-1 (the values themselves when they are small non-negative integers)."""
    if values.size and values.dtype.kind in "iub" and values.min() >= 0 and values.max() < 4096:
        return values.astype(np.int64), int(values.max()) + 1
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.reshape(values.shape).astype(np.int64), max(len(uniques), 1)


def _ami_from_tables(table: np.ndarray, average_method: str) -> np.ndarray:
    """AMI of each contingency table ``[B, classes, clusters]`` (int counts)."""
    from scipy.special import gammaln

    B = table.shape[0]
    a, b = table.sum(axis=2), table.sum(axis=1)  # class and cluster sizes [B, I], [B, J]
    n = a.sum(axis=1)  # [B]
    n_classes, n_clusters = (a > 0).sum(axis=1), (b > 0).sum(axis=1)
    out = np.full(B, np.nan)
    out[(n > 0) & (n_classes == 1) & (n_clusters == 1)] = 1.0
    out[(n > 0) & ((n_classes == 1) != (n_clusters == 1))] = 0.0
    todo = np.flatnonzero((n_classes > 1) & (n_clusters > 1))
    if todo.size == 0:
        return out
    table, a, b, n = table[todo], a[todo], b[todo], n[todo].astype(np.float64)
    eps = np.finfo(np.float64).eps
    log_n = np.log(n)
    # mutual information over the non-zero cells (as sklearn, tiny terms are set to 0)
    img, i, j = np.nonzero(table)
    nij = table[img, i, j].astype(np.float64)
    share = nij / n[img]
    outer = a[img, i].astype(np.int64) * b[img, j].astype(np.int64)
    terms = share * (np.log(nij) - log_n[img]) + share * (-np.log(outer) + log_n[img] + log_n[img])
    terms = np.where(np.abs(terms) < eps, 0.0, terms)
    mi = np.clip(np.bincount(img, weights=terms, minlength=len(todo)), 0.0, None)
    h_true, h_pred = _entropies(a, n), _entropies(b, n)
    emi = _expected_mi(a, b, n, gammaln)
    if average_method == "arithmetic":
        normalizer = (h_true + h_pred) / 2
    elif average_method == "max":
        normalizer = np.maximum(h_true, h_pred)
    elif average_method == "min":
        normalizer = np.minimum(h_true, h_pred)
    else:
        normalizer = np.sqrt(h_true * h_pred)
    denominator, numerator = normalizer - emi, mi - emi
    denominator = np.where(denominator < 0, np.minimum(denominator, -eps), np.maximum(denominator, eps))
    numerator = np.where(numerator < 0, np.minimum(numerator, -eps), np.maximum(numerator, eps))
    out[todo] = numerator / denominator
    # A perfect match (a one-to-one contingency table) has MI = both entropies, so AMI = 1 exactly; the
    # formula leaves it within a few ulp of 1 on either side (and makes 0/0 of the degenerate all-singleton
    # case, which sklearn's eps guards turn into 1).
    perfect = (np.bincount(img, minlength=len(todo)) == n_classes[todo]) & (n_classes[todo] == n_clusters[todo])
    out[todo[perfect]] = 1.0
    return out


def _entropies(sizes: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of group sizes ``[B, K]`` (zeros ignored) with totals ``n [B]``."""
    p = sizes.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, (p / n[:, None]) * (np.log(p) - np.log(n)[:, None]), 0.0)
    return -terms.sum(axis=1)


def _expected_mi(a: np.ndarray, b: np.ndarray, n: np.ndarray, gammaln: Any) -> np.ndarray:
    """Expected MI under the permutation model (Vinh et al. 2010), as sklearn computes it, for all images.

    EMI = sum_ij sum_{n_ij = max(1, a_i + b_j - n)}^{min(a_i, b_j)} n_ij/n log(n n_ij / (a_i b_j))
          a_i! b_j! (n - a_i)! (n - b_j)! / (n! n_ij! (a_i - n_ij)! (b_j - n_ij)! (n - a_i - b_j + n_ij)!)

    The inner sum depends only on (a_i, b_j, n), so it is computed once per distinct triple (group sizes
    repeat a lot), over one flat vector of all their n_ij terms. All arguments are integers <= max(n):
    log k! and log k come from tables.
    """
    img, i, j = np.nonzero((a[:, :, None] > 0) & (b[:, None, :] > 0))
    top = int(n.max())
    key = (a[img, i].astype(np.int64) * (top + 1) + b[img, j]) * (top + 1) + n[img].astype(np.int64)
    triples, which = np.unique(key, return_inverse=True)
    N, rest = triples % (top + 1), triples // (top + 1)
    ai, bj = rest // (top + 1), rest % (top + 1)
    log_fact = gammaln(np.arange(top + 1, dtype=np.float64) + 1)  # log k!
    with np.errstate(divide="ignore"):
        log = np.log(np.arange(top + 1, dtype=np.float64))
    start = np.maximum(1, ai - N + bj)
    count = np.maximum(np.minimum(ai, bj) + 1 - start, 0)
    outer_gln = log_fact[ai] + log_fact[bj] + log_fact[N - ai] + log_fact[N - bj]  # the n_ij-free factors
    outer_log = log[ai] + log[bj]
    t = np.repeat(np.arange(len(triples)), count)  # the triple of each n_ij term
    nij = start[t] + np.arange(int(count.sum())) - (np.cumsum(count) - count)[t]
    ai, bj, N = ai[t], bj[t], N[t]
    term1 = nij / N
    term2 = (log[N] + log[nij]) - outer_log[t]
    gln = outer_gln[t] - (log_fact[nij] + log_fact[N]) - log_fact[ai - nij] - log_fact[bj - nij] \
        - log_fact[N - ai - bj + nij]
    inner = np.bincount(t, weights=term1 * term2 * np.exp(gln), minlength=len(triples))
    return np.bincount(img, weights=inner[which.reshape(-1)], minlength=len(a))


def ari(labels: Any, pred: Any, *, include_background: bool = False) -> float:
    """Adjusted Rand index on labelled pixels (label != 0), or on all pixels with ``include_background``."""
    lab, prd = _kept_pixels(labels, pred, None if include_background else 0)
    if lab.size == 0:
        return float("nan")
    return float(adjusted_rand_score(lab, prd))


# --- Victor-Purpura distance -----------------------------------------------------------------------


def victor_purpura(a_times: Sequence[float], b_times: Sequence[float], q: float) -> float:
    """Reference VP_q distance by the textbook dynamic programme (slow; use it to check the fast paths).

    f[i,0] = i, f[0,j] = j, f[i,j] = min(f[i-1,j-1] + q|a_i - b_j|, f[i-1,j] + 1, f[i,j-1] + 1).
    """
    q = _check_q(q)
    a = sorted(float(t) for t in np.asarray(a_times).reshape(-1))
    b = sorted(float(t) for t in np.asarray(b_times).reshape(-1))
    prev = [float(j) for j in range(len(b) + 1)]
    for i, ai in enumerate(a, start=1):
        row = [float(i)]
        for j, bj in enumerate(b, start=1):
            row.append(min(prev[j - 1] + q * abs(ai - bj), prev[j] + 1.0, row[j - 1] + 1.0))
        prev = row
    return prev[-1]


def victor_purpura_matrix(
    trains: Any, q: float, *, device: str | torch.device | None = None, method: str = "auto"
) -> torch.Tensor:
    """Exact VP_q distances between all pairs of spike trains ``[N, T]``; returns float64 ``[N, N]``.

    ``method``: ``"auto"`` picks the cheapest exact path: q = 0 is |n_a - n_b|; q >= 2 is the number of
    non-coincident spikes (a shift of >= 1 step costs >= 2 = delete + insert); short cycles (T <= 10)
    use the cached all-patterns table; everything else runs the vectorised DP. ``"dp"`` and
    ``"table"`` force a path (for tests and benchmarks). Computes on ``device`` (default: the trains').
    """
    if method not in ("auto", "dp", "table", "hamming"):
        raise ValueError(f"method must be 'auto', 'dp', 'table' or 'hamming', got {method!r}")
    x = _as_trains(trains, device)
    q = _check_q(q)
    counts = x.sum(1)
    if q == 0:
        return (counts[:, None] - counts[None, :]).abs().to(torch.float64)
    if method == "auto":
        method = "hamming" if q >= 2 else "table" if _table_pays_off(x.shape[1], x.shape[0], q) else "dp"
    if method == "hamming":
        xf = x.to(torch.float64)
        return counts[:, None] + counts[None, :] - 2 * (xf @ xf.T)
    if method == "table":
        table = _cached_table(x.shape[1], q, str(x.device))
        codes = encode_cycles(x)
        return table[codes[:, None], codes[None, :]]
    return _vp_dp_matrix(x, q)


def _table_pays_off(T: int, N: int, q: float) -> bool:
    # Building a table costs about as much as a 4**T-pair matrix; reuse makes it free afterwards.
    if T > 10:
        return False
    return (T, q) in _TABLE_KEYS or N * N >= 4**T // 4


def _vp_dp_matrix(x: torch.Tensor, q: float) -> torch.Tensor:
    """Vectorised DP over all pairs of non-empty trains, in tiles of trains sorted by spike count.

    Pairs with an empty train need no DP: their distance is the other train's count. Sorting by count
    keeps the padding inside a tile small, and only the lower triangle of tiles is computed.
    """
    N, T = x.shape
    counts = x.sum(1)
    out = (counts[:, None] + counts[None, :]).to(torch.float64)  # exact whenever one train is empty
    active = torch.nonzero(counts).flatten()
    if active.numel() == 0:
        return out
    order = active[torch.argsort(counts[active], stable=True)]
    n_sorted = counts[order]
    n = n_sorted.tolist()
    times = _padded_scaled_times(x[order], q, max(n))
    sorted_dist = torch.empty(len(n), len(n), dtype=torch.float64, device=x.device)
    budget = 1 << (24 if x.device.type == "cuda" else 17)  # cells per tile: fits a CPU core's L2 cache
    rows = 32
    for r0 in range(0, len(n), rows):
        r1 = min(len(n), r0 + rows)
        cols = max(rows, budget // (rows * (n[r1 - 1] + 1)))
        for c0 in range(0, r1, cols):
            c1 = min(r1, c0 + cols)
            ta, tb = times[: n[r1 - 1] + 1, r0:r1], times[: n[c1 - 1] + 1, c0:c1]
            tile = _vp_tile(ta, tb, n_sorted[r0:r1], n_sorted[c0:c1])
            sorted_dist[r0:r1, c0:c1] = tile
            sorted_dist[c0:c1, r0:r1] = tile.T
    out[order[:, None], order[None, :]] = sorted_dist
    return out


def _padded_scaled_times(x: torch.Tensor, q: float, M: int) -> torch.Tensor:
    """``[M + 1, n]`` spike times times q, row 0 unused (the DP's row 0 is the empty prefix).

    Trains with fewer than M spikes are padded with a time so far beyond the window that matching a pad
    with a real spike costs > 2 (delete + insert is cheaper); see ``_vp_tile`` for why that is exact.
    """
    n, T = x.shape
    steps = torch.arange(T, device=x.device).expand(n, T)
    first_spikes = torch.where(x, steps, T + steps).sort(dim=1).values[:, :M]  # spike steps first, in order
    pad = q * (T - 1) + 3.0
    scaled = torch.where(first_spikes < T, q * first_spikes.to(torch.float64), pad)
    return torch.cat([torch.zeros(n, 1, dtype=torch.float64, device=x.device), scaled], dim=1).T.contiguous()


def _vp_tile(ta: torch.Tensor, tb: torch.Tensor, na: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    """VP between every row train (``ta`` [Ma+1, A]) and column train (``tb`` [Mb+1, B]) -> ``[A, B]``.

    Padding: every row train is padded to Ma spikes and every column train to Mb, all pads at one time
    beyond the window. A pad-to-real match costs > 2, so an optimal alignment never uses one; the pads
    then only match each other at cost 0, leaving |pads_a - pads_b| unmatched. Hence
    VP(a, b) = VP(padded a, padded b) - |(Ma - n_a) - (Mb - n_b)|, with no masking inside the loop.

    The DP runs over anti-diagonals d = i + j, vectorised over i and over all A x B pairs: cell (i, j)
    needs (i-1, j-1) from diagonal d-2 and (i-1, j), (i, j-1) from diagonal d-1. Buffers hold
    f[i, d-i] at index i.
    """
    Ma, Mb = ta.shape[0] - 1, tb.shape[0] - 1
    a = ta[:, :, None]
    b_rev = tb.flip(0)[:, None, :]  # b_rev[Mb - j] = b[j]: a slice of i gives b[d - i] in the same order
    shape = (Ma + 1, ta.shape[1], tb.shape[1])
    f2 = torch.zeros(shape, dtype=torch.float64, device=ta.device)  # diagonal d-2 (d = 0: f[0,0] = 0)
    f1 = torch.zeros_like(f2)  # diagonal d-1 (d = 1: f[0,1] = f[1,0] = 1)
    f0 = torch.zeros_like(f2)
    f1[0:2] = 1.0
    for d in range(2, Ma + Mb + 1):
        lo, hi = max(1, d - Mb), min(d - 1, Ma)  # interior cells: i >= 1 and j = d - i >= 1
        if lo <= hi:
            k = Mb - d + lo
            shift = torch.sub(a[lo : hi + 1], b_rev[k : k + hi - lo + 1]).abs_()
            shift += f2[lo - 1 : hi]
            indel = torch.minimum(f1[lo - 1 : hi], f1[lo : hi + 1])
            indel += 1.0
            torch.minimum(shift, indel, out=f0[lo : hi + 1])
        if d <= Mb:
            f0[0] = d  # f[0, d]
        if d <= Ma:
            f0[d] = d  # f[d, 0]
        f2, f1, f0 = f1, f0, f2
    padded = f1[Ma]  # the last diagonal holds the single cell (Ma, Mb)
    extra = ((Ma - na)[:, None] - (Mb - nb)[None, :]).abs()
    return padded - extra


# --- short cycles: all-patterns table ------------------------------------------------------------


def encode_cycles(trains: Any) -> torch.Tensor:
    """Binary trains ``[..., T]`` -> int64 codes ``[...]`` with slot t as bit t (T <= 62)."""
    x = _as_trains(trains, ndim=None)
    T = x.shape[-1] if x.dim() else 0
    if x.dim() == 0 or not 1 <= T <= 62:
        raise ValueError(f"encode_cycles needs [..., T] with 1 <= T <= 62 slots; got shape {tuple(x.shape)}")
    weights = torch.ones(T, dtype=torch.int64, device=x.device) << torch.arange(T, device=x.device)
    return (x.to(torch.int64) * weights).sum(-1)


def _all_patterns(T: int) -> torch.Tensor:
    codes = torch.arange(2**T)
    return ((codes[:, None] >> torch.arange(T)[None, :]) & 1).to(torch.bool)


_TABLE_KEYS: set[tuple[int, float]] = set()


@functools.lru_cache(maxsize=16)
def _cached_table(T: int, q: float, device: str = "cpu") -> torch.Tensor:
    if device != "cpu":  # built once on the CPU, then one copy kept per device
        return _cached_table(T, q).to(device)
    if not 1 <= T <= MAX_TABLE_SLOTS:
        raise ValueError(f"a VP table needs 1 <= T <= {MAX_TABLE_SLOTS} slots (it has 4**T entries); got T={T}")
    _TABLE_KEYS.add((T, q))
    # Always the DP path (also for q >= 2), so the table is an independent check of the shortcuts.
    return victor_purpura_matrix(_all_patterns(T), q, method="dp")


def vp_cycle_table(T_slots: int, q: float) -> torch.Tensor:
    """Exact VP_q between every pair of binary T-slot patterns: float64 ``[2**T, 2**T]``.

    Index with ``encode_cycles`` codes: ``table[code_a, code_b]``. Cached per (T, q); a copy is returned.
    """
    return _cached_table(int(T_slots), _check_q(q)).clone()


# --- silhouette-based scores -----------------------------------------------------------------------


def silhouette(dist: Any, pred: Any, *, mask: Any = None) -> float | torch.Tensor:
    """Mean silhouette from a precomputed distance matrix.

    s_i = (b_i - a_i) / max(a_i, b_i), where a_i is the mean distance to the other members of i's cluster
    and b_i the smallest mean distance to another cluster; s_i = 0 for singletons and for 0/0. NaN when
    fewer than 2 clusters occur. Matches ``sklearn.metrics.silhouette_score(metric="precomputed")``
    wherever sklearn is defined (sklearn raises for < 2 clusters or all-singletons; we return NaN / 0).

    Batched: ``dist [..., N, N]``, ``pred [..., N]`` and optional bool ``mask [..., N]`` (points to
    score; others are ignored entirely) give a float64 tensor ``[...]``; unbatched input gives a float.
    """
    d = torch.as_tensor(dist).to(torch.float64)
    p = torch.as_tensor(pred, device=d.device)
    if d.dim() < 2 or d.shape[-1] != d.shape[-2]:
        raise ValueError(f"dist must be [..., N, N]; got shape {tuple(d.shape)}")
    if tuple(p.shape) != tuple(d.shape[:-1]):
        raise ValueError(
            f"pred must be [..., N] matching dist [..., N, N]; got pred {tuple(p.shape)} and dist {tuple(d.shape)}"
        )
    if d.numel() and (d.diagonal(dim1=-2, dim2=-1).abs() > 1e-12).any():
        raise ValueError("dist must have a zero diagonal (the distance of a point to itself)")
    m = torch.ones_like(p, dtype=torch.bool) if mask is None else torch.as_tensor(mask, device=d.device)
    _same_shape(m, p, "mask", "pred")
    m = m.to(torch.bool)

    cluster = torch.unique(p, return_inverse=True)[1]
    own = F.one_hot(cluster, int(cluster.max()) + 1 if cluster.numel() else 1).to(torch.bool)  # [..., N, K]
    members = (own & m[..., None]).to(torch.float64)
    sizes = members.sum(-2)  # [..., K]
    sums = d @ members  # [..., N, K]: summed distance from i to the scored members of cluster k
    own_size = (sizes[..., None, :] * own).sum(-1)
    a = (sums * own).sum(-1) / (own_size - 1)  # NaN for singletons, set to 0 below
    others = torch.where(own | (sizes[..., None, :] == 0), torch.inf, sums / sizes[..., None, :].clamp_min(1))
    b = others.min(-1).values
    s = torch.nan_to_num((b - a) / torch.maximum(a, b), nan=0.0)
    score = (s * m).sum(-1) / m.sum(-1).clamp_min(1)
    score = torch.where((sizes > 0).sum(-1) >= 2, score, torch.nan)
    return float(score) if d.dim() == 2 else score


def weighted_silhouette(dist: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Mean silhouette of points with multiplicities: ``dist [B, U, U]``, ``weights``/``labels [B, U]``.

    Equals the ordinary silhouette of the expanded point set (copies of a point sit at distance 0, so
    ``a_i`` = weighted distance sum / (own cluster size - 1)); s = 0 for singletons and 0/0; NaN when
    fewer than 2 clusters are non-empty.
    """
    own = torch.nn.functional.one_hot(labels, k).to(torch.float64)  # [B, U, K]
    members = own * weights[:, :, None]
    sizes = members.sum(dim=1)  # [B, K]
    sums = torch.bmm(dist, members)  # [B, U, K]
    own_size = (own * sizes[:, None, :]).sum(dim=2)
    a = (sums * own).sum(dim=2) / (own_size - 1)
    others = torch.where((own > 0) | (sizes[:, None, :] == 0), math.inf, sums / sizes[:, None, :].clamp_min(1))
    b = others.min(dim=2).values
    s = torch.nan_to_num((b - a) / torch.maximum(a, b), nan=0.0, posinf=0.0, neginf=0.0)
    score = (s * weights).sum(dim=1) / weights.sum(dim=1)
    return torch.where((sizes > 0).sum(dim=1) >= 2, score, torch.nan)


def _labelled(x: torch.Tensor, pred: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.as_tensor(pred, device=x.device)
    if tuple(p.shape) != (x.shape[0],):
        raise ValueError(
            f"pred must be [N] for N = {x.shape[0]} samples; got pred {tuple(p.shape)} and samples {tuple(x.shape)}"
        )
    if labels is None:
        return x, p
    lab = torch.as_tensor(labels, device=x.device)
    _same_shape(lab, p, "labels", "pred")
    keep = lab != 0
    return x[keep], p[keep]


def synchrony_score(trains: Any, pred: Any, labels: Any = None, q: float = 1 / 6) -> float:
    """Silhouette of the raw trains ``[N, T]`` under VP_q, over labelled pixels (labels != 0) when given.

    DASBE Fig 3 uses q = 1/6 (its Fig 2/4 scripts q = 1/3); GUST's SynScore uses q = 1/3.
    NaN when fewer than 2 predicted clusters occur among the scored pixels.
    """
    x, p = _labelled(_as_trains(trains), pred, labels)
    if torch.unique(p).numel() < 2:
        return float("nan")
    return silhouette(victor_purpura_matrix(x, q), p)  # type: ignore[return-value]


def rate_score(trains: Any, pred: Any, labels: Any = None) -> float:
    """Synchrony score with q = 0: the silhouette of spike counts alone."""
    return synchrony_score(trains, pred, labels, q=0.0)


def clustering_score(features: Any, pred: Any, labels: Any = None) -> float:
    """Euclidean silhouette of features ``[N, F]`` (e.g. smoothed trains), over labelled pixels when given."""
    f = torch.as_tensor(features).to(torch.float64)
    if f.dim() != 2:
        raise ValueError(f"features must be [N, F]; got shape {tuple(f.shape)}")
    f, p = _labelled(f, pred, labels)
    if torch.unique(p).numel() < 2:
        return float("nan")
    dist = torch.cdist(f, f).fill_diagonal_(0.0)
    return silhouette(dist, p)  # type: ignore[return-value]


# --- readout features --------------------------------------------------------------------------------


def smooth_trains(trains: Any, m: int = 2) -> torch.Tensor:
    """s~(t) = sum_{j<m} 2^-j s(t-j) along the last axis (terms before the window start are dropped).

    DASBE's readout feature (spec §6.1, m = 2: s(t) + 0.5 s(t-1)). Returns float32 (or the input's float dtype).
    """
    if int(m) < 1:
        raise ValueError(f"m (number of smoothing taps) must be >= 1, got {m}")
    x = torch.as_tensor(trains)
    if x.dim() == 0:
        raise ValueError("smooth_trains needs trains [..., T]; got a scalar")
    x = x if x.is_floating_point() else x.to(torch.float32)
    out = x.clone()
    for j in range(1, min(int(m), x.shape[-1])):
        out[..., j:] += 2.0**-j * x[..., :-j]
    return out

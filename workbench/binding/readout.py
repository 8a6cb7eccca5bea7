"""Grouping readout: cluster the pixels' smoothed spike trains with k-means (DASBE spec §6.1).

Per image: take the last ``back_steps`` steps, smooth each pixel's train (s(t) + 0.5 s(t-1)), cluster all N
pixels (background included: it forms the all-zero cluster) into K = max(label) + 1 groups, and score the
prediction with AMI over labelled pixels.

``kmeans`` is a batched torch k-means with scikit-learn's algorithm: greedy k-means++ seeding
(2 + floor(ln K) local trials), Lloyd iterations (at most ``max_iter``; stop when labels stop changing or the
squared centre shift is <= ``tol`` x mean feature variance), empty clusters moved to the farthest points,
``n_init`` seedings run side by side and the lowest inertia kept. It runs every image of a chunk and every
seeding at once. Seeding draws come from the counter RNG keyed by (seed, image id), so the result of an
image does not depend on the other images in the batch.

Fast path for spike trains: most pixels share a train (every silent pixel is all-zero, and bound objects
fire together), so ``group_pixels`` finds each image's distinct binary trains with one sort of packed bit
words for the whole window and smooths only those; k-means then runs on the weighted distinct rows. This
gives the same points, weights and Gram matrix as deduplicating the smoothed features, so the same labels.
AMI is computed for all images at once (``workbench.metrics.ami_batch``, equal to scikit-learn's to ~1e-15).

``scores_per_cycle`` gives Fig 3's per-iteration scores (spec §6.2): AMI, synchrony (VP_q silhouette), rate
(VP_0 silhouette) and clustering (Euclidean silhouette of the smoothed trains), all over labelled pixels,
for every (iteration, image) block at once.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from workbench import rng
from workbench.metrics import ami_batch, silhouette, smooth_trains, victor_purpura_matrix, weighted_silhouette
from workbench.record import SpikeRecord
from workbench.rng import Stream

DEFAULT_BACK_CYCLES = 10  # spec §6.1: the last 10 iterations


@dataclass
class KMeansResult:
    labels: torch.Tensor  # int64 [B, P]
    inertia: torch.Tensor  # float64 [B], of the kept run
    n_iter: torch.Tensor  # int64 [B], Lloyd iterations of the kept run


def group_pixels(source: SpikeRecord | torch.Tensor, n_clusters: int | Sequence[int] | torch.Tensor | str | None = None,
                 *, back_steps: int | None = None, smooth: int = 2, n_init: int = 10, seed: int | None = None,
                 image_ids: Sequence[int] | torch.Tensor | None = None, max_iter: int = 300, tol: float = 1e-4,
                 chunk: int = 64, k_max: int | None = None) -> torch.Tensor:
    """Predicted group ``[B, N]`` (int64, 0..K-1 in arbitrary order) for each image of a record or ``[T, B, N]`` spikes.

    Args:
        n_clusters: int, one per image, None / ``"oracle"``: ``max(label) + 1`` from the record's labels, or
            ``"auto"``: per image the K in ``2..k_max`` whose grouping has the best Euclidean silhouette of the
            smoothed features over all pixels (silent ones included); uses no labels.
        k_max: largest K tried by ``"auto"`` (required for it).
        back_steps: steps at the end to use (default: 10 cycles of a record with a cycle, else all).
        smooth: smoothing length m (weights 1, 1/2, 1/4, ...; 1 = raw trains).
        seed: k-means seeding seed (default: each row's binding seed from the record's metadata, else 0).
        image_ids: keys of the seeding draws (default: the record's image ids, else 0..B-1).
        chunk: images clustered at once (bounds memory; the result does not depend on it).
    """
    spikes = source.spikes if isinstance(source, SpikeRecord) else torch.as_tensor(source)
    if spikes.dim() != 3:
        raise ValueError(f"spikes must be [T, B, N], got shape {tuple(spikes.shape)}")
    T, B, _ = spikes.shape
    back = _back_steps(source, back_steps, T)
    window = spikes[T - back:]
    seeds = _row_values(source, "seeds", seed, B, default=0)
    ids = _row_values(source, "image_ids", image_ids, B, default=None)
    auto = isinstance(n_clusters, str) and n_clusters == "auto"
    k = None if auto else _cluster_counts(source, n_clusters, B)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if int(smooth) < 1:
        raise ValueError(f"smooth (number of smoothing taps) must be >= 1, got {smooth}")
    groups = _TrainGroups.build(window) if _is_binary(window) else None
    labels = []
    for i in range(0, B, chunk):  # rows are built per chunk: bounds the memory
        if groups is not None:  # spikes: deduplicate the binary trains, then smooth only the distinct ones
            rows = groups.rows(i, min(i + chunk, B), smooth, device=window.device)
        else:
            rows = _Rows.from_features(smooth_trains(window[:, i:i + chunk].permute(1, 2, 0).to(torch.float64),
                                                     m=smooth))
        if auto:
            labels.append(_group_auto(rows, k_max, n_init=n_init, max_iter=max_iter, tol=tol,
                                      seeds=seeds[i:i + chunk], ids=ids[i:i + chunk]))
        else:
            labels.append(_kmeans_rows(rows, k[i:i + chunk], n_init=n_init, max_iter=max_iter, tol=tol,
                                       seed=seeds[i:i + chunk], image_ids=ids[i:i + chunk]).labels)
    return torch.cat(labels) if labels else torch.zeros(0, spikes.shape[2], dtype=torch.int64)


def _group_auto(rows: "_Rows", k_max: int | None, *, n_init: int, max_iter: int, tol: float,
                seeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``n_clusters="auto"``: k-means for every K in 2..k_max, keep per image the best-silhouette grouping.

    The silhouette is Euclidean on the smoothed features of all pixels (silent ones included, as the
    readout clusters them), computed exactly on the distinct feature rows weighted by their counts. Ties
    keep the smaller K; an image whose silhouette is undefined for every K keeps K = 2.
    """
    if k_max is None or isinstance(k_max, bool) or int(k_max) < 2:
        raise ValueError(f"n_clusters='auto' needs k_max >= 2 (the largest K to try), got {k_max!r}")
    points, weights, inverse = rows.points, rows.weights, rows.inverse
    B, P = inverse.shape
    dist = torch.cdist(points, points)
    best = torch.full((B,), -math.inf, dtype=torch.float64, device=points.device)
    best_labels = torch.zeros(B, P, dtype=torch.int64, device=points.device)
    for k in range(2, min(int(k_max), P) + 1):
        labels = _kmeans_rows(rows, k, n_init=n_init, max_iter=max_iter, tol=tol, seed=seeds, image_ids=ids).labels
        unique_labels = torch.zeros_like(weights, dtype=torch.int64).scatter_(1, inverse, labels)
        score = torch.nan_to_num(weighted_silhouette(dist, weights, unique_labels, k), nan=-math.inf)
        better = (score > best) | ((k == 2) & torch.isinf(best))
        best = torch.where(better, score, best)
        best_labels[better] = labels[better]
    return best_labels


def _gather_masked(values: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each image's masked points to the front (stable order), pad to the largest count: values
    ``[B, A, ...]``, pred ``[B, A]`` (padding: -1) and mask ``[B, A]``."""
    mask = mask.to(torch.bool)
    B = mask.shape[0]
    A = max(int(mask.sum(dim=1).max()) if B else 0, 1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :A]
    kept = mask.gather(1, order)
    index = order.reshape(B, A, *([1] * (values.dim() - 2))).expand(B, A, *values.shape[2:])
    gathered = values.gather(1, index)
    p = torch.where(kept, pred.gather(1, order), torch.full_like(order, -1))
    return gathered, p, kept


def evaluate_grouping(record: SpikeRecord, labels: Any = None, **group_kwargs: Any) -> np.ndarray:
    """Per-image AMI (labelled pixels only, arithmetic normalisation) of ``group_pixels(record, ...)``."""
    labels = record.labels if labels is None else torch.as_tensor(np.asarray(labels)).reshape(record.B, -1)
    if labels is None:
        raise ValueError("evaluate_grouping needs labels: pass labels=... or a record that holds them")
    group_kwargs.setdefault("n_clusters", (labels.max(dim=1).values + 1).tolist())
    pred = group_pixels(record, **group_kwargs)
    return ami_batch(labels.cpu().numpy(), pred.cpu().numpy())


@dataclass
class CycleScores:
    """Scores of each iteration's own block of ``cycle`` steps (DASBE Fig 3 protocol, spec §6.2).

    Every score is over labelled pixels (label != 0) of one image in one iteration; the grouping ``pred`` is
    k-means (oracle K) on that block's smoothed trains. Silhouettes are NaN when fewer than 2 predicted
    groups occur among the labelled pixels (counted by ``n_nan``).
    """

    cycles: np.ndarray  # iteration indices scored, [C]
    ami: np.ndarray  # [C, B] AMI of k-means on that iteration's spikes
    synchrony: np.ndarray  # [C, B] "syn": silhouette of the raw trains under VP_q
    rate: np.ndarray | None = None  # [C, B] silhouette under VP_0 = |n_a - n_b| (spike counts only)
    clustering: np.ndarray | None = None  # [C, B] "km": Euclidean silhouette of the smoothed trains
    q: float = 1 / 6

    def mean(self) -> dict[str, np.ndarray]:
        """Per-iteration means over images (NaNs, i.e. undefined silhouettes, are skipped)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)  # an all-NaN iteration gives NaN
            return {name: np.nanmean(values, axis=1) for name, values in self.scores().items()}

    def scores(self) -> dict[str, np.ndarray]:
        """``{"ami", "synchrony", "rate", "clustering"}`` -> ``[C, B]`` (the ones that were computed)."""
        named = {"ami": self.ami, "synchrony": self.synchrony, "rate": self.rate, "clustering": self.clustering}
        return {k: v for k, v in named.items() if v is not None}

    def n_nan(self) -> dict[str, int]:
        """Undefined (NaN) entries per score."""
        return {name: int(np.isnan(values).sum()) for name, values in self.scores().items()}


def scores_per_cycle(record: SpikeRecord, cycles: Sequence[int] | None = None, *, q: float = 1 / 6,
                     smooth: int = 2, n_init: int = 10, chunk: int = 64) -> CycleScores:
    """AMI, synchrony, rate and clustering scores of each chosen iteration, each on its own ``cycle`` steps.

    This is how grouping emerges over time: early iterations fire at random phases (AMI near 0, low
    synchrony), late ones fire object by object. ``q`` is the Victor-Purpura shift cost (1/6 as in DASBE
    Fig 3). K is the oracle ``max(label) + 1`` of each image. All (iteration, image) blocks are clustered
    and scored together, ``chunk`` blocks at a time (the numbers do not depend on ``chunk``).
    """
    if record.labels is None or not record.cycle:
        raise ValueError("scores_per_cycle needs a record with labels and a cycle length")
    chosen = np.arange(record.n_cycles) if cycles is None else np.asarray(list(cycles), dtype=int).reshape(-1)
    if chosen.size and not (0 <= chosen.min() and chosen.max() < record.n_cycles):
        raise IndexError(f"cycles must lie in 0..{record.n_cycles - 1}, got {chosen.tolist()}")
    C, B, D = chosen.size, record.B, record.cycle
    labels = record.labels.cpu()
    seeds = _row_values(record, "seeds", None, B, default=0).repeat(C)
    ids = _row_values(record, "image_ids", None, B, default=None).repeat(C)
    k = (labels.max(dim=1).values + 1).repeat(C)
    blocks = record.cycles()[torch.as_tensor(chosen, dtype=torch.long)].cpu()  # [C, D, B, N]
    rows = blocks.permute(1, 0, 2, 3).reshape(D, C * B, record.N)  # row = cycle * B + image
    row_labels = labels.repeat(C, 1)
    out = {name: np.empty(C * B) for name in ("ami", "synchrony", "rate", "clustering")}
    for i in range(0, C * B, chunk):
        part = slice(i, min(i + chunk, C * B))
        pred = group_pixels(rows[:, part], k[part], back_steps=D, smooth=smooth, n_init=n_init, seed=seeds[part],
                            image_ids=ids[part], chunk=chunk)
        lab = row_labels[part]
        out["ami"][part] = ami_batch(lab.numpy(), pred.numpy())
        trains = rows[:, part].permute(1, 2, 0)  # [rows, N, D] bool
        scores = silhouette_scores(trains, pred, lab != 0, q=q, smooth=smooth)
        for name, values in scores.items():
            out[name][part] = values.numpy()
    shaped = {name: values.reshape(C, B) for name, values in out.items()}
    return CycleScores(chosen, shaped["ami"], shaped["synchrony"], shaped["rate"], shaped["clustering"], q=q)


def silhouette_scores(trains: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, *, q: float = 1 / 6,
                      smooth: int = 2) -> dict[str, torch.Tensor]:
    """Fig 3's three silhouettes per image over the masked (labelled) pixels, batched over images.

    ``trains [B, N, T]`` (bool), ``pred [B, N]`` and ``mask [B, N]`` give float64 ``[B]`` each:
    ``synchrony`` (VP_q on the raw trains), ``rate`` (VP_0 = |n_a - n_b|) and ``clustering`` (Euclidean
    on the smoothed trains). NaN where fewer than 2 predicted groups occur among the masked pixels.
    The VP_q matrices are built per image (a vectorised DP over its pixel pairs), then all silhouettes of
    the batch are taken at once on padded matrices.
    """
    trains = torch.as_tensor(trains).to(torch.bool)
    x, p, m = _gather_masked(trains, pred, mask)  # [B, A, T], [B, A], [B, A]
    B, A, _ = x.shape
    vp = torch.zeros(B, A, A, dtype=torch.float64)
    for b in range(B):
        n = int(m[b].sum())
        if n and torch.unique(p[b, :n]).numel() >= 2:  # else the silhouette is NaN anyway
            vp[b, :n, :n] = victor_purpura_matrix(x[b, :n].cpu(), q)
    counts = x.sum(dim=2).to(torch.float64)
    rate_dist = (counts[:, :, None] - counts[:, None, :]).abs()
    features = smooth_trains(x.to(torch.float64), m=smooth)
    km_dist = torch.cdist(features, features)
    km_dist.diagonal(dim1=1, dim2=2).zero_()
    dists = {"synchrony": vp, "rate": rate_dist, "clustering": km_dist}
    return {name: _as_batch(silhouette(d, p, mask=m), B) for name, d in dists.items()}


def _as_batch(value: Any, B: int) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float64).reshape(B).cpu()


def _back_steps(source: Any, back_steps: int | None, T: int) -> int:
    if back_steps is None:
        cycle = source.cycle if isinstance(source, SpikeRecord) else None
        back_steps = DEFAULT_BACK_CYCLES * cycle if cycle else T
    if back_steps < 1:
        raise ValueError(f"back_steps must be >= 1, got {back_steps}")
    return min(int(back_steps), T)


def _cluster_counts(source: Any, n_clusters: Any, B: int) -> torch.Tensor:
    if n_clusters is None or (isinstance(n_clusters, str) and n_clusters == "oracle"):
        labels = source.labels if isinstance(source, SpikeRecord) else None
        if labels is None:
            raise ValueError("n_clusters is needed: the oracle K = max(label) + 1 requires a record with labels")
        return (labels.max(dim=1).values + 1).cpu().to(torch.int64)
    k = torch.as_tensor(np.asarray(n_clusters), dtype=torch.int64).reshape(-1).cpu()
    k = k.expand(B).clone() if k.numel() == 1 else k
    if k.shape != (B,) or int(k.min()) < 1:
        raise ValueError(f"n_clusters must be an int >= 1 or one per image ({B}), got {n_clusters!r}")
    return k


def _row_values(source: Any, key: str, given: Any, B: int, default: int | None) -> torch.Tensor:
    """Per-row seeds / image ids: explicit value, else the record's metadata, else the default."""
    if given is None and isinstance(source, SpikeRecord) and len(source.meta.get(key, [])) == B:
        given = source.meta[key]
    if given is None:
        given = torch.arange(B) if default is None else default
    values = torch.as_tensor(np.asarray(given), dtype=torch.int64).reshape(-1)
    return values.expand(B).clone() if values.numel() == 1 else values


# --- batched k-means -----------------------------------------------------------------------------
# Every centre is a weighted mean of data points, c_k = sum_p alpha[p, k] x_p (k-means++ picks single points,
# Lloyd takes cluster means), so all distances follow from the Gram matrix G = X X^T:
#     |x_q - c_k|^2 = G_qq - 2 (G alpha)_qk + alpha_k^T G alpha_k.
# Spike-train features have few distinct rows (every silent pixel is the same all-zero row), so the points
# are deduplicated first and carry weights; weighted k-means on the unique rows is k-means on all rows.


def kmeans(features: torch.Tensor, n_clusters: torch.Tensor | int, *, n_init: int = 10, max_iter: int = 300,
           tol: float = 1e-4, seed: int | torch.Tensor = 0, image_ids: torch.Tensor | None = None) -> KMeansResult:
    """Cluster ``features [B, P, F]`` into ``n_clusters`` (int or ``[B]``) groups per image; float64 inside."""
    X = torch.as_tensor(features).to(torch.float64)
    return _kmeans_rows(_Rows.from_features(X), n_clusters, n_init=n_init, max_iter=max_iter, tol=tol, seed=seed,
                        image_ids=image_ids)


@dataclass
class _Rows:
    """The points k-means sees, deduplicated per image.

    points ``[B, U, F]`` float64 (distinct rows in ascending lexicographic order, padded with zeros),
    weights ``[B, U]`` (multiplicities; 0 marks padding, always at the end), inverse ``[B, P]`` (row ->
    distinct row), gram ``[B, U, U]`` = points points^T, spread ``[B]`` = mean over features of the
    variance over all P rows (sklearn's scale for ``tol``).
    """

    points: torch.Tensor
    weights: torch.Tensor
    inverse: torch.Tensor
    gram: torch.Tensor
    spread: torch.Tensor

    @classmethod
    def from_features(cls, X: torch.Tensor) -> "_Rows":
        points, weights, inverse = _unique_points(X)
        spread = X.var(dim=1, unbiased=False).mean(dim=1) if X.shape[0] else X.new_zeros(0)
        return cls(points, weights, inverse, torch.bmm(points, points.transpose(1, 2)), spread)


def _kmeans_rows(rows: _Rows, n_clusters: torch.Tensor | int, *, n_init: int, max_iter: int, tol: float,
                 seed: int | torch.Tensor, image_ids: torch.Tensor | None) -> KMeansResult:
    G, weights, inverse = rows.gram, rows.weights, rows.inverse
    B, P = inverse.shape
    device = G.device
    k = torch.as_tensor(n_clusters, dtype=torch.int64).reshape(-1).expand(B).to(device)
    if B == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return KMeansResult(torch.zeros(0, P, dtype=torch.int64), torch.zeros(0, dtype=torch.float64), empty)
    if int(k.min()) < 1 or int(k.max()) > P:
        raise ValueError(f"n_clusters must lie in 1..{P} (the number of points), got {k.tolist()}")
    ids = torch.arange(B) if image_ids is None else torch.as_tensor(image_ids)
    seeds = torch.as_tensor(seed, dtype=torch.int64).reshape(-1).expand(B)
    valid = torch.arange(int(k.max()), device=device)[None, :] < k[:, None]  # [B, K]: clusters in use
    alpha = _kmeans_plus_plus(G, weights, k, valid, n_init, seeds.to(device), ids.to(device))
    tol_abs = tol * rows.spread  # sklearn: relative to the mean feature variance
    alpha, n_iter = _lloyd(G, weights, alpha, valid, max_iter, tol_abs)
    closest, labels = _assign(G, *_center_products(G, alpha), valid)
    inertia = (closest * weights[:, None, :]).sum(dim=2)  # [B, R]
    best = inertia.argmin(dim=1)  # first minimum: ties keep the earliest run, as sklearn
    pick = torch.arange(B, device=device)
    return KMeansResult(labels[pick, best].gather(1, inverse), inertia[pick, best], n_iter[pick, best])


def _unique_points(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct rows per image, padded to a common count: points ``[B, U, F]``, weights ``[B, U]``
    (row multiplicities; 0 marks padding, which always sits at the end), inverse ``[B, P]``."""
    rows = [torch.unique(x, dim=0, return_inverse=True, return_counts=True) for x in X]
    U = max((len(r[0]) for r in rows), default=0)
    points = X.new_zeros(X.shape[0], U, X.shape[2])
    weights = X.new_zeros(X.shape[0], U)
    for b, (unique, _, counts) in enumerate(rows):
        points[b, : len(unique)] = unique
        weights[b, : len(unique)] = counts.to(X.dtype)
    inverse = torch.stack([r[1] for r in rows]) if rows else torch.zeros(0, X.shape[1], dtype=torch.int64)
    return points, weights, inverse


def _is_binary(spikes: torch.Tensor) -> bool:
    """True for spike trains (bool, or numbers that are all 0 or 1), which take the deduplicating fast path."""
    if spikes.dtype == torch.bool:
        return True
    if spikes.is_complex() or spikes.numel() == 0:
        return False
    return bool(((spikes == 0) | (spikes == 1)).all())


class _TrainGroups:
    """Distinct binary trains of every image of a window ``[T, B, N]``, found once for the whole window.

    Silent pixels all share the all-zero train; the others (``active``) are packed into 64-bit words (step
    0 in the most significant bit) and sorted once by (image, words), which groups equal trains and orders
    each image's distinct trains lexicographically. Smoothing keeps that order: trains that first differ at
    step t give features equal before t and ordered as the trains at t (the earlier steps add < 1), so
    the rows come out exactly as ``torch.unique(features, dim=0)`` orders them, the all-zero row first.
    """

    def __init__(self, trains: np.ndarray, active: np.ndarray, group_image: np.ndarray, group_rank: np.ndarray,
                 group_counts: np.ndarray, pixel_flat: np.ndarray, pixel_group: np.ndarray) -> None:
        self.trains = trains  # [G, T] bool: one train per distinct active train
        self.B, self.N = active.shape
        self.n_active = active.sum(axis=1)  # [B]
        self.has_zero = self.n_active < self.N  # the image has silent pixels: the all-zero row comes first
        self.n_groups = np.bincount(group_image, minlength=self.B)  # distinct active trains per image
        self.group_start = np.concatenate([[0], np.cumsum(self.n_groups)])
        self.group_rank = group_rank + self.has_zero[group_image]  # row index within its image
        self.group_counts = group_counts
        self.pixel_flat, self.pixel_group = pixel_flat, pixel_group  # active pixels (b * N + n), sorted
        self.pixel_start = np.concatenate([[0], np.cumsum(self.n_active)])

    @classmethod
    def build(cls, window: torch.Tensor) -> "_TrainGroups":
        x = window.detach().to("cpu", torch.bool).numpy()
        T, B, N = x.shape
        active = x.any(axis=0)  # [B, N]
        flat = np.flatnonzero(active)  # b * N + n, ascending
        if x.flags.c_contiguous:
            trains = x.reshape(T, B * N).take(flat, axis=1)
        else:
            trains = x[:, flat // N, flat % N]
        image = flat // N
        trains = np.ascontiguousarray(trains.T)  # [A, T]
        packed = np.packbits(trains, axis=1)  # [A, ceil(T/8)], big-endian bits
        n_words = -(-packed.shape[1] // 8)
        buffer = np.zeros((len(flat), 8 * n_words), dtype=np.uint8)
        buffer[:, : packed.shape[1]] = packed
        words = buffer.view(">u8")  # [A, n_words], unsigned big-endian: compares like the bit strings
        order = np.lexsort([words[:, j] for j in range(n_words - 1, -1, -1)] + [image])
        words, image_sorted = words[order], image[order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = (image_sorted[1:] != image_sorted[:-1]) | (words[1:] != words[:-1]).any(axis=1)
        group_of_sorted = np.cumsum(new) - 1  # [A] group index (groups ordered by image, then train)
        firsts = np.flatnonzero(new)
        group_image = image_sorted[firsts]
        group_counts = np.diff(np.append(firsts, len(order)))
        image_first_group = np.searchsorted(group_image, np.arange(B))
        group_rank = np.arange(len(firsts)) - image_first_group[group_image]
        pixel_group = np.empty(len(flat), dtype=np.int64)
        pixel_group[order] = group_of_sorted
        return cls(trains[order[firsts]], active, group_image, group_rank, group_counts, flat, pixel_group)

    def rows(self, lo: int, hi: int, smooth: int, device: torch.device | str = "cpu") -> _Rows:
        """The deduplicated smoothed rows of images ``lo:hi``."""
        g0, g1 = self.group_start[lo], self.group_start[hi]
        b = hi - lo
        sizes = self.n_groups[lo:hi] + self.has_zero[lo:hi]
        U = int(sizes.max()) if b else 0
        T = self.trains.shape[1]
        image = np.repeat(np.arange(b), self.n_groups[lo:hi])  # [g] image (within the chunk) of each group
        rank = self.group_rank[g0:g1]
        features = smooth_trains(torch.from_numpy(self.trains[g0:g1]).to(torch.float64), m=smooth)  # [g, T]
        image_t = torch.from_numpy(image)
        points = torch.zeros(b, U, T, dtype=torch.float64)
        points[image_t, torch.from_numpy(rank)] = features
        weights = np.zeros((b, U))
        weights[image, rank] = self.group_counts[g0:g1]
        weights[:, 0] += np.where(self.has_zero[lo:hi], self.N - self.n_active[lo:hi], 0)
        inverse = np.zeros(b * self.N, dtype=np.int64)  # silent pixels: the all-zero row 0
        p0, p1 = self.pixel_start[lo], self.pixel_start[hi]
        inverse[self.pixel_flat[p0:p1] - lo * self.N] = self.group_rank[self.pixel_group[p0:p1]]
        w = torch.from_numpy(weights)
        gram = _exact_gram(points, T, smooth)
        # Mean feature variance over all N rows from the weighted distinct rows. The weighted sums are exact
        # (the features are multiples of 2^-(smooth-1)), so this is the correctly rounded variance; torch.var
        # on all rows (the feature path) may differ from it in the last bit or two.
        weighted = features * torch.from_numpy(self.group_counts[g0:g1]).to(torch.float64)[:, None]
        s1 = features.new_zeros(b, T).index_add_(0, image_t, weighted)  # (the all-zero row adds nothing)
        s2 = features.new_zeros(b, T).index_add_(0, image_t, weighted.mul_(features))
        spread = ((self.N * s2 - s1 * s1) / (self.N * self.N)).mean(dim=1) if b else s1.new_zeros(0)
        out = _Rows(points, w, torch.from_numpy(inverse.reshape(b, self.N)), gram, spread)
        if torch.device(device).type != "cpu":
            out = _Rows(*(t.to(device) for t in (out.points, out.weights, out.inverse, out.gram, out.spread)))
        return out


def _exact_gram(points: torch.Tensor, T: int, smooth: int) -> torch.Tensor:
    """``points points^T`` in float64; through a float32 product when that is exact.

    Smoothed binary features are multiples of 2^-(m-1) below 2, so every partial sum of products is a
    multiple of 4^-(m-1) below 4T: float32 holds all of them exactly when T * 4^m <= 2^24, and then the
    result equals the float64 product bit for bit, whatever the summation order.
    """
    if T * 4 ** int(smooth) <= 2**24:
        p32 = points.to(torch.float32)
        return torch.bmm(p32, p32.transpose(1, 2)).to(torch.float64)
    return torch.bmm(points, points.transpose(1, 2))


def _kmeans_plus_plus(G: torch.Tensor, w: torch.Tensor, k: torch.Tensor, valid: torch.Tensor, n_init: int,
                      seeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Greedy weighted k-means++ for every image and run at once; returns centre coefficients ``[B, U, R*K]``."""
    B, U, _ = G.shape
    K, R = valid.shape[1], n_init
    trials = 2 + torch.floor(torch.log(k.to(torch.float64))).to(torch.int64)  # sklearn's local trials
    T = int(trials.max())
    last = (w > 0).sum(dim=1)[:, None, None] - 1  # last real point: padding is never chosen
    diag = torch.diagonal(G, dim1=1, dim2=2)  # [B, U]
    draws = _Draws(seeds, ids, B, R)
    chosen = torch.zeros(B, R, K, dtype=torch.int64, device=G.device)
    first = _sample(w[:, None, :].expand(B, R, U), draws(0, 1), last)[..., 0]  # [B, R]
    chosen[:, :, 0] = first
    closest = _point_distances(G, diag, first[:, :, None])[..., 0]  # [B, R, U]
    trial_ok = torch.arange(T, device=G.device)[None, None, :] < trials[:, None, None]
    for c in range(1, K):
        candidates = _sample(w[:, None, :] * closest, draws(c, T), last)  # [B, R, T]
        merged = torch.minimum(closest[..., None], _point_distances(G, diag, candidates))  # [B, R, U, T]
        pots = (merged * w[:, None, :, None]).sum(dim=2).masked_fill(~trial_ok, math.inf)
        best = pots.argmin(dim=2)  # [B, R]
        chosen[:, :, c] = candidates.gather(2, best[..., None])[..., 0]
        new_closest = merged.gather(3, best[:, :, None, None].expand(B, R, U, 1))[..., 0]
        closest = torch.where(valid[:, c][:, None, None], new_closest, closest)
    alpha = torch.nn.functional.one_hot(chosen, U).to(G.dtype) * valid[:, None, :, None]  # [B, R, K, U]
    return alpha.reshape(B, R * K, U).transpose(1, 2)


class _Draws:
    """Uniforms for choosing centre ``c`` in each run, keyed by (seed, image id, run, centre)."""

    def __init__(self, seeds: torch.Tensor, ids: torch.Tensor, B: int, R: int) -> None:
        self.seeds, self.ids = seeds.repeat_interleave(R), ids.repeat_interleave(R)
        self.runs = torch.arange(R, device=seeds.device).repeat(B)
        self.B, self.R = B, R

    def __call__(self, center: int, n: int) -> torch.Tensor:
        u = rng.uniform(self.seeds, Stream.KMEANS, self.ids, self.runs * 65536 + center, n)
        return u.reshape(self.B, self.R, n).to(torch.float64)


def _sample(mass: torch.Tensor, u: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Indices drawn with probability proportional to ``mass [B, R, U]`` (inverse CDF, as sklearn)."""
    cumulative = torch.cumsum(mass, dim=2)
    picks = torch.searchsorted(cumulative, u * cumulative[..., -1:])
    return torch.minimum(picks, last)


def _point_distances(G: torch.Tensor, diag: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[B, R, U, M]`` squared distances from every point to the points ``index [B, R, M]``."""
    B, R, M = index.shape
    cross = G.gather(2, index.reshape(B, 1, R * M).expand(B, G.shape[1], R * M))  # [B, U, R*M]
    cross = cross.reshape(B, -1, R, M).transpose(1, 2)
    target_norms = diag.gather(1, index.reshape(B, -1)).reshape(B, R, 1, M)
    return (diag[:, None, :, None] - 2.0 * cross + target_norms).clamp_(min=0.0)


def _center_products(G: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``G alpha`` (points . centres, ``[B, U, R*K]``) and the centres' squared norms ``[B, R*K]``."""
    Ga = torch.bmm(G, alpha)
    return Ga, (alpha * Ga).sum(dim=1)


def _assign(G: torch.Tensor, Ga: torch.Tensor, norms: torch.Tensor, valid: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre per point and run: squared distance and label, both ``[B, R, U]``."""
    B, U, RK = Ga.shape
    K = valid.shape[1]
    d = torch.sub(torch.diagonal(G, dim1=1, dim2=2)[:, :, None], Ga, alpha=2.0).add_(norms[:, None, :])
    d = d.clamp_(min=0.0).reshape(B, U, RK // K, K).transpose(1, 2)  # [B, R, U, K]
    if not bool(valid.all()):
        d = d.masked_fill_(~valid[:, None, None, :], math.inf)
    return d.min(dim=3)


def _lloyd(G: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor, valid: torch.Tensor, max_iter: int,
           tol_abs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd iterations on all runs; a run stops (and is frozen) at sklearn's convergence tests:
    labels unchanged, or total squared centre shift <= ``tol_abs``."""
    B, U, RK = alpha.shape
    K = valid.shape[1]
    R = RK // K
    active = torch.ones(B, R, dtype=torch.bool, device=G.device)
    n_iter = torch.zeros(B, R, dtype=torch.int64, device=G.device)
    old_labels = torch.full((B, R, U), -1, dtype=torch.int64, device=G.device)
    padding = (w == 0)[:, None, :]
    Ga, norms = _center_products(G, alpha)
    for _ in range(max_iter):
        closest, labels = _assign(G, Ga, norms, valid)
        new_alpha = _cluster_means(w, labels, closest, alpha, valid)
        new_Ga, new_norms = _center_products(G, new_alpha)
        cross = (new_alpha * Ga).sum(dim=1)  # c_new . c_old
        shift = (new_norms + norms - 2.0 * cross).clamp(min=0.0).reshape(B, R, K).sum(dim=2)
        if bool(active.all()):  # (the same tensors torch.where would return)
            alpha, Ga, norms = new_alpha, new_Ga, new_norms
        else:
            columns = active[:, :, None].expand(B, R, K).reshape(B, RK)  # a run's K centre columns
            alpha = torch.where(columns[:, None, :], new_alpha, alpha)
            Ga = torch.where(columns[:, None, :], new_Ga, Ga)
            norms = torch.where(columns, new_norms, norms)
        n_iter += active.to(torch.int64)
        unchanged = ((labels == old_labels) | padding).all(dim=2)
        active &= ~(unchanged | (shift <= tol_abs[:, None]))
        old_labels = labels
        if not bool(active.any()):
            break
    return alpha, n_iter


def _cluster_means(w: torch.Tensor, labels: torch.Tensor, closest: torch.Tensor, alpha: torch.Tensor,
                   valid: torch.Tensor) -> torch.Tensor:
    """Coefficients of the weighted cluster means; an empty cluster takes the farthest point (sklearn).

    Point p of run r with label k gets w_p / mass_rk in column r*K + k, all other entries are 0; a column
    whose cluster has no mass keeps its old coefficients.
    """
    B, U, RK = alpha.shape
    K = valid.shape[1]
    R = RK // K
    labels = _relocate_empty(w, labels, closest, valid)
    column = (labels + K * torch.arange(R, device=w.device)[None, :, None]).reshape(B, R * U)  # [B, R*U]
    w_runs = w.repeat(1, R)  # [B, R*U]: the weight of each (run, point)
    mass = torch.zeros(B, RK, dtype=w.dtype, device=w.device).scatter_add_(1, column, w_runs)  # exact sums
    values = w_runs / mass.gather(1, column).clamp(min=1e-300)
    means = torch.zeros(B, U, RK, dtype=w.dtype, device=w.device).scatter_(2, column.reshape(B, R, U).transpose(1, 2),
                                             values.reshape(B, R, U).transpose(1, 2))
    has_members = mass > 0
    return means if bool(has_members.all()) else torch.where(has_members[:, None, :], means, alpha)


def _relocate_empty(w: torch.Tensor, labels: torch.Tensor, closest: torch.Tensor, valid: torch.Tensor
                    ) -> torch.Tensor:
    """Move the points farthest from their centres into empty clusters (rare, so a plain loop)."""
    K = valid.shape[1]
    real = w > 0
    B, R, U = labels.shape
    counts = torch.zeros(B, R, K, dtype=torch.int64, device=w.device).scatter_add_(
        2, labels, real[:, None, :].expand(B, R, U).to(torch.int64))  # [B, R, K] real members
    empty = (counts == 0) & valid[:, None, :]
    if not bool(empty.any()):
        return labels
    labels = labels.clone()
    for b, r in empty.any(dim=2).nonzero().tolist():
        missing = empty[b, r].nonzero()[:, 0]
        n_move = min(len(missing), int(real[b].sum()))
        far = torch.topk(closest[b, r].masked_fill(~real[b], -math.inf), n_move).indices
        labels[b, r, far] = missing[:n_move]
    return labels

"""k-medoids on cycle patterns and GUST's per-cycle scores (GUST spec §5, §10 items 7 and 9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score

from workbench.binding.kmedoids import (
    cycle_scores,
    kmedoids_cycles,
    kmedoids_draws,
    pattern_distances,
    reference_kpp_init,
)
from workbench.metrics import encode_cycles, victor_purpura, vp_cycle_table

T = 10


def synthetic_cycles(P: int, N: int = 196, n_obj: int = 3, noise: float = 0.3, seed: int = 0):
    """GUST-like cycles: object pixels fire once in their object's slot (or a random slot / not at all
    with probability ``noise``), background is silent; a few pixels fire at slots 0 and 9."""
    g = np.random.default_rng(seed)
    labels = np.zeros((P, N), dtype=np.int64)
    pats = np.zeros((P, N, T), dtype=bool)
    for p in range(P):
        on = g.choice(N, size=N // 2, replace=False)
        labels[p, on] = g.integers(0, n_obj + 1, size=on.size)  # 0 here = overlap (on but unlabelled)
        slots = g.permutation(T)[: n_obj + 1]
        for px in on:
            r = g.random()
            if r < 1 - noise:
                pats[p, px, slots[labels[p, px]]] = True
            elif r < 1 - noise / 3:
                pats[p, px, g.integers(T)] = True
            elif r < 1 - noise / 6:
                pats[p, px, [0, 9]] = True
    return torch.from_numpy(pats), torch.from_numpy(labels)


# --- plain-Python reference of the algorithm (scikit-learn-extra's KMedoids, alternate, k-medoids++) ----


def ref_alternate(D: np.ndarray, medoids: list[int], max_iter: int = 300) -> tuple[np.ndarray, list[int], int]:
    medoids = list(medoids)
    K, n = len(medoids), 0
    for n in range(1, max_iter + 1):
        old = list(medoids)
        labels = [min(range(K), key=lambda k: (D[medoids[k], i], k)) for i in range(D.shape[0])]
        for k in range(K):
            members = [i for i in range(D.shape[0]) if labels[i] == k]
            if not members:
                continue
            costs = [sum(D[i, j] for j in members) for i in members]
            best = min(range(len(members)), key=lambda m: (costs[m], members[m]))
            if costs[best] < costs[members.index(medoids[k])]:
                medoids[k] = members[best]
        if medoids == old:
            break
    labels = np.array([min(range(K), key=lambda k: (D[medoids[k], i], k)) for i in range(D.shape[0])])
    return labels, medoids, n


def hamming(pats: torch.Tensor) -> np.ndarray:
    x = pats.numpy().astype(np.int64)
    return (x[:, None, :] != x[None, :, :]).sum(-1).astype(np.float64)


# --- distances -------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [3.0, 1 / 3, 0.0])
def test_table_equals_textbook_dp_on_random_pairs(q):
    """10^4 random pattern pairs here; all 1024^2 pairs in bench/gust_bench.py (--vp-check)."""
    table = vp_cycle_table(T, q)
    g = np.random.default_rng(1)
    a, b = g.integers(0, 1024, 10_000), g.integers(0, 1024, 10_000)
    times = [np.flatnonzero((c >> np.arange(T)) & 1) for c in range(1024)]
    want = np.array([victor_purpura(times[i], times[j], q) for i, j in zip(a, b)])
    np.testing.assert_allclose(table[a, b].numpy(), want, atol=1e-12)


def test_hamming_path_equals_q3_table_on_all_pairs():
    codes = torch.arange(1024)
    ham = pattern_distances(codes[:, None], codes[None, :], 3.0, T)
    assert torch.equal(ham, vp_cycle_table(T, 3.0))
    assert torch.equal(pattern_distances(codes[:, None], codes[None, :], 1 / 3, T), vp_cycle_table(T, 1 / 3))


# --- k-medoids against the reference ------------------------------------------------------------


def test_alternate_equals_reference_given_identical_initial_medoids():
    pats, labels = synthetic_cycles(50, N=120, seed=3)
    K = labels.max(1).values + 1
    g = np.random.default_rng(4)
    init = torch.from_numpy(np.stack([g.choice(120, size=4, replace=False) for _ in range(50)]))
    res = kmedoids_cycles(pats, K, init=init)
    n_multi = 0
    for p in range(50):
        D = hamming(pats[p])
        want, meds, n = ref_alternate(D, init[p, : int(K[p])].tolist())
        assert np.array_equal(res.labels[p].numpy(), want), p
        assert res.medoids[p, : int(K[p])].tolist() == meds
        assert int(res.n_iter[p]) == n
        n_multi += n > 1
    assert n_multi >= 5  # the comparison exercised medoid moves, not just the init


def test_kmedoids_pp_init_equals_reference_with_the_same_draws():
    pats, labels = synthetic_cycles(30, N=100, n_obj=3, seed=5)
    K = labels.max(1).values + 1
    draws = kmedoids_draws(torch.zeros(30, dtype=torch.int64), torch.arange(30), torch.full((30,), 7), 4)
    res = kmedoids_cycles(pats, K, draws=draws)
    for p in range(30):
        D = hamming(pats[p])
        init = reference_kpp_init(D, int(K[p]), draws[p].numpy())
        want, meds, _ = ref_alternate(D, init)
        assert np.array_equal(res.labels[p].numpy(), want), p
        assert res.medoids[p, : int(K[p])].tolist() == meds


def test_kmedoids_handles_silent_and_duplicate_patterns():
    pats = torch.zeros(2, 50, T, dtype=torch.bool)
    pats[1, :25, 4] = True  # two distinct patterns, K = 4 > patterns
    res = kmedoids_cycles(pats, 4, seeds=1)
    assert (res.labels[0] == 0).all()
    assert len(set(res.labels[1, :25].tolist())) == 1 and len(set(res.labels[1, 25:].tolist())) == 1
    assert res.labels[1, 0] != res.labels[1, 30]


def test_kmedoids_rejects_bad_k():
    pats = torch.zeros(2, 5, T, dtype=torch.bool)
    with pytest.raises(ValueError, match="k must be"):
        kmedoids_cycles(pats, 9)


# --- scores -----------------------------------------------------------------------------------------


def _record_from_cycles(pats: torch.Tensor, B: int) -> torch.Tensor:
    """[B*C, N, T] patterns -> spikes [C*T, B, N] (cycle-major time)."""
    P, N, _ = pats.shape
    C = P // B
    return pats.reshape(B, C, N, T).permute(1, 3, 0, 2).reshape(C * T, B, N)


def test_synscore_matches_sklearn_silhouette():
    pats, labels = synthetic_cycles(8, N=150, seed=7)
    spikes = _record_from_cycles(pats, 8)  # one cycle per image
    res = cycle_scores(spikes, labels, cycles=[0], keep_pred=True)
    table = vp_cycle_table(T, 1 / 3).numpy()
    checked = 0
    for b in range(8):
        keep = labels[b].numpy() != 0
        codes = encode_cycles(pats[b]).numpy()[keep]
        pred = res.pred[b, 0].numpy()[keep]
        if len(set(pred.tolist())) < 2:
            assert np.isnan(res.synscore[b, 0])
            continue
        want = silhouette_score(table[codes[:, None], codes[None, :]], pred, metric="precomputed")
        assert abs(res.synscore[b, 0] - want) < 1e-6
        checked += 1
    assert checked >= 6


def test_scores_of_perfectly_phased_objects_and_of_a_silent_cycle():
    N, B = 60, 2
    labels = torch.zeros(B, N, dtype=torch.int64)
    labels[:, :15], labels[:, 15:30], labels[:, 30:45] = 1, 2, 3
    spikes = torch.zeros(2 * T, B, N, dtype=torch.bool)  # cycle 0 silent
    for obj, slot in ((1, 2), (2, 5), (3, 8)):
        spikes[T + slot, :, (labels[0] == obj)] = True
    res = cycle_scores(spikes, labels, cycles=[0, 1])
    assert np.allclose(res.ami[:, 1], 1.0) and np.allclose(res.synscore[:, 1], 1.0)
    assert np.allclose(res.ami[:, 0], 0.0) and np.all(res.synscore[:, 0] == 0.0)
    assert res.n_nan == 0


def test_single_predicted_cluster_among_objects_is_nan():
    N = 40
    labels = torch.zeros(1, N, dtype=torch.int64)
    labels[0, :10], labels[0, 10:20] = 1, 2
    spikes = torch.zeros(T, 1, N, dtype=torch.bool)
    spikes[3, 0, :10] = True  # two volleys, but k = 1 puts every pixel into one cluster
    spikes[6, 0, 10:20] = True
    res = cycle_scores(spikes, labels, cycles=[0], k=1)
    assert np.isnan(res.synscore[0, 0]) and res.n_nan == 1


def test_scores_do_not_depend_on_batch_size():
    pats, labels = synthetic_cycles(12, N=100, seed=9)  # 6 images x 2 cycles
    spikes = _record_from_cycles(pats, 6)
    lab = labels[::2]
    seeds = torch.tensor([0, 0, 0, 1, 1, 1])
    ids = torch.tensor([4, 8, 15, 4, 8, 15])
    whole = cycle_scores(spikes, lab, cycles=[0, 1], seeds=seeds, image_ids=ids, keep_pred=True)
    for lo, hi in ((0, 1), (1, 4), (4, 6)):
        part = cycle_scores(spikes[:, lo:hi], lab[lo:hi], cycles=[0, 1], seeds=seeds[lo:hi], image_ids=ids[lo:hi],
                            keep_pred=True)
        assert torch.equal(part.pred, whole.pred[lo:hi])
        np.testing.assert_array_equal(part.ami, whole.ami[lo:hi])
        np.testing.assert_array_equal(part.synscore, whole.synscore[lo:hi])
    other = cycle_scores(spikes, lab, cycles=[0, 1], seeds=seeds + 5, image_ids=ids, keep_pred=True)
    assert not torch.equal(other.pred, whole.pred)  # the seed matters


def test_off_slot_pixels_join_the_silent_cluster_and_are_counted_as_silent_share():
    # 3 objects of 15 pixels: 12 fire on the object's slot, 3 one slot later (nobody else's slot), 15 silent
    # background pixels. Hamming puts each late pixel 1 from silence and 2 from its medoid: in the best
    # grouping it joins the silent cluster, which mixes all three objects, while the on-slot pixels stay
    # perfectly grouped. One k-medoids run can stop in a worse grouping, so 8 seeds are scored.
    N, B = 60, 8
    labels = torch.zeros(B, N, dtype=torch.int64)
    spikes = torch.zeros(T, B, N, dtype=torch.bool)
    for obj, slot in ((1, 1), (2, 4), (3, 7)):
        px = torch.arange(15 * (obj - 1), 15 * obj)
        labels[:, px] = obj
        spikes[slot, :, px[:12]] = True
        spikes[slot + 1, :, px[12:]] = True
    res = cycle_scores(spikes, labels, cycles=[0], seeds=torch.arange(B), keep_pred=True)
    pred = res.pred[:, 0].numpy()
    late = np.concatenate([np.arange(15 * o + 12, 15 * o + 15) for o in range(3)])
    best = 0
    for b in range(B):
        with_silent = pred[b, :45] == pred[b, 45]  # the background's cluster
        assert res.silent_share[b, 0] == pytest.approx(with_silent.mean())
        if with_silent[late].all() and not with_silent[np.setdiff1d(np.arange(45), late)].any():
            best += 1
            assert res.silent_share[b, 0] == pytest.approx(9 / 45) and res.unfired_share[b, 0] == 0.0
            assert res.bound_ami[b, 0] == pytest.approx(1.0)
            assert res.ami[b, 0] < 0.9  # the mixed cluster is what costs AMI
    assert best >= 4, best


def test_silent_share_is_zero_without_silent_pixels_and_bound_ami_nan_when_all_are_grouped_silent():
    labels = torch.tensor([[1, 1, 2, 2]])
    spikes = torch.zeros(2 * T, 1, 4, dtype=torch.bool)
    spikes[T + 2, 0, :2] = True  # cycle 1: every pixel fires; cycle 0: all silent
    spikes[T + 6, 0, 2:] = True
    res = cycle_scores(spikes, labels, cycles=[0, 1])
    assert res.silent_share[0, 1] == 0.0 and res.bound_ami[0, 1] == pytest.approx(1.0)
    assert res.silent_share[0, 0] == 1.0 and np.isnan(res.bound_ami[0, 0])
    assert list(res.unfired_share[0]) == [1.0, 0.0]

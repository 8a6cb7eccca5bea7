"""Metrics: AMI/ARI conventions, exact Victor-Purpura paths, silhouette vs sklearn, smoothing."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, silhouette_score

from workbench.metrics import (
    ami,
    ami_batch,
    ari,
    clustering_score,
    encode_cycles,
    rate_score,
    silhouette,
    smooth_trains,
    synchrony_score,
    victor_purpura,
    victor_purpura_matrix,
    vp_cycle_table,
)

QS = [0.0, 1 / 6, 1 / 3, 1.0, 3.0]


def spike_times(train):
    return torch.nonzero(torch.as_tensor(train)).flatten().tolist()


# --- AMI / ARI -----------------------------------------------------------------------------------


def test_ami_scores_only_labelled_pixels():
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 2])
    pred = np.array([5, 6, 1, 1, 3, 3, 1, 1])
    keep = labels != 0
    assert ami(labels, pred) == pytest.approx(adjusted_mutual_info_score(labels[keep], pred[keep]))
    assert ami(labels, pred, ignore_label=None) == pytest.approx(adjusted_mutual_info_score(labels, pred))
    assert ami(labels, pred, average_method="max") == pytest.approx(
        adjusted_mutual_info_score(labels[keep], pred[keep], average_method="max")
    )


def test_ami_perfect_grouping_ignores_background_cluster():
    labels = torch.tensor([[0, 1, 1], [2, 2, 0]])  # [H, W] images work too
    pred = torch.tensor([[9, 4, 4], [7, 7, 4]])
    assert ami(labels, pred) == pytest.approx(1.0)


def test_ami_no_labelled_pixel_is_nan():
    assert math.isnan(ami(np.zeros(5), np.arange(5)))


def test_ami_batch_matches_per_image():
    rng = np.random.default_rng(0)
    labels, pred = rng.integers(0, 4, (6, 50)), rng.integers(0, 4, (6, 50))
    expected = [ami(labels[b], pred[b]) for b in range(6)]
    np.testing.assert_allclose(ami_batch(labels, pred), expected)
    with pytest.raises(ValueError, match="B, N"):
        ami_batch(labels[0], pred[0])


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4,\).*\(5,\)"):
        ami(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        ari(np.zeros((2, 3)), np.zeros((3, 2)))


def test_ari_with_and_without_background():
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 0, 1, 1, 2, 2])
    assert ari(labels, pred) == pytest.approx(1.0)
    assert ari(labels, pred, include_background=True) == pytest.approx(adjusted_rand_score(labels, pred))


# --- Victor-Purpura ------------------------------------------------------------------------------


def test_victor_purpura_hand_cases():
    assert victor_purpura([], [], 1.0) == 0.0
    assert victor_purpura([], [1, 5], 0.5) == 2.0
    assert victor_purpura([2], [6], 0.25) == pytest.approx(1.0)  # shift 4 steps at 0.25
    assert victor_purpura([2], [6], 1.0) == 2.0  # delete + insert is cheaper than a shift of 4
    assert victor_purpura([7, 1], [1, 7], 0.3) == 0.0  # times are sorted first
    assert victor_purpura([1, 2, 3], [10], 0.0) == 2.0  # q = 0: |n_a - n_b|


def _random_trains(gen, n, T, p, n_empty=3):
    trains = torch.rand(n, T, generator=gen) < p
    trains[:n_empty] = False
    if T <= 12:
        trains[n_empty] = True  # a full train
    return trains


@pytest.mark.parametrize("q", QS)
def test_vp_matrix_equals_dp_exactly(q):
    """>= 10^4 pairs per q, T from 1 to 300, empty trains included; auto path and forced DP path."""
    gen = torch.Generator().manual_seed(int(q * 1000) + 7)
    pairs = 0
    for T in [1, 2, 3, 5, 10, 11, 37, 120, 300]:
        trains = _random_trains(gen, 34, T, min(0.5, 10 / T))
        times = [spike_times(t) for t in trains]
        expected = torch.tensor([[victor_purpura(a, b, q) for b in times] for a in times], dtype=torch.float64)
        for method in ("auto", "dp"):
            got = victor_purpura_matrix(trains, q, method=method)
            assert got.dtype == torch.float64
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)
        pairs += len(times) ** 2
    assert pairs >= 10_000


def test_vp_matrix_shortcuts_agree_with_dp():
    gen = torch.Generator().manual_seed(1)
    trains = _random_trains(gen, 60, 50, 0.2)
    counts = trains.sum(1).double()
    both = trains.double() @ trains.double().T
    # q >= 2: a shift of >= 1 step costs >= delete + insert, so only coincident spikes pair up.
    for q in (2.0, 3.0, 10.0):
        expected = counts[:, None] + counts[None, :] - 2 * both
        torch.testing.assert_close(victor_purpura_matrix(trains, q, method="dp"), expected)
    torch.testing.assert_close(victor_purpura_matrix(trains, 0.0), (counts[:, None] - counts[None, :]).abs())


def test_vp_matrix_realistic_sparsity_subset():
    """784 pixels x 300 steps, ~15 % active: check a random subset of pairs against the DP."""
    gen = torch.Generator().manual_seed(3)
    active = torch.rand(784, generator=gen) < 0.15
    trains = (torch.rand(784, 300, generator=gen) < 1 / 20) & active[:, None]
    dist = victor_purpura_matrix(trains, 1 / 6)
    assert torch.equal(dist, dist.T) and not dist.diagonal().any()
    act = torch.nonzero(active).flatten()
    active_pairs = act[torch.randint(0, len(act), (300, 2), generator=gen)]
    pairs = torch.cat([active_pairs, torch.randint(0, 784, (100, 2), generator=gen)])
    for a, b in pairs.tolist():
        expected = victor_purpura(spike_times(trains[a]), spike_times(trains[b]), 1 / 6)
        assert dist[a, b].item() == pytest.approx(expected, abs=1e-9)


def test_vp_matrix_validates_input():
    with pytest.raises(ValueError, match=r"\[N, T\]"):
        victor_purpura_matrix(torch.zeros(3, 4, 5, dtype=torch.bool), 1.0)
    with pytest.raises(ValueError, match="binary"):
        victor_purpura_matrix(torch.full((2, 3), 2), 1.0)
    with pytest.raises(ValueError, match="q"):
        victor_purpura_matrix(torch.zeros(2, 3), -1.0)
    with pytest.raises(ValueError, match="method"):
        victor_purpura_matrix(torch.zeros(2, 3), 1.0, method="fast")


def test_vp_matrix_accepts_numpy_and_all_empty():
    dist = victor_purpura_matrix(np.zeros((4, 7)), 1 / 3)
    assert dist.shape == (4, 4) and not dist.any()


# --- short cycles: tables ------------------------------------------------------------------------


def test_encode_cycles_bit_order_and_batch_shape():
    trains = torch.tensor([[1, 0, 0], [0, 0, 1], [1, 1, 1]])
    assert encode_cycles(trains).tolist() == [1, 4, 7]
    assert encode_cycles(torch.zeros(2, 5, 10)).shape == (2, 5)
    with pytest.raises(ValueError, match="62"):
        encode_cycles(torch.zeros(2, 63))


def _vp_rows_reference(a, na, b, nb, q):
    """Independent vectorised check: the row recurrence with a prefix minimum, pads masked out.

    f[i, j] = j + cummin_k<=j (g[k] - k), g[j] = min(f[i-1, j-1] + q|a_i - b_j|, f[i-1, j] + 1), g[0] = i.
    Pairs are rows of a [P, M], b [P, M]; rows of f beyond n_a are frozen by masking.
    """
    P, M = a.shape
    k = torch.arange(M + 1, dtype=torch.float64)
    f = k.expand(P, M + 1).clone()
    for i in range(1, M + 1):
        g = torch.empty_like(f)
        g[:, 0] = i
        g[:, 1:] = torch.minimum(f[:, :-1] + q * (a[:, i - 1 : i] - b).abs(), f[:, 1:] + 1)
        new = k + torch.cummin(g - k, dim=1).values
        f = torch.where((i <= na)[:, None], new, f)
    return f.gather(1, nb[:, None]).squeeze(1)


@pytest.mark.parametrize("q", [3.0, 1 / 3, 0.0])
def test_cycle_table_equals_dp_on_all_pairs(q):
    table = vp_cycle_table(10, q)
    assert table.shape == (1024, 1024) and table.dtype == torch.float64
    patterns = ((torch.arange(1024)[:, None] >> torch.arange(10)) & 1).bool()
    counts = patterns.sum(1)
    times = torch.where(patterns, torch.arange(10), 99).sort(1).values.double()  # spike times first, pads after
    for rows in torch.arange(1024).split(256):  # all 1024^2 pairs, 256 rows at a time
        a, b = rows[:, None].expand(-1, 1024).flatten(), torch.arange(1024).repeat(len(rows))
        ref = _vp_rows_reference(times[a], counts[a], times[b], counts[b], q)
        torch.testing.assert_close(table[a, b], ref, rtol=0, atol=1e-9)
    if q == 3.0:
        hamming = (patterns[:, None, :] ^ patterns[None, :, :]).sum(-1).double()
        assert torch.equal(table, hamming)
    gen = torch.Generator().manual_seed(5)
    for a, b in torch.randint(0, 1024, (5000, 2), generator=gen).tolist():
        expected = victor_purpura(spike_times(patterns[a]), spike_times(patterns[b]), q)
        assert table[a, b].item() == pytest.approx(expected, abs=1e-9)


def test_table_lookup_path_matches_dp_path():
    gen = torch.Generator().manual_seed(2)
    trains = torch.rand(200, 10, generator=gen) < 0.3
    table, dp = (victor_purpura_matrix(trains, 1 / 3, method=m) for m in ("table", "dp"))
    torch.testing.assert_close(table, dp, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="slots"):
        vp_cycle_table(13, 1.0)


def test_cycle_table_is_a_copy():
    t = vp_cycle_table(3, 0.5)
    t.fill_(-1)
    assert vp_cycle_table(3, 0.5).min() == 0


# --- silhouette ----------------------------------------------------------------------------------


def _random_dist(rng, n):
    x = rng.normal(size=(n, 3))
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


@pytest.mark.parametrize("seed", range(6))
def test_silhouette_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 40
    dist = _random_dist(rng, n)
    pred = rng.integers(0, 2 + seed, n)
    pred[0] = 99  # a singleton cluster: s = 0 in both
    if seed % 2:
        dist[:10, :10] = 0.0  # a block of identical points: 0/0 cases
    assert silhouette(dist, pred) == pytest.approx(silhouette_score(dist, pred, metric="precomputed"), abs=1e-6)


def test_silhouette_undefined_and_degenerate_cases():
    dist = _random_dist(np.random.default_rng(0), 5)
    assert math.isnan(silhouette(dist, np.zeros(5)))  # one cluster (sklearn raises)
    assert silhouette(dist, np.arange(5)) == 0.0  # all singletons (sklearn raises)
    assert silhouette(np.zeros((4, 4)), [0, 0, 1, 1]) == 0.0  # silent cycle: all distances 0
    with pytest.raises(ValueError, match="diagonal"):
        silhouette(np.ones((3, 3)), [0, 1, 1])
    with pytest.raises(ValueError, match=r"\(4,\).*\(3, 3\)"):
        silhouette(np.zeros((3, 3)), [0, 1, 1, 0])


def test_silhouette_batched_with_mask_equals_per_item():
    rng = np.random.default_rng(1)
    dist = np.stack([_random_dist(rng, 30) for _ in range(4)])
    pred = rng.integers(0, 3, (4, 30))
    mask = rng.random((4, 30)) < 0.7
    mask[3] = False
    mask[3, :2] = True
    pred[3, :2] = 0  # only one cluster among scored points -> NaN
    got = silhouette(dist, pred, mask=mask)
    for b in range(3):
        keep = mask[b]
        assert got[b].item() == pytest.approx(silhouette(dist[b][np.ix_(keep, keep)], pred[b][keep]), abs=1e-12)
    assert math.isnan(got[3].item())


# --- synchrony / rate / clustering scores ----------------------------------------------------------


def test_synchrony_score_separates_synchronous_groups():
    T = 32
    trains = torch.zeros(8, T, dtype=torch.bool)
    trains[0:3, [2, 12, 22]] = True  # group 1 fires together
    trains[3:6, [7, 17, 27]] = True  # group 2, half a period later
    labels = torch.tensor([1, 1, 1, 2, 2, 2, 0, 0])
    good, bad = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1]), torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    assert synchrony_score(trains, good, labels) == pytest.approx(1.0)
    assert synchrony_score(trains, bad, labels) < 0
    assert rate_score(trains, good, labels) == 0.0  # equal rates: all count distances are 0
    assert math.isnan(synchrony_score(trains, torch.zeros(8), labels))
    assert math.isnan(synchrony_score(trains, good, torch.zeros(8)))  # no labelled pixel


def test_scores_match_sklearn_on_labelled_pixels():
    gen = torch.Generator().manual_seed(4)
    trains = torch.rand(50, 40, generator=gen) < 0.15
    labels = torch.randint(0, 4, (50,), generator=gen)
    pred = torch.randint(0, 3, (50,), generator=gen)
    keep = labels != 0
    for q in (1 / 6, 0.0):
        dist = victor_purpura_matrix(trains[keep], q).numpy()
        expected = silhouette_score(dist, pred[keep].numpy(), metric="precomputed")
        assert synchrony_score(trains, pred, labels, q=q) == pytest.approx(expected, abs=1e-6)
    features = smooth_trains(trains)
    expected = silhouette_score(features[keep].numpy(), pred[keep].numpy())
    assert clustering_score(features, pred, labels) == pytest.approx(expected, abs=1e-6)
    assert clustering_score(features, pred) == pytest.approx(silhouette_score(features.numpy(), pred.numpy()), abs=1e-6)


def test_score_shape_errors():
    with pytest.raises(ValueError, match=r"\(3,\).*\(4, 5\)"):
        synchrony_score(torch.zeros(4, 5), torch.zeros(3))
    with pytest.raises(ValueError, match="labels and pred"):
        synchrony_score(torch.zeros(4, 5), torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[N, F\]"):
        clustering_score(torch.zeros(4), torch.zeros(4))


# --- smoothing -----------------------------------------------------------------------------------


def test_smooth_trains_drops_terms_before_window():
    s = torch.tensor([[1, 0, 1, 1, 0]])
    torch.testing.assert_close(smooth_trains(s), torch.tensor([[1.0, 0.5, 1.0, 1.5, 0.5]]))
    torch.testing.assert_close(smooth_trains(s, m=3), torch.tensor([[1.0, 0.5, 1.25, 1.5, 0.75]]))
    torch.testing.assert_close(smooth_trains(s, m=1), s.float())
    assert smooth_trains(torch.zeros(2, 3, 4, dtype=torch.bool)).shape == (2, 3, 4)
    assert smooth_trains(torch.ones(1, 1), m=5).item() == 1.0
    with pytest.raises(ValueError, match="m"):
        smooth_trains(s, m=0)

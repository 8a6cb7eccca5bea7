"""Data behind DASBE Fig 2 / Fig 3 (workbench.experiments.dasbe_figures): each view checked on hand-made records
whose answer is known, the Fig 2 run on a tiny Shapes file, and the Fig 3 helpers on synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.data.sprites import INVERTED_TRIANGLE, SQUARE, TRIANGLE
from workbench.data.store import write_splits
from workbench.experiments import dasbe_figures as f
from workbench.record import SpikeRecord

D = 10


def paint(objects, shape=(28, 28)):
    """Label map with sprite k+1 at (row, col); later objects overwrite, as the generators do."""
    lab = np.zeros(shape, dtype=np.int64)
    for k, (sprite, r, c) in enumerate(objects, start=1):
        h, w = sprite.shape
        lab[r:r + h, c:c + w][sprite] = k
    return lab


def slot_record(K=4, B=2):
    """3x4 pixels: object 1 = pixels 0-3 fires in slot 2, object 2 = pixels 4-7 in slot 6 of every iteration,
    pixels 8-9 are overlap (label 0, image on) and fire in slot 6 of the last iteration only, 10-11 background."""
    N = 12
    spikes = torch.zeros(K * D, B, N, dtype=torch.bool)
    for k in range(K):
        spikes[k * D + 2, :, 0:4] = True
        spikes[k * D + 6, :, 4:8] = True
    spikes[(K - 1) * D + 6, :, 8:10] = True
    labels = torch.tensor([1] * 4 + [2] * 4 + [0] * 4).repeat(B, 1)
    images = torch.tensor([1.0] * 10 + [0.0] * 2).repeat(B, 1)
    return SpikeRecord(spikes, image_shape=(3, 4), cycle=D, labels=labels, images=images, meta={"r": 3})


# --- picking the Fig 2 image ----------------------------------------------------------------------------


def test_shape_kinds_names_visible_sprites_and_flags_hidden_ones():
    lab = paint([(INVERTED_TRIANGLE, 0, 0), (SQUARE, 10, 0), (TRIANGLE, 20, 10)])
    assert f.shape_kinds(lab) == ["inverted_triangle", "square", "triangle"]
    assert f.shape_kinds(lab.reshape(-1), (28, 28)) == ["inverted_triangle", "square", "triangle"]
    hidden = paint([(SQUARE, 0, 0), (SQUARE, 3, 3)])  # the second square covers part of the first
    assert f.shape_kinds(hidden) == [None, "square"]
    lab[lab == 2] = 0  # object 2 absent
    assert f.shape_kinds(lab) == ["inverted_triangle", None, "triangle"]
    with pytest.raises(ValueError, match="one \\[H, W\\] label map"):
        f.shape_kinds(np.zeros((2, 28, 28), dtype=int))


def test_find_shapes_image_returns_the_first_match(tmp_path):
    maps = [paint([(SQUARE, 0, 0), (TRIANGLE, 10, 10), (INVERTED_TRIANGLE, 20, 0)]),
            paint([(INVERTED_TRIANGLE, 0, 0), (INVERTED_TRIANGLE, 0, 14), (SQUARE, 15, 5)]),
            paint([(SQUARE, 0, 0), (INVERTED_TRIANGLE, 10, 10), (INVERTED_TRIANGLE, 20, 0)])]
    labels = np.stack(maps)
    path = write_splits(tmp_path / "s.h5", {"train_multi": ((labels > 0).astype(np.float32), labels)})
    assert f.find_shapes_image(path) == 1
    assert f.find_shapes_image(path, start=2) == 2
    assert f.find_shapes_image(path, ("square", "triangle", "inverted_triangle")) == 0
    with pytest.raises(ValueError, match="no image"):
        f.find_shapes_image(path, ("triangle", "triangle"))
    with pytest.raises(ValueError, match="kinds"):
        f.find_shapes_image(path, ("circle",))


# --- views of a record -------------------------------------------------------------------------------


def test_slot_maps_and_group_counts_match_the_spikes():
    rec = slot_record()
    maps = f.slot_spike_maps(rec, 1, [0, -1])
    assert maps.shape == (2, D, 3, 4) and maps.dtype == bool
    assert maps[0, 2].reshape(-1)[:4].all() and maps[0, 2].sum() == 4
    assert maps[1, 6].sum() == 6 and maps[0, 6].sum() == 4  # the overlap pixels fire only in the last iteration
    counts = f.slot_group_counts(rec, 0)
    assert counts.shape == (4, D, 3)
    assert counts[:, 2, 1].tolist() == [4] * 4 and counts[:, 6, 2].tolist() == [4] * 4
    assert counts[-1, 6, 0] == 2 and counts[:-1, :, 0].sum() == 0
    assert f.slot_purity(counts).tolist() == [1.0] * 4  # label 0 does not count against purity
    mixed = counts.copy()
    mixed[0, 2, 2] = 4  # iteration 0: slot 2 now holds 4 + 4 spikes of two objects
    assert f.slot_purity(mixed)[0] == pytest.approx((4 + 4) / 12)
    assert np.isnan(f.slot_purity(np.zeros((1, D, 3))))[0]
    with pytest.raises(IndexError):
        f.slot_spike_maps(rec, 0, [4])


def test_spike_map_iterations():
    assert f.spike_map_iterations(30) == [0, 1, 2, 27, 28, 29]
    assert f.spike_map_iterations(4) == [0, 1, 2, 3]


def test_volley_stats_find_each_volley():
    rec = slot_record()
    v = f.volley_stats(rec, 0, iterations=3)
    assert v.steps[0] == D and len(v.steps) == 3 * D
    assert v.peaks.tolist() == [12, 16, 22, 26, 32, 36]
    assert v.intervals.tolist() == [4, 6, 4, 6, 4] and v.heights.tolist() == [4, 4, 4, 4, 4, 6]
    obj = f.volley_stats(rec, 0, group=2, iterations=3)
    assert obj.intervals.tolist() == [10, 10] and obj.heights.tolist() == [4, 4, 4]
    s = f.volley_summary(rec, iterations=3)
    assert s["object 1"]["median_interval"] == 10 and s["object 1"]["volleys"] == 2 * 3
    assert s["population"]["median_peak"] == 4 and s["population"]["rows"] == 2
    with pytest.raises(ValueError, match="no pixel"):
        f.volley_stats(rec, 0, group=7)


def test_volley_stats_threshold_and_flat_tops():
    spikes = torch.zeros(2 * D, 1, 6, dtype=torch.bool)
    spikes[3, 0, :6] = True  # a volley of 6
    spikes[4, 0, :6] = True  # flat top: counted once, at its first step
    spikes[8, 0, :2] = True  # a small bump under half the maximum: not a volley
    spikes[15, 0, :4] = True
    v = f.volley_stats(SpikeRecord(spikes, cycle=D), 0, iterations=2)
    assert v.peaks.tolist() == [3, 15] and v.threshold == 3.0


def test_example_neurons_draw_per_object():
    rec = slot_record()
    ex = f.example_neurons(rec, 1, per_group=3, seed=5)
    assert ex.N == 6 and ex.B == 1 and ex.labels[0].tolist() == [1, 1, 1, 2, 2, 2]
    pixels = ex.meta["pixels"]
    assert torch.equal(ex.spikes[:, 0], rec.spikes[:, 1][:, pixels])
    assert f.example_neurons(rec, 1, per_group=3, seed=5).meta["pixels"] == pixels
    assert f.example_neurons(rec, 0, per_group=10).N == 8  # an object smaller than per_group gives all its pixels


def test_on_pixel_record_drops_background():
    rec = slot_record()
    on = f.on_pixel_record(rec)
    assert on.N == 10 and on.meta["pixels"] == list(range(10))
    assert torch.equal(on.spikes, rec.spikes[:, :, :10]) and on.labels[0].tolist() == [1] * 4 + [2] * 4 + [0, 0]
    rec.images[1, 0] = 0.0
    with pytest.raises(ValueError, match="different images"):
        f.on_pixel_record(rec)


def brute_force_cofiring(S, alpha):
    T, P = S.shape
    C = np.zeros((P, P))
    for i in range(P):
        for j in range(P):
            for t in range(T):
                C[i, j] += S[t, i] * S[t, j] * (1 + alpha)
                C[i, j] += alpha * S[t, i] * (S[t + 1, j] if t + 1 < T else 0)
                C[i, j] += alpha * S[t, i] * (S[t - 1, j] if t >= 1 else 0)
    return C / C.max()


def test_cofiring_matrix_matches_the_formula_and_orders_by_label():
    g = torch.Generator().manual_seed(0)
    N, K = 9, 3
    spikes = torch.rand(K * D, 1, N, generator=g) < 0.3
    labels = torch.tensor([[2, 0, 1, 2, 1, 0, 3, 1, 2]])
    rec = SpikeRecord(spikes, cycle=D, labels=labels)
    cf = f.cofiring_matrix(rec, 0, back=2, alpha=0.5)
    assert cf.pixels.tolist() == [2, 4, 7, 0, 3, 8, 6] and cf.labels.tolist() == [1, 1, 1, 2, 2, 2, 3]
    S = spikes[D:, 0].numpy().astype(float)[:, cf.pixels]  # the last 2 iterations
    np.testing.assert_allclose(cf.matrix, brute_force_cofiring(S, 0.5), atol=1e-12)
    np.testing.assert_allclose(cf.matrix, cf.matrix.T)
    within, between = f.cofiring_matrix(slot_record(), 0).block_means()
    assert within == pytest.approx(1.0) and between == 0.0  # objects in slots 2 and 6 never meet


def test_population_autocorrelation_matches_the_definition():
    rec = slot_record(K=4)
    lags, rho, groups = f.population_autocorrelation(rec, 0, max_lag=12, back=None)
    assert lags.tolist() == list(range(-12, 13)) and groups.tolist() == [1, 2] and rho.shape == (2, 25)
    np.testing.assert_allclose(rho, rho[:, ::-1])  # symmetric
    assert rho[0, 12] == 1.0
    assert rho[0, 12 + 10] == pytest.approx(3 / 4)  # 3 of 4 volleys have a partner 10 steps later
    assert np.all(rho[:, 12 + 1:12 + 10] == 0)
    g = torch.Generator().manual_seed(1)
    spikes = torch.rand(3 * D, 1, 5, generator=g) < 0.4
    rec = SpikeRecord(spikes, cycle=D, labels=torch.tensor([[1, 1, 2, 2, 2]]))
    lags, rho, _ = f.population_autocorrelation(rec, 0, max_lag=19, back=2)
    n = spikes[D:, 0, 2:].sum(1).numpy().astype(float)
    expect = [np.dot(n[:len(n) - t], n[t:]) / np.dot(n, n) for t in range(20)]
    np.testing.assert_allclose(rho[1, 19:], expect)
    peak_lag, height = f.autocorrelation_side_peak(*f.population_autocorrelation(slot_record(), 0)[:2], min_lag=4)
    assert peak_lag.tolist() == [10, 10] and height.tolist() == [0.75, 0.75]  # back=10 > 4 iterations: all 4


def test_scores_over_time_summarises_rows():
    rec = slot_record(K=3, B=3)
    s = f.scores_over_time(rec, q=1 / 3)
    assert s["iterations"].tolist() == [0, 1, 2] and s["steps"].tolist() == [0, D, 2 * D]
    assert s["per_row"]["synchrony"].shape == (3, 3)
    np.testing.assert_allclose(s["mean"]["ami"], 1.0)  # two objects in two slots: perfectly grouped
    np.testing.assert_allclose(s["mean"]["synchrony"], 1.0)
    np.testing.assert_allclose(s["ci95"]["synchrony"], 0.0)


# --- the Fig 2 run ------------------------------------------------------------------------------------


def test_fig2_run_on_a_tiny_shapes_file(tmp_path):
    from workbench.models.presets import shipped_checkpoint

    if shipped_checkpoint("shapes") is None:
        pytest.skip("no shipped Shapes DAE")
    from workbench.data.datasets import make_dataset
    from workbench.experiments.dasbe import tiny_sizes

    path = make_dataset("shapes", tmp_path / "shapes.h5", sizes=tiny_sizes("shapes", 40), progress=False)
    assert f.find_shapes_image(path) == 37  # the notebook's default image
    rec = f.fig2_run(path, 37, seeds=[111, 112], params=f.fig2_params(3))
    assert rec.spikes.shape == (3 * 32, 2, 784) and rec.cycle == 32 and rec.meta["r"] == 9
    assert rec.meta["image_index"] == 37 and rec.meta["seeds"] == [111, 112]
    assert f.shape_kinds(rec.labels[0], (28, 28)) == ["inverted_triangle", "square", "inverted_triangle"]
    again = f.fig2_run(path, 37, seeds=[112], params=f.fig2_params(3))
    assert torch.equal(again.spikes[:, 0], rec.spikes[:, 1])  # row i is seed i, independent of the others
    assert not bool(rec.spikes[:, :, rec.images[0] == 0].any())  # background never fires
    with pytest.raises(ValueError, match="image_index"):
        f.fig2_run(path, 40, seeds=[1])


# --- Fig 3 helpers --------------------------------------------------------------------------------------


def test_robust_line_ignores_outliers():
    x = np.linspace(0, 1, 50)
    y = 2 * x + 0.5
    y[::10] += 5.0  # gross outliers
    slope, intercept = f.robust_line(x, y)
    assert slope == pytest.approx(2.0, abs=0.05) and intercept == pytest.approx(0.5, abs=0.05)
    assert np.isnan(f.robust_line([1, 1, 1], [1, 2, 3])[0])


def fake_result(n_iter=30, n_img=20, seed=0):
    rng = np.random.RandomState(seed)
    syn = rng.uniform(0, 1, (n_iter, n_img))
    km = 0.9 * syn + 0.05 + rng.normal(0, 0.02, syn.shape)
    rate = rng.uniform(-0.4, 0.2, syn.shape)
    syn[0, 0] = np.nan  # an undefined silhouette
    per = {"synchrony": syn.tolist(), "rate": rate.tolist(), "clustering": km.tolist(), "ami": km.tolist()}
    mean = {k: np.nanmean(np.asarray(v, float), axis=1).tolist() for k, v in per.items()}
    return {"per_image": per, "mean": mean, "image_indices": list(range(n_img)), "seed": 111, "q": 1 / 6,
            "correlation": {"clustering_vs_synchrony": 0.99, "clustering_vs_rate": 0.1}}


def test_fig3_scatter_subsamples_and_fits():
    res = {"bars": fake_result(), "corners": fake_result(seed=1)}
    pts = f.fig3_scatter(res, fraction=1 / 30, seed=3)
    p = pts["bars"]
    assert p["n_points"] == 599 and p["n_shown"] == 20 and len(p["synchrony"]) == 20
    assert np.isfinite(p["synchrony"]).all()
    assert p["fit_synchrony"][0] == pytest.approx(0.9, abs=0.02)
    syn = np.asarray(res["bars"]["per_image"]["synchrony"]).ravel()
    km = np.asarray(res["bars"]["per_image"]["clustering"]).ravel()
    keep = np.isfinite(syn)
    assert p["correlation"]["clustering_vs_synchrony"] == pytest.approx(np.corrcoef(km[keep], syn[keep])[0, 1])
    assert abs(p["correlation"]["clustering_vs_rate"]) < 0.2
    assert f.fig3_scatter(res, fraction=1 / 30, seed=3)["bars"]["synchrony"].tolist() == p["synchrony"].tolist()
    with pytest.raises(ValueError, match="per-image"):
        f.fig3_scatter({"bars": {"mean": {}}})


def test_fig3_comparison_puts_published_numbers_beside_ours():
    text = f.fig3_comparison({"bars": fake_result(), "shapes": fake_result(n_iter=6)})
    assert "synchrony (authors code)" in text and " 0.952" in text  # spec §7.2, Bars at iteration 29
    assert "authors' code: 0.989" in text and "~0.97" in text
    shapes = text.split("shapes (")[1]
    assert "authors code" not in shapes and "~0.85" in shapes
    assert "     29" not in shapes  # only the iterations that exist


def test_fig3_datasets_reports_what_is_missing(tmp_path):
    out = f.fig3_datasets(tmp_path, names=("bars", "mnist_shape", "multi_mnist"), n_multi=3, mnist=False)
    assert out["multi_mnist"] == f.MULTI_MNIST_NOTE
    given = f.fig3_datasets(tmp_path, names=("multi_mnist",), n_multi=3, mnist=False, daes={"multi_mnist": "b.pt"})
    assert given["multi_mnist"].startswith("not available: MNIST")  # a passed bcdae is used once MNIST is there
    assert out["mnist_shape"].startswith("not available: MNIST")
    from workbench.models.presets import shipped_checkpoint

    if shipped_checkpoint("bars") is not None:
        from workbench.data.store import list_splits

        assert out["bars"] == tmp_path / "bars.h5" and list_splits(out["bars"])["train_multi"][0] == 3

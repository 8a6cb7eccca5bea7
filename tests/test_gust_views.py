"""GUST figures (spec §5.5, §9): colourings, spike maps, labelled rasters, curves, the 3x3 table."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from widgets.grouping import hsv_to_rgb
from widgets.gust_views import (
    ami_decomposition_figure,
    colouring_strip,
    colouring_strip_figure,
    generalisation_figure,
    input_panel_figure,
    labelled_raster_figure,
    net_comparison_figure,
    overlap_figure,
    score_curves_figure,
    slot_offsets_figure,
    spike_map,
    spike_map_figure,
    training_curve_figure,
)
from workbench.experiments.gust import AUTHORS_CURVE
from workbench.record import SpikeRecord

T, H, W, CYC = 10, 4, 5, 30


def record(cycles: int = CYC) -> SpikeRecord:
    """2 samples; object 1 (pixels 0-4) fires at slot 2 of every cycle, object 2 (5-9) at slot 7."""
    spikes = torch.zeros(cycles * T, 2, H * W, dtype=torch.bool)
    for c in range(cycles):
        spikes[c * T + 2, :, 0:5] = True
        spikes[c * T + 7, :, 5:10] = True
    labels = torch.zeros(2, H * W, dtype=torch.int64)
    labels[:, 0:5], labels[:, 5:10] = 1, 2
    images = (labels > 0).float()
    return SpikeRecord(spikes, image_shape=(H, W), cycle=T, labels=labels, images=images, meta={"model": "gust"})


def test_colouring_uses_gust_weights_and_hues():
    ks, rgb = colouring_strip(record(), 0)
    assert ks == [0, 5, 10, 15, 20, 25, 29] and rgb.shape == (7, H, W, 3)
    for pixel, slot in ((0, 2), (7, 7)):
        weight = 0.25 * np.sin(2 * np.pi * (29 / 9 / 2) * slot / T + 0.2) + 0.75
        want = np.clip(weight * hsv_to_rgb(np.array((slot / T + 2 / 3) % 1.0)), 0, 1)
        np.testing.assert_allclose(rgb[3].reshape(-1, 3)[pixel], want, atol=1e-12)
    assert np.all(rgb[0].reshape(-1, 3)[12] == 0)  # a silent pixel is black
    assert isinstance(colouring_strip_figure(record(), 1), go.Figure)


def test_colouring_strip_keeps_only_cycles_the_record_has():
    ks, rgb = colouring_strip(record(cycles=6), 0)
    assert ks == [0, 5] and rgb.shape[0] == 2


def test_spike_map_places_each_slot_in_its_column():
    ks, m = spike_map(record(), 0)
    assert ks == [0, 1, 2, 27, 28, 29]
    assert m.shape == (6 * (H + 1) - 1, T * (W + 1) - 1, 3)
    tile = lambda r, t: m[r * (H + 1): r * (H + 1) + H, t * (W + 1): t * (W + 1) + W]  # noqa: E731
    assert tile(0, 2).reshape(-1, 3)[:5, :2].min() > 0.8 and tile(0, 2).reshape(-1, 3)[5:].max() == 0
    assert tile(4, 7).reshape(-1, 3)[5:10, 0].min() > 0.8 and tile(4, 3).max() == 0
    fig = spike_map_figure(record(), 0)
    assert len(fig.layout.yaxis.ticktext) == 6


def test_labelled_raster_has_a_row_per_group_and_counts():
    fig = labelled_raster_figure(record(), 0, cycles=(24, 25, 26, 27, 28, 29))
    names = [t.name for t in fig.data]
    assert "all pixels" in names and "object 1" in names and "object 2" in names
    total = next(t for t in fig.data if t.name == "all pixels")
    assert list(total.x) == list(range(240, 300)) and max(total.y) == 5
    with pytest.raises(ValueError, match="labels"):
        labelled_raster_figure(SpikeRecord(torch.zeros(20, 1, 20, dtype=torch.bool), (4, 5), cycle=10), 0)


def test_input_panel_shows_image_and_labels():
    fig = input_panel_figure(record(), 0)
    assert len(fig.data) == 2
    labels_rgb = np.asarray(fig.data[1].z)
    assert tuple(labels_rgb[0, 0]) == (255, 215, 0)  # label 1 in gold
    assert tuple(labels_rgb[-1, -1]) == (255, 255, 255)  # background white


def test_score_curves_draw_mean_band_and_dashed_authors_curve():
    result = {"steps": [20, 30, 40],
              "ami": {"mean": [0.1, 0.5, None], "ci_low": [0.0, 0.4, None], "ci_high": [0.2, 0.6, None]},
              "synscore": {"mean": [0.0, 0.4, 0.6], "ci_low": [0.0, 0.3, 0.5], "ci_high": [0.0, 0.5, 0.7]}}
    fig = score_curves_figure(result, authors=AUTHORS_CURVE)
    ami = next(t for t in fig.data if t.name == "AMI")
    assert list(ami.y[:2]) == [0.1, 0.5] and np.isnan(ami.y[2])
    dashed = [t for t in fig.data if t.line is not None and t.line.dash == "dash"]
    assert len(dashed) == 2 and list(dashed[0].x)[:2] == [20, 30] and len(dashed[0].x) == 29


def test_ami_decomposition_draws_three_curves_with_bands():
    curve = lambda m: {"mean": m, "ci_low": [v - 0.05 for v in m], "ci_high": [v + 0.05 for v in m]}  # noqa: E731
    result = {"steps": [20, 30], "ami": curve([0.3, 0.6]), "bound_ami": curve([0.8, 0.9]),
              "silent_share": curve([0.5, 0.25])}
    fig = ami_decomposition_figure(result)
    lines = {t.name: t for t in fig.data if t.mode == "lines"}
    assert list(lines["object pixels grouped with the silent pixels"].y) == [0.5, 0.25]
    assert lines["AMI of the other object pixels"].line.dash == "dot" and len(fig.data) == 6


def test_net_comparison_draws_one_banded_curve_per_net():
    curve = lambda m: {"mean": m, "ci_low": [v - 0.05 for v in m], "ci_high": [v + 0.05 for v in m]}  # noqa: E731
    results = {name: {"steps": [20, 30], "ami": curve(m), "synscore": curve([0.1, 0.2])}
               for name, m in (("recipe", [0.3, 0.6]), ("batch 64", [0.4, 0.7]))}
    fig = net_comparison_figure({"results": results})
    lines = {t.name: list(t.y) for t in fig.data if t.mode == "lines"}
    assert lines == {"recipe": [0.3, 0.6], "batch 64": [0.4, 0.7]} and len(fig.data) == 4
    assert fig.layout.yaxis.title.text == "AMI"
    with pytest.raises(ValueError, match="'ami' or 'synscore'"):
        net_comparison_figure({"results": results}, key="loss")


def test_slot_offsets_figure_centres_the_bars_on_the_modal_slot():
    fig = slot_offsets_figure({"slot_offsets": [0.7, 0.1, 0, 0, 0, 0, 0, 0, 0.05, 0.15]})
    bar = fig.data[0]
    assert list(bar.x) == [-4, -3, -2, -1, 0, 1, 2, 3, 4, 5]
    assert list(bar.y)[3:6] == [0.15, 0.7, 0.1]


def test_overlap_figure_draws_images_and_bin_means():
    by = {"overlap": [0, 0, 3, 20], "ami": [0.9, None, 0.7, 0.4], "synscore": [0.8, 0.9, 0.6, 0.5],
          "source": "overlap mask",
          "bins": [{"lo": 0, "hi": 1, "label": "0", "n": 2, "overlap_mean": 0.0, "ami": 0.9, "synscore": 0.85},
                   {"lo": 1, "hi": 16, "label": "1-15", "n": 1, "overlap_mean": 3.0, "ami": 0.7, "synscore": 0.6},
                   {"lo": 16, "hi": None, "label": "16+", "n": 1, "overlap_mean": 20.0, "ami": 0.4,
                    "synscore": 0.5}]}
    fig = overlap_figure(by)
    dots, ami, syn = fig.data
    assert list(dots.x) == [0, 0, 3, 20] and np.isnan(dots.y[1])
    assert list(ami.x) == [0, 3, 20] and list(ami.y) == [0.9, 0.7, 0.4] and list(syn.y) == [0.85, 0.6, 0.5]
    assert list(ami.text) == ["0 px: n = 2", "1-15 px: n = 1", "16+ px: n = 1"]
    with pytest.raises(ValueError, match="overlap counts"):
        overlap_figure({**by, "ami": [0.5]})


def test_generalisation_heatmaps_mark_missing_cells():
    table = {"train": [2, 3, 4], "test": [2, 3, 4],
             "ami": [[None] * 3, [0.7, 0.8, 0.6], [None] * 3], "synscore": [[None] * 3, [0.6, 0.7, 0.5], [None] * 3]}
    fig = generalisation_figure(table)
    assert len(fig.data) == 2
    assert fig.data[0].text[0][0] == "missing" and fig.data[0].text[1][1] == "0.800"
    assert np.isnan(fig.data[0].z[0][0])


def test_training_curve_figure():
    curve = {"iteration": np.arange(1, 5), "train_loss": np.array([7e-3, 6e-3, 5e-3, 4e-3]),
             "val_iteration": np.array([0, 4]), "val_loss": np.array([6.8e-3, 4.3e-3]),
             "val_loss_clean": np.array([np.nan, np.nan])}
    fig = training_curve_figure(curve)
    assert [t.name for t in fig.data] == ["train (per image)", "validation (corrupted)"]

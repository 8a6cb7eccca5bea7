"""widgets/dasbe_views.py: the Fig 2 / Fig 3 figure functions build the traces their data ask for."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from widgets._style import GROUP_PALETTE, OVERLAP_GREY
from widgets.dasbe_views import (
    GAP_RGB,
    ITERATION_GAP_RGB,
    SILENT_GREY,
    autocorrelation_figure,
    band_figure,
    cofiring_figure,
    scatter_fit_figure,
    slot_mosaic,
    slot_mosaic_figure,
)

H, W, D = 2, 3, 5


def maps_and_labels():
    """2 iterations x 5 slots of 2x3 maps. Pixel 0 is object 1, pixel 1 object 2, pixel 2 overlap (label 0, on),
    pixels 3-5 background (off). Iteration 0 slot 1: pixels 0 and 2 fire; iteration 1 slot 4: pixel 1 fires."""
    maps = np.zeros((2, D, H, W), dtype=bool)
    maps[0, 1].flat[0] = maps[0, 1].flat[2] = True
    maps[1, 4].flat[1] = True
    labels = np.array([1, 2, 0, 0, 0, 0])
    image = np.array([1, 1, 1, 0, 0, 0])
    return maps, labels, image


def test_slot_mosaic_colours_each_tile():
    maps, labels, image = maps_and_labels()
    rgb = slot_mosaic(maps, labels, image=image)  # one row of D tiles per iteration
    assert rgb.shape == (2 * H + 3, D * (W + 1) - 1, 3)
    tile = lambda i, d: rgb[i * (H + 3):i * (H + 3) + H, d * (W + 1):d * (W + 1) + W]  # noqa: E731
    np.testing.assert_allclose(tile(0, 1)[0, 0], GROUP_PALETTE[0])  # object 1 fired
    np.testing.assert_allclose(tile(0, 1)[0, 2], OVERLAP_GREY)  # an overlap pixel fired
    np.testing.assert_allclose(tile(0, 1)[0, 1], SILENT_GREY)  # object 2 is on but silent here
    np.testing.assert_allclose(tile(0, 1)[1, 0], (0, 0, 0))  # background
    np.testing.assert_allclose(tile(1, 4)[0, 1], GROUP_PALETTE[1])
    np.testing.assert_allclose(rgb[:H, W], np.tile(GAP_RGB, (H, 1)))  # white line between tiles
    np.testing.assert_allclose(rgb[H:H + 3, 0], np.tile(ITERATION_GAP_RGB, (3, 1)))  # grey band between iterations
    wrapped = slot_mosaic(maps, labels, image=image, slots_per_row=2)  # 3 rows of tiles per iteration
    assert wrapped.shape == (2 * (3 * (H + 1) - 1) + 3, 2 * (W + 1) - 1, 3)
    np.testing.assert_allclose(wrapped[0, 4], GROUP_PALETTE[0])  # slot 1 = row 0, column 1
    with pytest.raises(ValueError, match="labels"):
        slot_mosaic(maps, labels[:4])


def test_slot_mosaic_figure_labels_rows_and_columns():
    maps, labels, image = maps_and_labels()
    fig = slot_mosaic_figure(maps, labels, [0, 29], image=image, slots_per_row=None, slot_ticks=2)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1 and fig.data[0].type == "image"
    assert list(fig.layout.yaxis.ticktext) == ["it. 0, t 0-4", "it. 29, t 0-4"]
    assert list(fig.layout.xaxis.ticktext) == ["+0", "+2", "+4"]
    wrapped = slot_mosaic_figure(maps, labels, [0, 29], slots_per_row=3)
    assert list(wrapped.layout.yaxis.ticktext) == ["it. 0, t 0-2", "t 3-4", "it. 29, t 0-2", "t 3-4"]
    with pytest.raises(ValueError, match="iterations"):
        slot_mosaic_figure(maps, labels, [0])


def test_cofiring_figure_outlines_each_object():
    labels = np.array([1, 1, 2, 2, 2, 3])
    C = np.eye(6)
    fig = cofiring_figure(C, labels)
    assert fig.data[0].type == "heatmap" and len(fig.layout.shapes) == 3
    assert [(s.x0, s.x1) for s in fig.layout.shapes] == [(-0.5, 1.5), (1.5, 4.5), (4.5, 5.5)]
    assert list(fig.layout.xaxis.ticktext) == ["object 1", "object 2", "object 3"]
    with pytest.raises(ValueError, match="matrix"):
        cofiring_figure(np.eye(5), labels)


def test_autocorrelation_figure_one_line_per_object():
    lags = np.arange(-3, 4)
    rho = np.vstack([np.linspace(0, 1, 7), np.linspace(1, 0, 7)])
    fig = autocorrelation_figure(lags, rho, [1, 2])
    assert [t.name for t in fig.data] == ["object 1", "object 2"]
    np.testing.assert_allclose(fig.data[1].y, rho[1])
    with pytest.raises(ValueError, match="rho"):
        autocorrelation_figure(lags, rho, [1])


def test_band_figure_draws_bands_lines_and_references():
    x = np.arange(4)
    mean, ci = np.array([0.1, 0.5, 0.8, 0.9]), np.array([0.05, np.nan, 0.05, 0.05])
    fig = band_figure(x, {"Bars": (mean, ci), "Corners": (mean - 0.1, np.full(4, np.nan))},
                      reference={"Bars": ([0, 3], [0.05, 0.95])}, colors={"Bars": "#ff0000"})
    names = [t.name for t in fig.data]
    assert names == ["Bars 95% CI", "Bars", "Bars, reference", "Corners"]  # no band where the CI is all NaN
    band = fig.data[0]
    assert len(band.x) == 6 and band.fillcolor == "rgba(255,0,0,0.2)"  # the NaN-CI point is left out
    np.testing.assert_allclose(band.y[:3], [0.15, 0.85, 0.95])
    with pytest.raises(ValueError, match="match x"):
        band_figure(x, {"Bars": (mean[:3], ci[:3])})
    with pytest.raises(ValueError, match="colours"):
        band_figure(x, {"Bars": (mean, ci)}, colors={"Bars": "red"})


def test_scatter_fit_figure_has_points_and_lines_in_both_panels():
    pts = {"Bars": {"synchrony": np.array([0.1, 0.5, 0.9]), "rate": np.array([-0.2, 0.0, 0.1]),
                    "clustering": np.array([0.2, 0.5, 0.9]), "fit_synchrony": (1.0, 0.0), "fit_rate": (0.5, 0.5)},
           "MNIST+Shape": {"synchrony": np.array([0.2]), "rate": np.array([0.0]), "clustering": np.array([0.3]),
                           "fit_synchrony": (float("nan"), float("nan")), "fit_rate": (float("nan"), float("nan"))}}
    fig = scatter_fit_figure(pts)
    kinds = [(t.name, t.mode, t.xaxis) for t in fig.data]
    assert kinds[:4] == [("Bars", "markers", "x"), ("Bars fit", "lines", "x"), ("Bars", "markers", "x2"),
                         ("Bars fit", "lines", "x2")]
    assert len(fig.data) == 6  # no line where the fit is undefined
    np.testing.assert_allclose(fig.data[3].y, [0.5 * -0.2 + 0.5, 0.5 * 0.1 + 0.5])

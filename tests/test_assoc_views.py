"""Associative-memory figures build from the experiment functions' data."""

import numpy as np
import pytest

from widgets import assoc_views as v


def _examples(k=2, T=30, N=12):
    rng = np.random.default_rng(0)
    raster = lambda: rng.random((k, T, N)) < 0.05  # noqa: E731
    return {"pattern_ids": list(range(k)), "corrupted": [True, False][:k], "clean": raster(), "cue": raster(),
            "output": raster(), "target": raster()}


def test_recall_figure_has_one_panel_per_example_and_view():
    ex = _examples()
    fig = v.recall_figure(ex)
    assert len(fig.data) == 2 * 4
    assert len(fig.data[5].x) == int(ex["cue"][1].sum())  # row 2, column 2 = second cue
    assert "noise only" in fig.layout.annotations[5].text and "corrupted" in fig.layout.annotations[1].text
    with pytest.raises(ValueError, match="unknown panels"):
        v.recall_figure(ex, panels=("cue", "bogus"))


def test_clean_sheet_loss_curve_and_sweep():
    ex = _examples(k=3)
    fig = v.clean_sheet_figure(ex["clean"], ex["output"])
    assert len(fig.data) == 6
    with pytest.raises(ValueError, match="same shape"):
        v.clean_sheet_figure(ex["clean"], ex["output"][:2])
    history = {"train_loss": [0.15, 0.1], "val_loss": [0.14, 0.09], "max_pole_modulus": [0.88, 0.9],
               "silent_baseline": 0.154}
    fig = v.loss_curve_figure(history)
    assert any("silent output 0.154" in (a.text or "") for a in fig.layout.annotations)
    assert list(fig.data[1].y) == [0.14, 0.09]
    with pytest.raises(ValueError, match="no epochs"):
        v.loss_curve_figure({"val_loss": []})
    sweep = {"field": "p_noise", "values": [0.0, 0.01], "loss": [0.01, 0.03], "silent_baseline": 0.15}
    fig = v.sweep_figure([sweep, {**sweep, "field": "block"}])
    assert len(fig.data) == 2 and list(fig.data[0].y) == [0.01, 0.03]

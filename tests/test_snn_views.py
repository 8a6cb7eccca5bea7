"""SNN-IIR figures build from the experiment functions' data."""

import numpy as np
import pytest

from workbench.experiments import snn_iir as ex
from workbench.models.snn_mlp import SNNMLP
from widgets import snn_views as v


def test_filter_and_neuron_figures():
    fig = v.filter_response_figure(ex.filter_responses(T=30))
    assert len(fig.data) == 10 and len(fig.data[0].y) == 30
    trace = ex.layer_response(np.ones(25))
    assert trace["spikes"].sum() == 11  # spec §2.6 composition oracle
    fig = v.neuron_trace_figure(trace)
    assert fig.data[-1].name == "spikes (11)"
    with pytest.raises(ValueError, match="empty"):
        v.filter_response_figure({})


def test_confusion_raster_and_drift_figures():
    c = np.diag([5] * 10)
    c[3, 5] = 2
    fig = v.confusion_figure(c)
    assert "96.15" in fig.layout.title.text
    with pytest.raises(ValueError, match="square"):
        v.confusion_figure(np.zeros((2, 3)))
    model = SNNMLP("mlp1", sizes=(784, 16, 10), T=6).eval()
    labels = np.repeat(np.arange(10), 2)
    split = ex.Split(ex.torch.randint(0, 255, (20, 784), dtype=ex.torch.uint8), ex.torch.from_numpy(labels))
    rasters = ex.class_rasters(model, split)
    assert rasters["spikes"].shape == (10, 6, 10) and list(rasters["labels"]) == list(range(10))
    assert len(v.class_raster_figure(rasters).data) == 10
    rows = ex.coefficient_drift(model)
    assert {r["coefficient"] for r in rows} == {"alpha_1", "alpha_2", "beta_1"}
    assert rows[0]["initial"] == pytest.approx(1.146680, abs=1e-5)
    assert len(v.coefficient_drift_figure(rows).data) == len(rows)
    hist = {"val_accuracy": [0.1, 0.5], "train_accuracy": [0.1, 0.4], "max_pole_modulus": [0.8, 0.9]}
    assert len(v.training_curve_figure(hist).data) == 3

"""SNN-IIR views: filter responses, neuron traces, confusion matrix, output rasters per class, coefficient drift.

Pure figure functions over the data returned by ``workbench.experiments.snn_iir`` (testable headless).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._style import to_numpy

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def filter_response_figure(responses: Mapping[str, Mapping[str, np.ndarray]], title: str = "") -> go.Figure:
    """Impulse (left) and step (right) responses, one line per filter (``experiments.snn_iir.filter_responses``)."""
    if not responses:
        raise ValueError("responses is empty; pass experiments.snn_iir.filter_responses()")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("impulse response h[k]", "step response Σh"))
    for i, (name, r) in enumerate(responses.items()):
        color = _COLORS[i % len(_COLORS)]
        for col, key in ((1, "impulse"), (2, "step")):
            y = to_numpy(r[key])
            fig.add_trace(go.Scatter(x=np.arange(len(y)), y=y, name=name, legendgroup=name, showlegend=col == 1,
                                     mode="lines+markers", marker_size=3, line_color=color), row=1, col=col)
    fig.update_xaxes(title_text="step k")
    fig.update_layout(title=title or "SNN-IIR synapse filters", height=380)
    return fig


def neuron_trace_figure(trace: Mapping[str, np.ndarray], title: str = "") -> go.Figure:
    """Input, PSP, membrane v (threshold 1), reset trace r and spikes of one neuron (``layer_response``)."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.3, 0.5, 0.2],
                        subplot_titles=("input and PSP", "membrane v and reset r", "spikes"))
    t = np.arange(len(trace["v"]))
    fig.add_trace(go.Scatter(x=t, y=trace["input"], name="input", line_color="#7f7f7f"), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=trace["psp"], name="PSP ψ", line_color=_COLORS[0]), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=trace["v"], name="v", line_color=_COLORS[1]), row=2, col=1)
    fig.add_trace(go.Scatter(x=t, y=trace["r"], name="r", line_color=_COLORS[2]), row=2, col=1)
    fig.add_hline(y=1.0, line_dash="dot", row=2, col=1)
    s = np.flatnonzero(to_numpy(trace["spikes"]) > 0)
    fig.add_trace(go.Scatter(x=s, y=np.ones(len(s)), mode="markers", marker_symbol="line-ns-open", marker_size=14,
                             name=f"spikes ({len(s)})", line_color="black"), row=3, col=1)
    fig.update_yaxes(visible=False, row=3, col=1)
    fig.update_xaxes(title_text="time step", row=3, col=1)
    fig.update_layout(title=title or "SNN-IIR neuron", height=480)
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], title: str = "") -> go.Figure:
    """Confusion matrix [true, predicted] as a heatmap with counts; the diagonal share is the accuracy."""
    c = np.asarray(confusion, dtype=np.int64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {c.shape}")
    acc = np.trace(c) / max(c.sum(), 1)
    fig = go.Figure(go.Heatmap(z=np.log10(1 + c), text=c, texttemplate="%{text}", colorscale="Blues",
                               showscale=False, x=list(range(c.shape[1])), y=list(range(c.shape[0])),
                               hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    fig.update_xaxes(title_text="predicted", dtick=1)
    fig.update_yaxes(title_text="true", dtick=1, autorange="reversed")
    fig.update_layout(title=title or f"confusion matrix (accuracy {100 * acc:.2f} %)", height=460, width=520)
    return fig


def class_raster_figure(rasters: Mapping[str, np.ndarray], cols: int = 5, title: str = "") -> go.Figure:
    """Output-layer spike rasters (time × output neuron), one panel per example image (``class_rasters``)."""
    spikes, labels, pred = (to_numpy(rasters[k]) for k in ("spikes", "labels", "predicted"))
    n = spikes.shape[0]
    rows = int(np.ceil(n / cols))
    titles = [f"digit {l}: pred {p}, {int(s.sum())} spikes" for l, p, s in zip(labels, pred, spikes)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.12)
    for i in range(n):
        t, k = np.nonzero(spikes[i])
        color = np.where(k == labels[i], "#2ca02c", "#7f7f7f")
        fig.add_trace(go.Scatter(x=t, y=k, mode="markers", marker=dict(symbol="line-ns-open", size=7, color=color),
                                 showlegend=False), row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(range=[-0.5, spikes.shape[2] - 0.5], dtick=1, tickfont_size=8)
    fig.update_xaxes(range=[-0.5, spikes.shape[1] - 0.5])
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title or "output spikes per class (green: the true class's neuron)", height=260 * rows)
    return fig


def coefficient_drift_figure(rows: Sequence[Mapping], title: str = "") -> go.Figure:
    """Histogram of each trained filter coefficient per layer, with its initial value as a dashed line
    (``experiments.snn_iir.coefficient_drift``)."""
    if not rows:
        raise ValueError("no coefficients: the model has no trainable filters")
    names = sorted({r["coefficient"] for r in rows})
    layers = sorted({r["layer"] for r in rows})
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    for r in rows:
        col = names.index(r["coefficient"]) + 1
        fig.add_trace(go.Histogram(x=to_numpy(r["values"]), name=f"layer {r['layer']}", legendgroup=str(r["layer"]),
                                   showlegend=col == 1, opacity=0.6, nbinsx=40,
                                   marker_color=_COLORS[layers.index(r["layer"]) % len(_COLORS)]), row=1, col=col)
        fig.add_vline(x=r["initial"], line_dash="dash", line_color="black", row=1, col=col)
    fig.update_layout(barmode="overlay", title=title or "trained filter coefficients vs their initial value (dashed)",
                      height=360)
    return fig


def training_curve_figure(history: Mapping[str, Sequence[float]], title: str = "") -> go.Figure:
    """Validation accuracy and training loss per epoch, plus the max pole modulus (``history.json``)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "max pole modulus"))
    epochs = np.arange(len(history["val_accuracy"]))
    fig.add_trace(go.Scatter(x=epochs, y=history["val_accuracy"], name="validation"), row=1, col=1)
    fig.add_trace(go.Scatter(x=epochs, y=history["train_accuracy"], name="train (augmented)"), row=1, col=1)
    fig.add_trace(go.Scatter(x=epochs, y=history["max_pole_modulus"], name="max |pole|"), row=1, col=2)
    fig.add_hline(y=1.0, line_dash="dot", row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title or "training", height=340)
    return fig

"""Associative-memory views (specs/snn_iir.md §4.6): recall rasters, clean sheet, loss curves, sweep.

Pure figure functions over the data returned by ``workbench.experiments.snn_iir_assoc`` (testable
headless). Rasters are drawn as spike dots (time on x, neuron on y), not as 300 x 300 heatmaps, so a
figure stays small.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._style import to_numpy

PANELS = ("clean", "cue", "output", "target")
_TITLES = {"clean": "stored pattern", "cue": "input cue", "output": "recalled output", "target": "target (+4 steps)"}
_COLORS = {"clean": "#7f7f7f", "cue": "#1f77b4", "output": "#d62728", "target": "#2ca02c"}


def _dots(raster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, n = np.nonzero(to_numpy(raster))  # raster [T, N]
    return t, n


def recall_figure(examples: Mapping[str, Any], panels: Sequence[str] = PANELS, title: str = "") -> go.Figure:
    """One row per example, one column per panel (stored pattern | input cue | recalled output | target).

    ``examples``: ``recall_examples(...)`` (bool ``[k, T, N]`` arrays plus ``pattern_ids``, ``corrupted``).
    """
    unknown = [p for p in panels if p not in PANELS]
    if unknown:
        raise ValueError(f"unknown panels {unknown}; choose from {PANELS}")
    k = to_numpy(examples[panels[0]]).shape[0]
    ids, bad = examples.get("pattern_ids", range(k)), examples.get("corrupted", [None] * k)
    titles = []
    for i in range(k):
        for p in panels:
            n = int(to_numpy(examples[p])[i].sum())
            tag = "" if bad[i] is None else (" (corrupted)" if bad[i] else " (noise only)")
            titles.append(f"#{ids[i]} {_TITLES[p]}{tag if p == 'cue' else ''}: {n}")
    fig = make_subplots(rows=k, cols=len(panels), subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.3 / max(k, 1))
    for i in range(k):
        for j, p in enumerate(panels):
            raster = to_numpy(examples[p])[i]
            t, n = _dots(raster)
            fig.add_trace(go.Scattergl(x=t, y=n, mode="markers", marker=dict(size=2, color=_COLORS[p]),
                                       showlegend=False, hovertemplate="t %{x}, neuron %{y}<extra></extra>"),
                          row=i + 1, col=j + 1)
    T, N = to_numpy(examples[panels[0]]).shape[1:]
    fig.update_xaxes(range=[0, T], showticklabels=False)
    fig.update_yaxes(range=[N, 0], showticklabels=False)  # neuron 0 on top, as in the image
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title or "associative recall: time on x, neuron on y (spike counts in the titles)",
                      height=max(260, 230 * k), margin=dict(l=20, r=20, t=70, b=20))
    return fig


def clean_sheet_figure(clean: np.ndarray, output: np.ndarray, names: Sequence[str] | None = None,
                       title: str = "") -> go.Figure:
    """2 x P sheet: the clean cues (top) and the network's outputs for them (bottom)."""
    clean, output = to_numpy(clean), to_numpy(output)
    if clean.shape != output.shape:
        raise ValueError(f"clean {clean.shape} and output {output.shape} must have the same shape [P, T, N]")
    P = clean.shape[0]
    names = list(names) if names is not None else [str(i) for i in range(P)]
    titles = [f"{names[i]} in" for i in range(P)] + ["out"] * P
    fig = make_subplots(rows=2, cols=P, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.08)
    for row, data, color in ((1, clean, _COLORS["cue"]), (2, output, _COLORS["output"])):
        for i in range(P):
            t, n = _dots(data[i])
            fig.add_trace(go.Scattergl(x=t, y=n, mode="markers", marker=dict(size=1.5, color=color), showlegend=False),
                          row=row, col=i + 1)
    fig.update_xaxes(range=[0, clean.shape[1]], showticklabels=False)
    fig.update_yaxes(range=[clean.shape[2], 0], showticklabels=False)
    fig.update_annotations(font_size=9)
    fig.update_layout(title=title or "clean cues (top) and recalled outputs (bottom)", height=330,
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig


def loss_curve_figure(history: Mapping[str, Any], title: str = "") -> go.Figure:
    """Train/validation loss per epoch with the silent baseline as a horizontal line (log y), and the
    per-epoch maximum pole modulus (``history.json`` of ``train_assoc``)."""
    if not history.get("val_loss"):
        raise ValueError("history has no epochs yet (empty 'val_loss')")
    fig = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35], subplot_titles=("filtered MSE", "max pole modulus"))
    epochs = np.arange(len(history["val_loss"]))
    fig.add_trace(go.Scatter(x=epochs, y=history["train_loss"], name="train (fresh cues)"), row=1, col=1)
    fig.add_trace(go.Scatter(x=epochs, y=history["val_loss"], name="validation (320 cues)"), row=1, col=1)
    baseline = history.get("silent_baseline")
    if baseline is not None:
        fig.add_hline(y=baseline, line_dash="dash", line_color="black", row=1, col=1,
                      annotation_text=f"silent output {baseline:.3f}", annotation_position="bottom left")
    fig.add_hline(y=0.005, line_dash="dot", line_color="#2ca02c", row=1, col=1, annotation_text="target 0.005",
                  annotation_position="top left")
    fig.add_trace(go.Scatter(x=epochs, y=history["max_pole_modulus"], name="max |pole|"), row=1, col=2)
    fig.add_hline(y=1.0, line_dash="dot", row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title or "training of the associative memory", height=360)
    return fig


def sweep_figure(sweeps: Mapping[str, Any] | Sequence[Mapping[str, Any]], title: str = "") -> go.Figure:
    """Loss against corruption strength (``corruption_sweep``), silent baseline as a horizontal line."""
    sweeps = [sweeps] if isinstance(sweeps, Mapping) else list(sweeps)
    fig = make_subplots(rows=1, cols=len(sweeps), subplot_titles=[s["field"] for s in sweeps])
    for j, s in enumerate(sweeps):
        fig.add_trace(go.Scatter(x=s["values"], y=s["loss"], mode="lines+markers", name=f"loss vs {s['field']}",
                                 showlegend=False), row=1, col=j + 1)
        if s.get("silent_baseline") is not None:
            fig.add_hline(y=s["silent_baseline"], line_dash="dash", line_color="black", row=1, col=j + 1,
                          annotation_text="silent output", annotation_position="bottom right")
        fig.update_xaxes(title_text=s["field"], row=1, col=j + 1)
    fig.update_yaxes(title_text="filtered MSE", col=1)
    fig.update_layout(title=title or "recall loss against corruption strength", height=340)
    return fig

"""Spike raster of one sample of a SpikeRecord, with cycle boundaries and population rates.

Built for 1e5+ spikes: one WebGL trace per group (never per spike), points found with
``np.nonzero`` and split by group with numpy masks, no Python loop over spikes.
"""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._style import assign, check_batch, css, figure_widget, group_name, group_rgb, holding, refresh, to_numpy

COLOR_BY = ("labels", "none")
MAX_CYCLE_LINES = 400  # beyond this the boundary lines would paint the raster grey: leave them out


def _window(T: int, start: int, stop: int | None) -> tuple[int, int]:
    s0, s1, _ = slice(start, stop).indices(T)
    if s1 <= s0:
        raise ValueError(f"empty time window start={start}, stop={stop} for T={T} steps")
    return s0, s1


def _neuron_order(labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Row of each neuron and its group: objects 1..K first, background/overlap (label 0) last as
    its own band (the DASBE reference folded label 0 into the last group; we keep it apart)."""
    N = labels.size
    key = np.where(labels == 0, labels.max(initial=0) + 1, labels)
    order = np.argsort(key, kind="stable")
    row = np.empty(N, dtype=np.int64)
    row[order] = np.arange(N)
    return row, labels


def _compact_rows(row: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber the kept neurons' rows 0..n-1 in their original order (dropped neurons get -1)."""
    by_row = np.argsort(row)
    compact = np.full_like(row, -1)
    kept = by_row[keep[by_row]]
    compact[kept] = np.arange(len(kept))
    return compact, len(kept)


def _cycle_lines(record, s0: int, s1: int, y_top: float) -> go.Scattergl | None:
    """All cycle boundaries as one line trace (None-separated segments): cheap at any count."""
    if not record.cycle:
        return None
    xs = np.arange(-(-s0 // record.cycle) * record.cycle, s1 + 1, record.cycle) - 0.5
    if len(xs) == 0 or len(xs) > MAX_CYCLE_LINES:
        return None
    x = np.stack([xs, xs, np.full_like(xs, np.nan)], 1).ravel()
    y = np.tile([-0.5, y_top, np.nan], len(xs))
    return go.Scattergl(x=x, y=y, mode="lines", line=dict(color="rgba(120,120,120,0.5)", width=1),
                        name="cycle boundary", hoverinfo="skip", showlegend=False)


def raster_figure(record, b: int = 0, *, start: int = 0, stop: int | None = None, color_by: str = "labels",
                  show_rate: bool = True, max_points: int = 500_000, marker_size: float = 3,
                  active_only: bool = False) -> go.Figure:
    """Raster (x = step, y = neuron) of sample ``b`` over steps ``start:stop``.

    With labels and ``color_by="labels"`` neurons are ordered by group and coloured per group (one
    legend entry each; label 0 is "background/overlap"); hover shows the neuron's own index. Cycle
    boundaries are drawn when ``record.cycle`` is set. The lower panel holds the population count
    per step (and per group). Above ``max_points`` spikes every k-th spike is drawn (noted in the title).
    ``active_only`` keeps only the neurons that fire in the window (e.g. the on-pixels of an image), so
    a few hundred firing rows are not squeezed into the bottom of a mostly silent population.
    """
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by must be one of {COLOR_BY}, got {color_by!r}")
    b = check_batch(record, b)
    s0, s1 = _window(record.T, start, stop)
    block = to_numpy(record.spikes[s0:s1, b])  # [t, N] bool
    t, n = np.nonzero(block)
    stride = max(1, -(-len(t) // max_points))
    labelled = color_by == "labels" and record.labels is not None
    labels = to_numpy(record.labels[b]) if labelled else np.zeros(record.N, dtype=np.int64)
    row, group = _neuron_order(labels) if labelled else (np.arange(record.N), labels)
    groups = np.unique(labels)
    groups = np.concatenate([groups[groups > 0], groups[groups == 0]]) if labelled else groups
    n_rows = record.N
    if active_only:
        row, n_rows = _compact_rows(row, block.any(0))

    fig = make_subplots(rows=2 if show_rate else 1, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[0.75, 0.25] if show_rate else None)
    ts, ns = t[::stride], n[::stride]
    for k in groups:
        m = group[ns] == k
        color = css(group_rgb(int(k))) if labelled else "black"
        fig.add_trace(go.Scattergl(
            x=ts[m] + s0, y=row[ns[m]], customdata=ns[m], mode="markers", name=group_name(int(k)) if labelled else "spikes",
            legendgroup=str(k), marker=dict(size=marker_size, color=color, symbol="square"),
            hovertemplate="step %{x}<br>neuron %{customdata}<extra>%{fullData.name}</extra>"), row=1, col=1)
    lines = _cycle_lines(record, s0, s1, n_rows - 0.5)
    if lines is not None:
        fig.add_trace(lines, row=1, col=1)
    if show_rate:
        _add_rates(fig, block, group, groups, labelled, s0)
    note = f" (showing 1 in {stride} of {len(t)} spikes)" if stride > 1 else f" ({len(t)} spikes)"
    fig.update_layout(title=f"sample {b}, steps {s0}-{s1 - 1}{note}", height=520 if show_rate else 420,
                      margin=dict(l=60, r=10, t=50, b=40), legend=dict(itemsizing="constant"), plot_bgcolor="white")
    title = ("active neuron" if active_only else "neuron") + (" (by group)" if labelled else "")
    fig.update_yaxes(title_text=title, range=[-0.5, n_rows - 0.5], row=1, col=1)
    fig.update_xaxes(range=[s0 - 0.5, s1 - 0.5], showgrid=False)
    fig.update_xaxes(title_text="step", row=2 if show_rate else 1, col=1)
    return fig


def _add_rates(fig: go.Figure, block: np.ndarray, group: np.ndarray, groups: np.ndarray, labelled: bool, s0: int) -> None:
    """Spikes per step: total, and per group when labelled (a [t, N] @ [N, G] one-hot product)."""
    x = np.arange(s0, s0 + block.shape[0])
    if labelled:
        onehot = (group[:, None] == groups[None, :]).astype(np.float32)
        per_group = block.astype(np.float32) @ onehot
        for j, k in enumerate(groups):
            fig.add_trace(go.Scattergl(x=x, y=per_group[:, j], mode="lines", name=group_name(int(k)), legendgroup=str(k),
                                       showlegend=False, line=dict(color=css(group_rgb(int(k))), width=1)), row=2, col=1)
    # the total goes last so that it is drawn on top of the per-group lines
    fig.add_trace(go.Scattergl(x=x, y=block.sum(1), mode="lines", name="population", line=dict(color="black", width=1.5),
                               hovertemplate="step %{x}<br>%{y} spikes<extra>all</extra>"), row=2, col=1)
    fig.update_yaxes(title_text="spikes/step", rangemode="tozero", row=2, col=1)


class SpikeRaster:
    """Raster viewer: sample selector, time-window range slider and colour-by toggle driving a
    FigureWidget that is patched in place."""

    def __init__(self, record, *, window: int | None = None, max_points: int = 500_000):
        self.record, self.max_points = record, max_points
        T = record.T
        stop = T if window is None else min(T, window)
        has_labels = record.labels is not None
        self.b = W.IntSlider(value=0, min=0, max=max(record.B - 1, 0), description="sample", disabled=record.B == 1)
        self.steps = W.IntRangeSlider(value=(0, stop), min=0, max=T, step=1, description="steps", continuous_update=False,
                                      layout=W.Layout(width="480px"))
        self.color_by = W.ToggleButtons(options=list(COLOR_BY), value="labels" if has_labels else "none",
                                        description="colour", disabled=not has_labels)
        self._hold = False
        self.figure = figure_widget(self._build())
        for c in (self.b, self.steps, self.color_by):
            c.observe(self._on_change, names="value")
        self.widget = W.VBox([W.HBox([self.b, self.steps]), self.color_by, self.figure])

    def _build(self) -> go.Figure:
        s0, s1 = self.steps.value
        if s1 <= s0:  # a range slider can be squeezed to one point: show one step
            s1 = min(s0 + 1, self.record.T)
            s0 = s1 - 1
        return raster_figure(self.record, self.b.value, start=s0, stop=s1, color_by=self.color_by.value,
                             max_points=self.max_points)

    def _on_change(self, _change=None) -> None:
        if not self._hold:
            refresh(self.figure, self._build())

    def set(self, *, b: int | None = None, start: int | None = None, stop: int | None = None,
            color_by: str | None = None) -> "SpikeRaster":
        """Programmatic control; values are checked (sliders would clamp silently), one redraw."""
        b = None if b is None else check_batch(self.record, b)
        s0, s1 = self.steps.value
        if start is not None or stop is not None:
            s0, s1 = _window(self.record.T, s0 if start is None else start, s1 if stop is None else stop)
        if color_by is not None and (color_by not in COLOR_BY or self.color_by.disabled and color_by != "none"):
            raise ValueError(f"color_by must be one of {COLOR_BY} ('labels' needs a record with labels), got {color_by!r}")
        with holding(self):
            assign(((self.b, b), (self.steps, (s0, s1)), (self.color_by, color_by)))
        self._on_change()
        return self

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

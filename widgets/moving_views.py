"""Figures for DASBE's Fig 5 (binding moving shapes): pure functions of arrays, each returning a ``go.Figure``.

The data come from ``workbench.experiments.dasbe_moving.fig5``:

* ``moving_grid_figure``: the 6 x 20 panel grid: row pairs of (k-means grouping of the iteration's spikes in
  gold/blue/green; the input frame in black), 20 iterations per pair, drawn as one image trace;
* ``ami_curve_figure``: AMI per iteration of the trace and the mean (+- 95 % CI) over sequences, with the
  frames where a new shape appears marked.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from widgets._style import GROUP_PALETTE, css, to_numpy
from widgets.grouping import group_image

TILE_GAP = 2  # pixels between panels
PAIR_GAP = 6  # pixels between row pairs
GAP_RGB = (0.80, 0.80, 0.80)
INK_RGB = (0.0, 0.0, 0.0)  # the input frame's shapes
PAPER_RGB = (1.0, 1.0, 1.0)  # its background


def _check_stack(name: str, values: Any, dims: int = 3) -> np.ndarray:
    a = to_numpy(values)
    if a.ndim != dims:
        raise ValueError(f"{name} must be [K, H, W] (one map per iteration), got shape {a.shape}")
    return a


def frame_rgb(frame: Any) -> np.ndarray:
    """An input frame ``[H, W]`` as RGB: black shapes on white."""
    on = to_numpy(frame) > 0
    rgb = np.empty((*on.shape, 3))
    rgb[:] = PAPER_RGB
    rgb[on] = INK_RGB
    return rgb


def grid_image(groups: Any, frames: Any, *, columns: int = 20, palette=GROUP_PALETTE) -> np.ndarray:
    """RGB mosaic ``[rows, cols, 3]``: for every block of ``columns`` iterations, a row of groupings (0 = white
    background, on-pixels left in the background cluster grey) above a row of input frames."""
    g, f = _check_stack("groups", groups), _check_stack("frames", frames)
    if g.shape != f.shape:
        raise ValueError(f"groups {g.shape} and frames {f.shape} must have the same shape [K, H, W]")
    columns = int(columns)
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    K, H, W = g.shape
    pairs = max(1, -(-K // columns))
    tile_w, tile_h = W + TILE_GAP, H + TILE_GAP
    height = pairs * 2 * tile_h + (pairs - 1) * PAIR_GAP - TILE_GAP
    out = np.empty((max(height, H), columns * tile_w - TILE_GAP, 3))
    out[:] = GAP_RGB
    for k in range(K):
        p, c = divmod(k, columns)
        top, left = p * (2 * tile_h + PAIR_GAP), c * tile_w
        out[top:top + H, left:left + W] = group_image(g[k].reshape(-1), (H, W), palette, image=f[k].reshape(-1),
                                                      background="white")
        out[top + tile_h:top + tile_h + H, left:left + W] = frame_rgb(f[k])
    return out


def moving_grid_figure(groups: Any, frames: Any, *, columns: int = 20, iterations: Sequence[int] | None = None,
                       ami: Sequence[float] | None = None, appear: Sequence[int] = (), title: str | None = None,
                       scale: int = 2) -> go.Figure:
    """Fig 5's grid. ``iterations`` (default 0..K-1) label the columns; ``ami`` (per iteration, NaN = none)
    is shown under each grouping panel's number; iterations in ``appear`` (a new shape) are marked with a ``*``."""
    g = _check_stack("groups", groups)
    K, H, W = g.shape
    rgb = grid_image(g, frames, columns=columns)
    its = list(range(K)) if iterations is None else [int(i) for i in iterations]
    if len(its) != K:
        raise ValueError(f"iterations has {len(its)} entries for {K} panels")
    scores = None if ami is None else np.asarray(ami, dtype=float).reshape(-1)
    if scores is not None and scores.size != K:
        raise ValueError(f"ami has {scores.size} entries for {K} panels")
    fig = go.Figure(go.Image(z=np.round(255 * rgb).astype(np.uint8), name="fig5",
                             hovertemplate="x=%{x} y=%{y}<extra></extra>"))
    tile_w, tile_h = W + TILE_GAP, H + TILE_GAP
    marks = set(int(a) for a in appear)
    for k, it in enumerate(its):
        p, c = divmod(k, columns)
        top = p * (2 * tile_h + PAIR_GAP)
        text = f"{it}{'*' if it in marks else ''}"
        if scores is not None and np.isfinite(scores[k]):
            text += f"<br>{scores[k]:.2f}"
        fig.add_annotation(x=c * tile_w + W / 2, y=top, text=text, showarrow=False, yanchor="bottom",
                           font=dict(size=9, color="red" if it in marks else "black"))
    rows_h, cols_w = rgb.shape[:2]
    fig.update_xaxes(visible=False, range=[-0.5, cols_w - 0.5])
    fig.update_yaxes(visible=False, range=[rows_h - 0.5, -12.5], scaleanchor="x")
    legend = " · ".join(f"<span style='color:{css(c)}'>object {i + 1}</span>" for i, c in enumerate(GROUP_PALETTE[:3]))
    fig.update_layout(title=(title or "grouping (top) and input frame (bottom) per iteration") + f"<br><sub>{legend}; "
                      "grey = on-pixel in the background cluster; * = a new shape appears; number under = AMI</sub>",
                      width=min(1600, scale * cols_w + 40), height=scale * (rows_h + 14) + 110,
                      margin=dict(l=10, r=10, t=90, b=10))
    return fig


def ami_curve_figure(iterations: Sequence[int], trace_ami: Sequence[float] | None = None,
                     mean: Sequence[float] | None = None, ci: Sequence[float] | None = None, *,
                     appear: Sequence[int] = (), trace_name: str = "trace", mean_name: str = "mean over sequences",
                     extra: dict[str, Sequence[float]] | None = None, title: str = "AMI per iteration") -> go.Figure:
    """AMI per iteration: the trace, the mean over sequences with a shaded 95 % CI band, optional ``extra``
    named curves (e.g. a control), and dotted lines at the iterations where a new shape appears."""
    x = np.asarray(list(iterations), dtype=float)
    fig = go.Figure()

    def checked(name: str, values: Sequence[float]) -> np.ndarray:
        v = np.asarray(values, dtype=float).reshape(-1)
        if v.size != x.size:
            raise ValueError(f"{name} has {v.size} values for {x.size} iterations")
        return v

    if mean is not None:
        m = checked("mean", mean)
        if ci is not None:
            half = checked("ci", ci)
            ok = np.isfinite(m) & np.isfinite(half)
            fig.add_trace(go.Scatter(x=np.r_[x[ok], x[ok][::-1]], y=np.r_[(m + half)[ok], (m - half)[ok][::-1]],
                                     fill="toself", fillcolor="rgba(51,115,217,0.18)", line=dict(width=0),
                                     hoverinfo="skip", name="95 % CI", showlegend=True))
        fig.add_trace(go.Scatter(x=x, y=m, mode="lines", name=mean_name, line=dict(color=css(GROUP_PALETTE[1]))))
    if trace_ami is not None:
        fig.add_trace(go.Scatter(x=x, y=checked("trace_ami", trace_ami), mode="lines+markers", name=trace_name,
                                 line=dict(color=css(GROUP_PALETTE[0])), marker=dict(size=4)))
    for i, (name, values) in enumerate((extra or {}).items()):
        fig.add_trace(go.Scatter(x=x, y=checked(name, values), mode="lines", name=name,
                                 line=dict(color=css(GROUP_PALETTE[(i + 2) % len(GROUP_PALETTE)]), dash="dash")))
    for a in appear:
        fig.add_vline(x=float(a), line=dict(color="red", dash="dot", width=1))
    fig.update_layout(title=title, xaxis_title="iteration (= frame)", yaxis_title="AMI (labelled pixels)",
                      yaxis=dict(range=[-0.05, 1.05]), height=380, width=820, margin=dict(l=60, r=20, t=60, b=50))
    return fig

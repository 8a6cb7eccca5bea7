"""Figures for DASBE's Fig 2 and Fig 3 notebooks: pure functions of arrays, each returning a ``go.Figure``.

The data come from ``workbench.experiments.dasbe_figures`` (and ``dasbe.synchrony_protocol``); these
functions only draw them:

* ``slot_mosaic_figure``: a grid of small pixel spike maps, one per (iteration, slot), in one image trace;
* ``cofiring_figure``: the co-firing matrix with the object blocks marked;
* ``autocorrelation_figure``: the population autocorrelation of each object;
* ``band_figure``: mean curves with shaded 95 % CI bands (optionally with reference markers);
* ``scatter_fit_figure``: Fig 3c/d, clustering score against syn and against rate, with fitted lines.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._style import GROUP_PALETTE, css, group_name, group_rgb, to_numpy

SILENT_GREY = (0.22, 0.22, 0.22)  # an on-pixel that did not fire in that slot
GAP_RGB = (1.0, 1.0, 1.0)  # the lines between tiles
ITERATION_GAP_RGB = (0.6, 0.6, 0.6)  # the bands between iterations
ITERATION_GAP = 3  # their height in pixels


def _rgb_triplet(color: str) -> list[int]:
    """0-255 channels of a CSS colour given as ``rgb(r,g,b)`` / ``rgba(...)`` or ``#rrggbb``."""
    color = color.strip()
    if color.startswith("#") and len(color) == 7:
        return [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    if color.startswith("rgb") and "(" in color:
        return [int(float(v)) for v in color[color.index("(") + 1:color.index(")")].split(",")[:3]]
    raise ValueError(f"colours must be 'rgb(r,g,b)' or '#rrggbb', got {color!r}")


def series_color(i: int) -> str:
    """The i-th colour of the group palette (gold, blue, green, red, ...) as CSS."""
    return css(GROUP_PALETTE[i % len(GROUP_PALETTE)])


def slot_mosaic(maps: Any, labels: Any, *, image: Any = None, slots_per_row: int | None = None, gap: int = 1,
                iteration_gap: int = ITERATION_GAP) -> np.ndarray:
    """RGB mosaic in [0, 1] of spike maps ``[I, D, H, W]``: a spiking pixel takes its object's colour (label 0:
    overlap grey), an on-pixel of ``image`` that stays silent is dark grey, the rest black. Each iteration
    fills ``ceil(D / slots_per_row)`` rows of tiles (default: one row of D tiles), left to right; tiles are
    separated by ``gap`` white pixels and iterations by ``iteration_gap`` grey ones."""
    m = to_numpy(maps).astype(bool)
    if m.ndim != 4:
        raise ValueError(f"maps must be [iterations, slots, H, W]; got shape {m.shape}")
    I, D, H, W = m.shape
    per_row = D if slots_per_row is None else int(slots_per_row)
    if per_row < 1:
        raise ValueError(f"slots_per_row must be >= 1, got {slots_per_row}")
    lab = to_numpy(labels).astype(np.int64).reshape(-1)
    if lab.size != H * W:
        raise ValueError(f"labels has {lab.size} entries; the maps are {H}x{W}")
    colour = np.array([group_rgb(int(k)) for k in range(int(lab.max(initial=0)) + 1)])[lab].reshape(H, W, 3)
    base = np.zeros((H, W, 3))
    if image is not None:
        on = to_numpy(image).reshape(H, W) > 0
        base[on] = SILENT_GREY
    tiles = np.where(m[..., None], colour, base)  # [I, D, H, W, 3]
    rows = -(-D // per_row)
    block = rows * (H + gap) - gap  # height of one iteration
    out = np.ones((I * (block + iteration_gap) - iteration_gap, min(D, per_row) * (W + gap) - gap, 3))
    out[:] = GAP_RGB
    for i in range(I):
        top = i * (block + iteration_gap)
        if i:
            out[top - iteration_gap:top] = ITERATION_GAP_RGB
        for d in range(D):
            y, x = top + (d // per_row) * (H + gap), (d % per_row) * (W + gap)
            out[y:y + H, x:x + W] = tiles[i, d]
    return out


def slot_mosaic_figure(maps: Any, labels: Any, iterations: Sequence[int], *, image: Any = None,
                       slots_per_row: int | None = 16, title: str = "spike maps per slot", slot_ticks: int = 4,
                       width: int = 1000) -> go.Figure:
    """The mosaic of ``slot_mosaic`` as one image. Each iteration (labelled on the left with its slot range)
    takes ``ceil(D / slots_per_row)`` rows; the x axis gives a tile's offset within its row."""
    m = to_numpy(maps)
    if len(iterations) != m.shape[0]:
        raise ValueError(f"iterations names {len(iterations)} rows but maps has {m.shape[0]}")
    _, D, H, W = m.shape
    per_row = D if slots_per_row is None else min(int(slots_per_row), D)
    rgb = slot_mosaic(m, labels, image=image, slots_per_row=per_row)
    rows = -(-D // per_row)
    block = rows * (H + 1) - 1
    fig = go.Figure(go.Image(z=np.round(255 * rgb).astype(np.uint8), hoverinfo="skip"))
    xs = np.arange(0, per_row, slot_ticks)
    fig.update_xaxes(tickvals=xs * (W + 1) + W / 2, ticktext=[f"+{int(t)}" for t in xs],
                     title_text="slot t = first slot of the row + offset", showgrid=False, zeroline=False)
    yvals, ytext = [], []
    for i, k in enumerate(iterations):
        for j in range(rows):
            yvals.append(i * (block + ITERATION_GAP) + j * (H + 1) + H / 2)
            first, last = j * per_row, min(D, (j + 1) * per_row) - 1
            ytext.append(f"it. {int(k)}, t {first}-{last}" if j == 0 else f"t {first}-{last}")
    fig.update_yaxes(tickvals=yvals, ticktext=ytext, showgrid=False, zeroline=False)
    height = int((width - 120) * rgb.shape[0] / rgb.shape[1]) + 110
    fig.update_layout(title=title, width=width, height=height, margin=dict(l=110, r=10, t=50, b=50))
    return fig


def cofiring_figure(matrix: Any, labels: Any, *, title: str = "co-firing matrix (object pixels by label)"
                    ) -> go.Figure:
    """Heatmap of a co-firing matrix ``[P, P]`` whose rows/columns carry ``labels [P]`` (sorted); the
    object blocks are outlined and named on the axes."""
    C = to_numpy(matrix).astype(np.float64)
    lab = to_numpy(labels).astype(np.int64)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] != lab.size:
        raise ValueError(f"matrix must be [P, P] with P = len(labels) = {lab.size}; got {C.shape}")
    fig = go.Figure(go.Heatmap(z=C, colorscale="Viridis", zmin=0, zmax=max(float(C.max(initial=0)), 1e-12),
                               colorbar=dict(title="C / max C"),
                               hovertemplate="row %{y}<br>col %{x}<br>C = %{z:.3f}<extra></extra>"))
    groups, starts = np.unique(lab, return_index=True)
    ends = np.append(starts[1:], lab.size)
    for k, s, e in zip(groups, starts, ends):
        fig.add_shape(type="rect", x0=s - 0.5, x1=e - 0.5, y0=s - 0.5, y1=e - 0.5,
                      line=dict(color=css(group_rgb(int(k))), width=2))
    centres = (starts + ends - 1) / 2
    names = [group_name(int(k)) for k in groups]
    fig.update_xaxes(tickvals=centres, ticktext=names, showgrid=False)
    fig.update_yaxes(tickvals=centres, ticktext=names, autorange="reversed", scaleanchor="x", showgrid=False)
    fig.update_layout(title=title, width=620, height=560, margin=dict(l=80, r=10, t=50, b=60))
    return fig


def autocorrelation_figure(lags: Any, rho: Any, groups: Sequence[int], *,
                           title: str = "population autocorrelation per object") -> go.Figure:
    """ρ(τ) of each object (rows of ``rho [K, lags]``) against the lag, in the objects' colours."""
    lags, rho = to_numpy(lags), to_numpy(rho)
    if rho.ndim != 2 or rho.shape != (len(groups), lags.size):
        raise ValueError(f"rho must be [len(groups), len(lags)] = [{len(groups)}, {lags.size}]; got {rho.shape}")
    fig = go.Figure()
    for k, row in zip(groups, rho):
        fig.add_scatter(x=lags, y=row, mode="lines+markers", name=group_name(int(k)),
                        line=dict(color=css(group_rgb(int(k)))), marker=dict(size=4))
    fig.update_layout(title=title, xaxis_title="lag τ (steps)", yaxis_title="ρ(τ)", height=360,
                      yaxis_range=[-0.02, 1.05], plot_bgcolor="white")
    fig.update_xaxes(showgrid=True, gridcolor="#eee", dtick=5)
    fig.update_yaxes(showgrid=True, gridcolor="#eee")
    return fig


def band_figure(x: Any, series: Mapping[str, tuple[Any, Any]], *, title: str = "", xaxis_title: str = "",
                yaxis_title: str = "", colors: Mapping[str, str] | None = None,
                reference: Mapping[str, tuple[Any, Any]] | None = None, reference_name: str = "reference",
                height: int = 380, yaxis_range: Sequence[float] | None = None) -> go.Figure:
    """One line per series with a shaded band mean ± ci: ``series = {name: (mean [X], ci [X])}`` (ci may hold
    NaN: no band there). ``reference = {name: (xs, ys)}`` adds open markers in the same colour (e.g. values
    measured with the authors' code)."""
    x = to_numpy(x).astype(np.float64)
    fig = go.Figure()
    for i, (name, (mean, ci)) in enumerate(series.items()):
        mean, ci = to_numpy(mean).astype(np.float64), to_numpy(ci).astype(np.float64)
        if mean.shape != x.shape or ci.shape != x.shape:
            raise ValueError(f"series {name!r}: mean and ci must match x's shape {x.shape}; got {mean.shape}, {ci.shape}")
        color = (colors or {}).get(name, series_color(i))
        rgb = _rgb_triplet(color)
        band = np.isfinite(ci) & np.isfinite(mean)
        if band.any():
            xb = x[band]
            fig.add_scatter(x=np.concatenate([xb, xb[::-1]]),
                            y=np.concatenate([(mean + ci)[band], (mean - ci)[band][::-1]]), fill="toself",
                            fillcolor=f"rgba({rgb[0]},{rgb[1]},{rgb[2]},0.2)", line=dict(width=0), hoverinfo="skip",
                            showlegend=False, legendgroup=name, name=f"{name} 95% CI")
        fig.add_scatter(x=x, y=mean, mode="lines", name=name, legendgroup=name, line=dict(color=color, width=2))
        if reference and name in reference:
            rx, ry = reference[name]
            fig.add_scatter(x=to_numpy(rx), y=to_numpy(ry), mode="markers", legendgroup=name,
                            name=f"{name}, {reference_name}",
                            marker=dict(color=color, symbol="circle-open", size=9, line=dict(width=2)))
    fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, height=height,
                      plot_bgcolor="white")
    fig.update_xaxes(showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee", range=list(yaxis_range) if yaxis_range else None)
    return fig


def scatter_fit_figure(points: Mapping[str, Mapping[str, Any]], *, colors: Mapping[str, str] | None = None,
                       title: str = "clustering score against synchrony and rate scores") -> go.Figure:
    """Fig 3c/d: per dataset, the points (``synchrony``, ``clustering``) left and (``rate``, ``clustering``)
    right, with the fitted lines ``fit_synchrony`` / ``fit_rate`` = (slope, intercept) over each dataset's
    x range, as ``dasbe_figures.fig3_scatter`` returns them."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("syn (VP, q = 1/6) vs clustering", "rate (VP, q = 0) vs clustering"))
    for i, (name, p) in enumerate(points.items()):
        color = (colors or {}).get(name, series_color(i))
        for col, key in ((1, "synchrony"), (2, "rate")):
            xs, ys = np.asarray(p[key], dtype=np.float64), np.asarray(p["clustering"], dtype=np.float64)
            fig.add_scatter(x=xs, y=ys, mode="markers", name=name, legendgroup=name, showlegend=col == 1,
                            marker=dict(color=color, size=6, opacity=0.7), row=1, col=col)
            slope, intercept = p[f"fit_{key}"]
            if xs.size and np.isfinite(slope):
                line_x = np.array([np.nanmin(xs), np.nanmax(xs)])
                fig.add_scatter(x=line_x, y=slope * line_x + intercept, mode="lines", legendgroup=name,
                                showlegend=False, name=f"{name} fit", line=dict(color=color, width=2), row=1, col=col)
    fig.update_xaxes(title_text="synchrony score", row=1, col=1)
    fig.update_xaxes(title_text="rate score", row=1, col=2)
    fig.update_yaxes(title_text="clustering score", row=1, col=1)
    fig.update_layout(title=title, height=430, plot_bgcolor="white")
    fig.update_xaxes(showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee")
    return fig


__all__ = ["slot_mosaic", "slot_mosaic_figure", "cofiring_figure", "autocorrelation_figure", "band_figure",
           "scatter_fit_figure", "series_color"]

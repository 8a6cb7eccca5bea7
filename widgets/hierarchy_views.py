"""Figures for DASBE's Fig 4 (the CLRNET hierarchy): pure functions over ``workbench.experiments.dasbe_hierarchy``
results, so they run headless (papermill) and are testable without a front end.

* ``activity_maps_figure``: panel (a), 40 x 40 mean-activity maps per class and per position, selective units circled;
* ``hierarchy_binding_figure``: panel (b), the hidden map coloured by cluster next to the input coloured by binding;
* ``group_raster_figure``: panel (c), rasters and population counts of high-level groups and low-level objects;
* ``decoded_clusters_figure``: panel (d), each hidden cluster's mask through the decoder.

High-level groups take the colour of the object they fire with (``GroupRasters.match``); objects use the
gold/blue/green label colours of the other DASBE views.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._style import css, group_rgb

SHAPE_NAMES = ("square", "triangle", "inverted triangle")
SILENT_GREY = (0.25, 0.25, 0.25)


def _side(n: int) -> int:
    side = int(round(np.sqrt(n)))
    if side * side != n:
        raise ValueError(f"cannot show {n} units as a square map; need a square number of units")
    return side


def activity_maps_figure(maps: Any, *, title: str = "Fig 4a: mean high-level activity (CLRNET hidden layer)"
                         ) -> go.Figure:
    """Panel (a): row 1 one map per shape class, row 2 one per position P1..P3; the most selective units
    of each map are circled."""
    n = maps.class_maps.shape[1]
    side = maps.side or _side(n)
    n_pos = len(maps.position_maps)
    cols = max(3, n_pos)
    titles = [f"{SHAPE_NAMES[c]} (n={maps.class_counts[c]})" for c in range(3)] + [""] * (cols - 3)
    titles += [f"P{i + 1} at ({maps.positions[i][0]:.0f}, {maps.positions[i][1]:.0f}) (n={maps.position_counts[i]})"
               for i in range(n_pos)] + [""] * (cols - n_pos)
    fig = make_subplots(rows=2, cols=cols, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.1)
    vmax = float(np.nanmax(np.concatenate([maps.class_maps.ravel(), maps.position_maps.ravel()]))) or 1.0
    for row, (family, selective) in enumerate(((maps.class_maps, maps.class_selective),
                                               (maps.position_maps, maps.position_selective)), start=1):
        for i, values in enumerate(family):
            fig.add_trace(go.Heatmap(z=values.reshape(side, side), zmin=0, zmax=vmax, colorscale="Viridis",
                                     showscale=(row == 1 and i == 0), colorbar=dict(title="P(spike)", len=0.8),
                                     hovertemplate="unit row %{y}, col %{x}: %{z:.3f}<extra></extra>"),
                          row=row, col=i + 1)
            units = np.asarray(selective[i])
            fig.add_trace(go.Scatter(x=units % side, y=units // side, mode="markers", showlegend=False,
                                     marker=dict(symbol="circle-open", size=10, color="red", line=dict(width=2)),
                                     hovertemplate="selective unit %{text}<extra></extra>", text=units.tolist()),
                          row=row, col=i + 1)
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    for i in range(2 * cols):
        fig.layout[f"yaxis{'' if i == 0 else i + 1}"].scaleanchor = f"x{'' if i == 0 else i + 1}"
    fig.update_layout(title=title, height=520, width=260 * cols + 80, margin=dict(t=80))
    return fig


def _group_colours(groups: np.ndarray, group_ids: Sequence[int], match: Sequence[int]) -> np.ndarray:
    """RGB ``[N, 3]``: units of shown group i in the colour of its matched object, the rest dark grey."""
    rgb = np.tile(np.array(SILENT_GREY), (len(groups), 1))
    for g, obj in zip(group_ids, match):
        rgb[groups == g] = group_rgb(obj) if obj > 0 else (0.8, 0.8, 0.8)
    return rgb


def hierarchy_binding_figure(binding: Any, rasters: Any, *, seed_index: int = 0) -> go.Figure:
    """Panel (b): the hidden layer (40 x 40) coloured by k-means cluster, each cluster in the colour of the
    object it fires with, next to the input with each pixel coloured by its k-means group's majority object."""
    groups = binding.hidden_groups[seed_index]
    side = binding.hidden.image_shape[0] if binding.hidden.image_shape else _side(len(groups))
    hidden_rgb = _group_colours(groups, rasters.group_ids, rasters.match).reshape(side, side, 3)
    labels = binding.labels.reshape(-1)
    on = binding.image.reshape(-1) > 0
    pix = binding.pixel_groups[seed_index]
    pixel_rgb = np.zeros((len(pix), 3))
    for g in np.unique(pix[on]):
        members = (pix == g) & on
        votes = np.bincount(labels[members], minlength=int(labels.max()) + 1)[1:]
        colour = group_rgb(int(np.argmax(votes)) + 1) if votes.sum() else (0.55, 0.55, 0.55)
        pixel_rgb[members] = colour
    H, W = binding.image.shape
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.04, subplot_titles=(
        f"high level: {len(rasters.group_ids)} active clusters (+ silent, grey)",
        f"low level: binding (AMI {binding.pixel_ami[seed_index]:.2f})", "ground truth"))
    truth = np.array([group_rgb(int(k)) if k > 0 else ((0.55,) * 3 if o else (0.0,) * 3)
                      for k, o in zip(labels, on)])
    for col, img in enumerate((hidden_rgb, pixel_rgb.reshape(H, W, 3), truth.reshape(H, W, 3)), start=1):
        fig.add_trace(go.Image(z=(255 * img).astype(np.uint8)), row=1, col=col)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=f"Fig 4b: image {binding.image_index}, seed {binding.seeds[seed_index]}, "
                            f"K = {binding.k}, smooth {binding.smooth}", height=380, width=980)
    return fig


def group_raster_figure(rasters: Any, *, title: str = "Fig 4c: high-level groups and low-level objects"
                        ) -> go.Figure:
    """Panel (c): raster of the high-level groups' units and their population counts (top two rows), then
    the same for the low-level objects' pixels; a group is drawn in the colour of its matched object."""
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.3, 0.2, 0.3, 0.2],
                        subplot_titles=("high-level units (by group)", "high-level population counts",
                                        "low-level pixels (by object)", "low-level population counts"))
    steps = rasters.steps
    offset = 0
    for i, (g, spikes) in enumerate(zip(rasters.group_ids, rasters.group_spikes)):
        obj = rasters.match[i]
        colour = css(group_rgb(obj)) if obj > 0 else "lightgrey"
        name = f"group {g}" + (f" ~ object {obj} (r={rasters.correlation[i, obj - 1]:.2f})" if obj > 0 else "")
        t, u = np.nonzero(spikes)
        fig.add_trace(go.Scattergl(x=steps[t], y=u + offset, mode="markers", marker=dict(size=2, color=colour),
                                   name=name, legendgroup=name, showlegend=False), row=1, col=1)
        fig.add_trace(go.Scatter(x=steps, y=rasters.group_counts[i], mode="lines", line=dict(color=colour),
                                 fill="tozeroy", name=name, legendgroup=name), row=2, col=1)
        offset += spikes.shape[1]
    offset = 0
    for o, spikes in enumerate(rasters.object_spikes, start=1):
        colour = css(group_rgb(o))
        t, p = np.nonzero(spikes)
        fig.add_trace(go.Scattergl(x=steps[t], y=p + offset, mode="markers", marker=dict(size=2, color=colour),
                                   name=f"object {o}", legendgroup=f"o{o}", showlegend=False), row=3, col=1)
        fig.add_trace(go.Scatter(x=steps, y=rasters.object_counts[o - 1], mode="lines", line=dict(color=colour),
                                 fill="tozeroy", name=f"object {o}", legendgroup=f"o{o}"), row=4, col=1)
        offset += spikes.shape[1]
    fig.update_xaxes(title_text="step", row=4, col=1)
    fig.update_layout(title=title, height=720, width=980)
    return fig


def decoded_clusters_figure(decoded: Any, *, title: str = "Fig 4d: each high-level cluster through the decoder"
                            ) -> go.Figure:
    """Panel (d): the decoder's image of each hidden cluster's unit mask, titled with its best object."""
    G = len(decoded.group_ids)
    titles = []
    for i, g in enumerate(decoded.group_ids):
        obj = decoded.best_object[i]
        titles.append(f"cluster {g} -> object {obj} (IoU {decoded.iou[i, obj - 1]:.2f})" if obj > 0
                      else f"cluster {g} -> no object")
    fig = make_subplots(rows=1, cols=max(G, 1), subplot_titles=titles or ["no active cluster"],
                        horizontal_spacing=0.03)
    for i in range(G):
        fig.add_trace(go.Heatmap(z=decoded.images[i], zmin=0, zmax=1, colorscale="Greys", reversescale=True,
                                 showscale=(i == 0)), row=1, col=i + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title=title, height=330, width=300 * max(G, 1) + 80)
    return fig

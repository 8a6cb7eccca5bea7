"""GUST figures (spec §5.5, §9): phase colourings, spike maps, labelled rasters, score curves, the 3x3 table.

Pure functions ``... -> go.Figure`` over a ``SpikeRecord`` (``[cycles*T, B, N]`` with ``cycle = T``) or over the
dicts of ``workbench.experiments.gust``; notebooks call them and ``fig.show()``. The phase colouring is
GUST's (weight_t = 0.25 sin(2 pi w t / T + 0.2) + 0.75, w = 29/9/2; hue_t = (t/T + 2/3) mod 1), computed by
``widgets.grouping`` with ``weight="gust"``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._style import (
    GROUP_PALETTE,
    check_batch,
    css,
    group_rgb,
    require_cycle,
    require_image_shape,
    to_numpy,
)
from widgets.dasbe_views import band_figure
from widgets.grouping import _image_figure, group_image, phase_image

__all__ = [
    "COLOURING_CYCLES",
    "SPIKE_MAP_CYCLES",
    "GT_PALETTE",
    "colouring_strip",
    "colouring_strip_figure",
    "input_panel_figure",
    "spike_map",
    "spike_map_figure",
    "labelled_raster_figure",
    "score_curves_figure",
    "generalisation_figure",
    "training_curve_figure",
    "overlap_figure",
    "net_comparison_figure",
]

COLOURING_CYCLES = (0, 5, 10, 15, 20, 25, 29)
SPIKE_MAP_CYCLES = (0, 1, 2, 27, 28, 29)
# §9: ground-truth colours, CSS gold, royalblue, limegreen
GT_PALETTE = ((1.0, 215 / 255, 0.0), (65 / 255, 105 / 255, 225 / 255), (50 / 255, 205 / 255, 50 / 255))
SPIKE_YELLOW = (1.0, 0.9, 0.0)
AMI_COLOR, SYN_COLOR = "#d62728", "#1f77b4"  # §9: AMI red, SynScore blue


def _cycles_in(record, cycles: Sequence[int]) -> list[int]:
    """The requested cycles that the record holds (negative = from the end), in order, without repeats."""
    n = record.n_cycles
    out = []
    for c in cycles:
        c = int(c)
        k = c + n if c < 0 else c
        if 0 <= k < n and k not in out:
            out.append(k)
    return out


def colouring_strip(record, b: int = 0, cycles: Sequence[int] = COLOURING_CYCLES) -> tuple[list[int], np.ndarray]:
    """(cycles shown, RGB ``[len, H, W, 3]``): GUST phase colourings of sample ``b``; cycles the record
    lacks are dropped (a short SMOKE record shows what it has)."""
    require_image_shape(record, "colouring_strip")
    require_cycle(record, "colouring_strip")
    b = check_batch(record, b)
    ks = _cycles_in(record, cycles) or [record.n_cycles - 1]
    return ks, np.stack([phase_image(record, b, k, weight="gust") for k in ks])


def colouring_strip_figure(record, b: int = 0, cycles: Sequence[int] = COLOURING_CYCLES, *,
                           title: str | None = None) -> go.Figure:
    """The first row of the paper's Fig. 4: phase colourings of cycles 0, 5, ..., 29 (same colour = same phase)."""
    ks, rgb = colouring_strip(record, b, cycles)
    return _image_figure([(f"cycle {k}", img) for k, img in zip(ks, rgb)],
                         title or f"phase colouring (GUST weights), sample {b}", size=150)


def input_panel_figure(record, b: int = 0) -> go.Figure:
    """Input (black/white) and ground-truth labels (white background; gold / royal blue / lime green)."""
    shape = require_image_shape(record, "input_panel_figure")
    b = check_batch(record, b)
    panels = []
    if record.images is not None:
        img = to_numpy(record.images[b]).reshape(shape)
        panels.append(("input", np.repeat(img[..., None], 3, axis=2)))
    if record.labels is not None:
        panels.append(("labels", group_image(record.labels[b], shape, GT_PALETTE + GROUP_PALETTE[3:],
                                             background="white")))
    if not panels:
        raise ValueError("the record has neither images nor labels; run it with labels=... to show them")
    return _image_figure(panels, f"sample {b}", size=220)


def spike_map(record, b: int = 0, cycles: Sequence[int] = SPIKE_MAP_CYCLES, gap: int = 1
              ) -> tuple[list[int], np.ndarray]:
    """(cycles, RGB mosaic): one row per cycle, one column per slot, spikes yellow on black, grey gaps."""
    H, W = require_image_shape(record, "spike_map")
    T = require_cycle(record, "spike_map")
    b = check_batch(record, b)
    ks = _cycles_in(record, cycles)
    if not ks:
        raise ValueError(f"none of cycles {list(cycles)} is in the record (0..{record.n_cycles - 1})")
    s = to_numpy(record.spikes[:, b]).reshape(record.n_cycles * T if record.n_cycles else 0, H, W)
    out = np.full((len(ks) * (H + gap) - gap, T * (W + gap) - gap, 3), 0.35)
    for r, k in enumerate(ks):
        for t in range(T):
            tile = s[k * T + t].astype(np.float64)[..., None] * np.asarray(SPIKE_YELLOW)
            out[r * (H + gap): r * (H + gap) + H, t * (W + gap): t * (W + gap) + W] = tile
    return ks, out


def spike_map_figure(record, b: int = 0, cycles: Sequence[int] = SPIKE_MAP_CYCLES, *, size: int = 70) -> go.Figure:
    """Spike maps: rows = cycles (default 0-2 and 27-29), columns = the T slots of a cycle."""
    ks, mosaic = spike_map(record, b, cycles)
    T = record.cycle
    H, W = record.image_shape
    fig = go.Figure(go.Image(z=np.round(255 * mosaic).astype(np.uint8), hoverinfo="skip"))
    fig.update_xaxes(tickvals=[t * (W + 1) + W / 2 for t in range(T)], ticktext=[f"slot {t}" for t in range(T)])
    fig.update_yaxes(tickvals=[r * (H + 1) + H / 2 for r in range(len(ks))], ticktext=[f"cycle {k}" for k in ks])
    fig.update_layout(title=f"spike maps, sample {b} (yellow = spike)", width=90 + size * T,
                      height=80 + size * len(ks), margin=dict(l=70, r=10, t=40, b=30))
    return fig


def labelled_raster_figure(record, b: int = 0, cycles: Sequence[int] = (0, 1, 2), *, title: str | None = None
                           ) -> go.Figure:
    """Per ground-truth group a raster (pixel index vs step, in the group's colour, its population count
    shaded behind), plus the population count of every group and the total, over ``cycles`` (consecutive)."""
    T = require_cycle(record, "labelled_raster_figure")
    b = check_batch(record, b)
    if record.labels is None:
        raise ValueError("labelled_raster_figure needs record.labels; run the net with labels=...")
    ks = _cycles_in(record, cycles)
    if not ks:
        raise ValueError(f"none of cycles {list(cycles)} is in the record (0..{record.n_cycles - 1})")
    s0, s1 = min(ks) * T, (max(ks) + 1) * T
    block = to_numpy(record.spikes[s0:s1, b]).astype(bool)  # [steps, N]
    lab = to_numpy(record.labels[b]).astype(np.int64)
    groups = [int(g) for g in np.unique(lab) if g != 0]
    steps = np.arange(s0, s1)
    fig = make_subplots(rows=len(groups) + 1, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=[1.0] * len(groups) + [0.8],
                        subplot_titles=[f"object {g}" for g in groups] + ["population count"])
    total = block.sum(1)
    for r, g in enumerate(groups, start=1):
        members = np.flatnonzero(lab == g)
        color = css(GT_PALETTE[g - 1] if g <= len(GT_PALETTE) else group_rgb(g))
        count = block[:, members].sum(1)
        scale = len(members) / max(int(count.max()), 1)
        fig.add_scatter(x=steps, y=count * scale, fill="tozeroy", mode="none", fillcolor=color, opacity=0.25,
                        name=f"object {g} count", showlegend=False, hoverinfo="skip", row=r, col=1)
        t_idx, p_idx = np.nonzero(block[:, members])
        fig.add_scatter(x=steps[t_idx], y=p_idx, mode="markers", marker=dict(size=3, color=color),
                        name=f"object {g}", showlegend=False, row=r, col=1)
        fig.add_scatter(x=steps, y=count, mode="lines", line=dict(color=color, width=1.5, shape="hv"),
                        name=f"object {g}", row=len(groups) + 1, col=1)
    fig.add_scatter(x=steps, y=total, mode="lines", line=dict(color="black", width=1.5, shape="hv"),
                    name="all pixels", row=len(groups) + 1, col=1)
    for c in range(min(ks), max(ks) + 2):
        fig.add_vline(x=c * T - 0.5, line=dict(color="#bbb", width=1, dash="dot"))
    fig.update_xaxes(title_text="step", row=len(groups) + 1, col=1)
    fig.update_layout(title=title or f"labelled raster, sample {b}, cycles {min(ks)}-{max(ks)}",
                      height=160 * len(groups) + 200, plot_bgcolor="white", margin=dict(t=60))
    return fig


def _curve_series(result: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (mean, ci half-width)}`` for ``band_figure`` from ``evaluate``'s curves ``{key: name}`` (None -> NaN)."""
    series = {}
    for key, name in names.items():
        c = result[key]
        mean = np.array([np.nan if v is None else v for v in c["mean"]], dtype=np.float64)
        hi = np.array([np.nan if v is None else v for v in c["ci_high"]], dtype=np.float64)
        series[name] = (mean, hi - mean)
    return series


def score_curves_figure(result: Mapping[str, Any], *, authors: Mapping[str, Any] | None = None,
                        title: str = "", height: int = 380) -> go.Figure:
    """AMI (red) and SynScore (blue) vs time step, mean with its 95 % CI band, from ``evaluate`` /
    ``reference_protocol``; ``authors`` (e.g. ``AUTHORS_CURVE``, cycles 1..29) is drawn dashed."""
    x = np.asarray(result["steps"], dtype=np.float64)
    series = _curve_series(result, {"ami": "AMI", "synscore": "SynScore"})
    fig = band_figure(x, series, title=title, xaxis_title="time step", yaxis_title="score",
                      colors={"AMI": AMI_COLOR, "SynScore": SYN_COLOR}, height=height, yaxis_range=(-0.1, 1.0))
    if authors is not None:
        steps = [10 * (c + 1) for c in authors["cycles"]]
        for key, name, color in (("ami", "AMI", AMI_COLOR), ("synscore", "SynScore", SYN_COLOR)):
            fig.add_scatter(x=steps, y=authors[key], mode="lines", name=f"{name}, authors (§6.1)",
                            line=dict(color=color, dash="dash", width=1.5))
    return fig


def net_comparison_figure(comparison: Mapping[str, Any], *, key: str = "ami", title: str = "",
                          height: int = 380) -> go.Figure:
    """One curve per net of ``compare_nets`` (``key`` = "ami" or "synscore") vs time step, mean with its 95 % CI
    band, on the same test images and seeds."""
    if key not in ("ami", "synscore"):
        raise ValueError(f"key must be 'ami' or 'synscore', got {key!r}")
    results = comparison["results"]
    if not results:
        raise ValueError("the comparison holds no nets")
    x = np.asarray(next(iter(results.values()))["steps"], dtype=np.float64)
    series = {name: _curve_series(res, {key: name})[name] for name, res in results.items()}
    return band_figure(x, series, title=title, xaxis_title="time step",
                       yaxis_title="AMI" if key == "ami" else "SynScore", height=height, yaxis_range=(-0.1, 1.0))


def ami_decomposition_figure(result: Mapping[str, Any], *, title: str = "what AMI is made of",
                             height: int = 380) -> go.Figure:
    """AMI (red), the AMI of the object pixels outside the silent pixels' cluster (``bound_ami``, dark red,
    dotted) and the share of object pixels inside it (``silent_share``, grey) vs time step, mean with its
    95 % CI band, from ``evaluate``."""
    x = np.asarray(result["steps"], dtype=np.float64)
    names = {"ami": "AMI", "bound_ami": "AMI of the other object pixels",
             "silent_share": "object pixels grouped with the silent pixels"}
    series = _curve_series(result, names)
    colors = dict(zip(names.values(), (AMI_COLOR, "#7f1d1d", "#6b7280")))
    fig = band_figure(x, series, title=title, xaxis_title="time step", yaxis_title="score / share",
                      colors=colors, height=height, yaxis_range=(-0.1, 1.05))
    fig.update_traces(line=dict(dash="dot"), selector=dict(name=names["bound_ami"]))
    return fig


def slot_offsets_figure(result: Mapping[str, Any], *, title: str = "phase precision", height: int = 340) -> go.Figure:
    """Bars: the share of single-spike object pixels at each slot offset from their object's modal slot
    (``evaluate``'s ``slot_offsets``), centred on 0 (negative: early). Only offset 0 counts as on the slot
    for the Hamming grouping."""
    shares = np.asarray(result["slot_offsets"], dtype=np.float64)
    T = shares.size
    offsets = np.arange(T)
    signed = np.where(offsets > T // 2, offsets - T, offsets)
    order = np.argsort(signed)
    colors = [AMI_COLOR if d == 0 else "#9ca3af" for d in signed[order]]
    fig = go.Figure(go.Bar(x=signed[order], y=shares[order], marker_color=colors,
                           hovertemplate="offset %{x} slots: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="slot relative to the object's modal slot", height=height,
                      yaxis_title="share of object pixels firing once", plot_bgcolor="white", xaxis=dict(dtick=1))
    return fig


def overlap_figure(by_overlap: Mapping[str, Any], *, title: str = "scores against overlap",
                   height: int = 380) -> go.Figure:
    """Per-image last-cycle AMI (red dots) against overlap pixels, with the per-bin means of AMI (red) and
    SynScore (blue) at each bin's mean overlap, from ``workbench.experiments.gust.scores_by_overlap``."""
    overlap = np.asarray(by_overlap["overlap"], dtype=np.float64)
    ami = np.array([np.nan if v is None else v for v in by_overlap["ami"]], dtype=np.float64)
    if overlap.shape != ami.shape:
        raise ValueError(f"by_overlap has {overlap.size} overlap counts but {ami.size} AMI values; "
                         "pass the dict scores_by_overlap returns")
    fig = go.Figure()
    fig.add_scatter(x=overlap, y=ami, mode="markers", name="AMI per image",
                    marker=dict(color=AMI_COLOR, size=5, opacity=0.35))
    centres = [np.nan if b["overlap_mean"] is None else b["overlap_mean"] for b in by_overlap["bins"]]
    for key, name, color in (("ami", "AMI", AMI_COLOR), ("synscore", "SynScore", SYN_COLOR)):
        means = [np.nan if b[key] is None else b[key] for b in by_overlap["bins"]]
        labels = [f"{b['label']} px: n = {b['n']}" for b in by_overlap["bins"]]
        fig.add_scatter(x=centres, y=means, mode="lines+markers", name=f"{name}, bin mean", text=labels,
                        line=dict(color=color, width=2.5), marker=dict(size=9),
                        hovertemplate="%{text}<br>mean %{y:.3f}<extra></extra>")
    fig.update_layout(title=title, xaxis_title=f"overlap pixels per image ({by_overlap.get('source', 'overlap')})",
                      yaxis_title="score at the last cycle", yaxis_range=(-0.1, 1.0), height=height,
                      plot_bgcolor="white")
    return fig


def generalisation_figure(table: Mapping[str, Any], *, title: str = "combinatorial generalisation") -> go.Figure:
    """3x3 heat maps (train objects x test objects) of AMI and SynScore at the last cycle; cells that were
    not run are blank and labelled "missing"."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["AMI", "SynScore"], horizontal_spacing=0.15)
    xs = [f"test {n}" for n in table["test"]]
    ys = [f"train {n}" for n in table["train"]]
    for col, key in ((1, "ami"), (2, "synscore")):
        z = np.array([[np.nan if v is None else v for v in row] for row in table[key]], dtype=np.float64)
        text = [["missing" if v is None else f"{v:.3f}" for v in row] for row in table[key]]
        fig.add_heatmap(z=z, x=xs, y=ys, text=text, texttemplate="%{text}", zmin=0, zmax=1, colorscale="Viridis",
                        showscale=col == 2, hovertemplate="%{y}, %{x}: %{text}<extra></extra>", row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(title=title, height=360, width=760, plot_bgcolor="#f4f4f4")
    return fig


def training_curve_figure(curve: Mapping[str, Any], *, title: str = "training curve") -> go.Figure:
    """Training loss per image vs iteration and the validation loss (corrupted input; clean if logged),
    from ``workbench.experiments.gust_train.training_curve``. The dotted line is a uniform prediction's loss
    at 125 on-pixels (1/125 - 1/784, §2.5). When the curve holds periodic grouping scores (a non-empty
    ``score_epoch`` with ``score_ami`` / ``score_synscore``), a second panel shows AMI (red) and SynScore
    (blue) vs epoch: the place to look for the paper's coarse -> fine stages."""
    scores = len(curve.get("score_epoch", [])) > 0
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.16,
                        subplot_titles=["loss per image", "grouping scores (dataset protocol, last cycle)"]) \
        if scores else go.Figure()
    loss_cell = dict(row=1, col=1) if scores else {}
    fig.add_scatter(x=to_numpy(curve["iteration"]), y=to_numpy(curve["train_loss"]), mode="lines",
                    name="train (per image)", line=dict(color="#888", width=1), **loss_cell)
    if len(curve.get("val_iteration", [])):
        fig.add_scatter(x=to_numpy(curve["val_iteration"]), y=to_numpy(curve["val_loss"]), mode="lines+markers",
                        name="validation (corrupted)", line=dict(color="#d62728"), **loss_cell)
        clean = to_numpy(curve.get("val_loss_clean", np.array([])))
        if clean.size and np.isfinite(clean).any():
            fig.add_scatter(x=to_numpy(curve["val_iteration"]), y=clean, mode="lines+markers",
                            name="validation (clean)", line=dict(color="#1f77b4"), **loss_cell)
    fig.add_hline(y=1 / 125 - 1 / 784, line=dict(color="#aaa", dash="dot"), **loss_cell)
    if not scores:
        fig.update_layout(title=title, xaxis_title="iteration", yaxis_title="loss per image", height=360,
                          plot_bgcolor="white")
        return fig
    epoch = to_numpy(curve["score_epoch"])
    for key, name, color in (("score_ami", "AMI", AMI_COLOR), ("score_synscore", "SynScore", SYN_COLOR)):
        values = to_numpy(curve.get(key, np.full(len(epoch), np.nan))).astype(np.float64)
        if values.shape != epoch.shape:
            raise ValueError(f"curve[{key!r}] has {values.size} values but score_epoch has {epoch.size}; "
                             "both come from the same periodic evaluations")
        fig.add_scatter(x=epoch, y=values, mode="lines+markers", name=name, line=dict(color=color), row=2, col=1)
    fig.update_xaxes(title_text="iteration", row=1, col=1)
    fig.update_yaxes(title_text="loss per image", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    fig.update_yaxes(title_text="score", range=[-0.1, 1.0], row=2, col=1)
    fig.update_layout(title=title, height=620, plot_bgcolor="white")
    return fig

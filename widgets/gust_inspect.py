"""GUST inspection views (spec gust.md §9): the binding animation and the pixel-neuron inspector.

* ``binding_animation_figure(record, ...)``: the spiking coding space step by step (the README's video) as
  a plotly animation (play button + step slider). Each frame paints the pixels that fired in that step by
  their group (``colour="group"``) or by their phase slot (``colour="phase"``, the colours of the phase
  colouring strip); on-pixels that stay silent are grey. A side panel shows the population count with
  the current step marked.
* ``neuron_inspector_figure(trace, pixel, ...)``: one pixel neuron over the steps: the top-down
  prediction c_t with the firing probability x * c_t * gate, its spikes and its refractory counter
  (§2.2), with cycle boundaries. ``trace`` is ``run_gust(..., trace=True).trace`` (a ``GustTrace``),
  which holds the run's SpikeRecord, so both views read the same record as the other GUST/DASBE views.
* ``NeuronInspector``: thin ipywidgets view (sample, row, column and step window; click the image to
  pick a pixel) over ``neuron_inspector_figure`` and ``pixel_locator_figure``.
"""

from __future__ import annotations

from typing import Any, Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._style import (
    BACKGROUNDS,
    GROUP_PALETTE,
    assign,
    check_batch,
    css,
    figure_widget,
    holding,
    refresh,
    require_cycle,
    require_image_shape,
    to_numpy,
)
from widgets.grouping import _auto_weight, phase_hues, phase_weights

__all__ = [
    "COLOURS",
    "binding_frames",
    "binding_animation_figure",
    "neuron_inspector_figure",
    "pixel_locator_figure",
    "default_pixel",
    "NeuronInspector",
]

COLOURS = ("group", "phase")
# objects 1..K: the ground-truth colours of the GUST figures (gold, royal blue, lime green), then the palette
GROUP_COLOURS = ((1.0, 215 / 255, 0.0), (65 / 255, 105 / 255, 225 / 255), (50 / 255, 205 / 255, 50 / 255)) \
    + GROUP_PALETTE[3:]
SILENT_ON = {"black": (0.28, 0.28, 0.28), "white": (0.80, 0.80, 0.80)}  # on-pixel, no spike in the frame
UNLABELLED_SPIKE = {"black": (1.0, 1.0, 1.0), "white": (0.0, 0.0, 0.0)}  # spike of a label-0 (overlap) pixel
C_COLOR, P_COLOR, SPIKE_COLOR, REF_COLOR = "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c"


# --- binding animation ----------------------------------------------------------------------------


def _frame_starts(T: int, start: int, stop: int | None, stride: int) -> tuple[np.ndarray, int, int]:
    """(first step of each frame, s0, s1): frames cover [s0, s1) in windows of ``stride`` steps."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1 (steps per frame), got {stride!r}")
    s0, s1, _ = slice(start, stop).indices(T)
    if s1 <= s0:
        raise ValueError(f"empty step window start={start}, stop={stop} for a record of {T} steps")
    return np.arange(s0, s1, int(stride)), s0, s1


def _labels_for(record, b: int, labels: Any) -> np.ndarray:
    if labels is None:
        if record.labels is None:
            raise ValueError("colour='group' needs group labels: run the net with labels=..., pass labels=[N] "
                             "(e.g. k-medoids groups), or use colour='phase'")
        return to_numpy(record.labels[b]).astype(np.int64)
    lab = to_numpy(labels).astype(np.int64)
    lab = lab[b] if lab.ndim == 2 else lab
    if lab.shape != (record.N,):
        raise ValueError(f"labels must be [N] = [{record.N}] or [B, N] group labels, got shape "
                         f"{to_numpy(labels).shape}")
    return lab


def binding_frames(record, b: int = 0, colour: str = "group", *, stride: int = 1, start: int = 0,
                   stop: int | None = None, labels: Any = None, background: str = "black",
                   weight: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(first step of each frame ``[F]``, RGB frames ``[F, H, W, 3]`` in [0, 1]) of sample ``b``.

    A frame covers steps ``[n, n + stride)``: a pixel that fired in that window is painted by its group
    (``colour="group"``: ground-truth ``record.labels`` or the given ``labels``; label 0 = overlap in
    white on black) or by the slot of its last spike in the window (``colour="phase"``: the colours of the
    phase colouring, slot hue times the paper's weight). Silent on-pixels are grey, the rest background.
    """
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {COLOURS}, got {colour!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {sorted(BACKGROUNDS)}, got {background!r}")
    H, W_ = require_image_shape(record, "binding_frames")
    b = check_batch(record, b)
    starts, s0, s1 = _frame_starts(record.T, start, stop, stride)
    spikes = to_numpy(record.spikes[s0:s1, b]).astype(bool)  # [steps, N]
    pad = len(starts) * stride - spikes.shape[0]
    spikes = np.concatenate([spikes, np.zeros((pad, record.N), dtype=bool)]).reshape(len(starts), stride, record.N)
    fired = spikes.any(1)  # [F, N]
    on = to_numpy(record.images[b]).reshape(-1) > 0 if record.images is not None \
        else to_numpy(record.spikes[:, b]).any(0)
    base = np.where(on[:, None], np.asarray(SILENT_ON[background]), np.asarray(BACKGROUNDS[background]))  # [N, 3]
    if colour == "group":
        lab = _labels_for(record, b, labels)
        pal = np.asarray(GROUP_COLOURS, dtype=np.float64)
        pixel_rgb = pal[(lab - 1) % len(pal)]
        pixel_rgb[lab <= 0] = UNLABELLED_SPIKE[background]
        spike_rgb = np.broadcast_to(pixel_rgb, fired.shape + (3,))
    else:
        T = require_cycle(record, "binding_frames(colour='phase')")
        wname, w = _auto_weight(record, weight, None)
        slot_rgb = np.clip(phase_weights(T, wname, w)[:, None] * phase_hues(T), 0.0, 1.0)  # [T, 3]
        steps = s0 + np.arange(stride)[None, :, None] + stride * np.arange(len(starts))[:, None, None]
        last = np.where(spikes, steps, -1).max(1)  # [F, N]: step of the last spike in the window
        spike_rgb = slot_rgb[np.maximum(last, 0) % T]
    rgb = np.where(fired[..., None], spike_rgb, base[None])
    return starts, rgb.reshape(len(starts), H, W_, 3)


def _step_label(n: int, stride: int, cycle: int | None) -> str:
    where = f"steps {n}-{n + stride - 1}" if stride > 1 else f"step {n}"
    if cycle:
        k, t = divmod(n, cycle)
        where += f" (cycle {k}, slot {t})" if stride == 1 else f" (from cycle {k}, slot {t})"
    return where


def binding_animation_figure(record, b: int = 0, colour: str = "group", *, stride: int = 1, start: int = 0,
                             stop: int | None = None, labels: Any = None, background: str = "black",
                             weight: Any = None, frame_ms: int = 120, size: int = 360,
                             title: str | None = None) -> go.Figure:
    """Animation of the spiking coding space of sample ``b``: one frame per step (or per ``stride`` steps)
    over steps ``start:stop`` (default all, e.g. 300 for 30 cycles), with a play button and a step slider.
    Left: the image grid (see ``binding_frames`` for the colours). Right: spikes per step of each group
    (or in total) with the current frame's window shaded. About 3 kB per frame for 28x28 images."""
    starts, rgb = binding_frames(record, b, colour, stride=stride, start=start, stop=stop, labels=labels,
                                 background=background, weight=weight)
    b = check_batch(record, b)
    frames_u8 = np.round(255 * rgb).astype(np.uint8)
    _, s0, s1 = _frame_starts(record.T, start, stop, stride)
    block = to_numpy(record.spikes[s0:s1, b]).astype(bool)
    steps = np.arange(s0, s1)
    total = block.sum(1)
    ymax = max(int(total.max(initial=0)), 1) * 1.05

    fig = make_subplots(rows=1, cols=2, column_widths=[0.42, 0.58], horizontal_spacing=0.08,
                        subplot_titles=["spiking coding space", "spikes per step"])
    hover = "x=%{x} y=%{y}<extra></extra>"
    fig.add_trace(go.Image(z=frames_u8[0], name="frame", hovertemplate=hover), row=1, col=1)  # trace 0
    fig.add_trace(_window_marker(s0, stride, ymax), row=1, col=2)  # trace 1: moves with the frames
    if colour == "group":
        lab = _labels_for(record, b, labels)
        for g in [int(g) for g in np.unique(lab) if g > 0]:
            fig.add_scatter(x=steps, y=block[:, lab == g].sum(1), mode="lines", name=f"object {g}",
                            line=dict(color=css(GROUP_COLOURS[(g - 1) % len(GROUP_COLOURS)]), width=1, shape="hv"),
                            row=1, col=2)
    fig.add_scatter(x=steps, y=total, mode="lines", name="all pixels", line=dict(color="#444", width=1.5, shape="hv"),
                    row=1, col=2)
    names = [str(int(n)) for n in starts]
    titles = [f"{title or f'binding animation, sample {b}'}: {_step_label(int(n), stride, record.cycle)}, "
              f"{int(block[int(n) - s0: int(n) - s0 + stride].sum())} spikes" for n in starts]
    fig.frames = [go.Frame(name=name, data=[go.Image(z=z), _window_marker(int(n), stride, ymax)], traces=[0, 1],
                           layout=dict(title_text=t))
                  for name, z, n, t in zip(names, frames_u8, starts, titles)]
    play = dict(frame=dict(duration=int(frame_ms), redraw=True), fromcurrent=True, transition=dict(duration=0))
    pause = dict(frame=dict(duration=0, redraw=False), mode="immediate", transition=dict(duration=0))
    fig.update_layout(
        title=titles[0], height=size + 170, width=int(size * 2.4), plot_bgcolor="white",
        margin=dict(l=10, r=10, t=70, b=10),
        legend=dict(x=1.0, y=1.0, xanchor="right", yanchor="top", bgcolor="rgba(255,255,255,0.7)"),
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.05, xanchor="left", yanchor="top",
                          showactive=False, buttons=[dict(label="play", method="animate", args=[None, play]),
                                                     dict(label="pause", method="animate", args=[[None], pause])])],
        sliders=[dict(active=0, x=0.14, len=0.86, y=-0.02, yanchor="top", currentvalue=dict(prefix="step "),
                      steps=[dict(label=name, method="animate",
                                  args=[[name], dict(frame=dict(duration=0, redraw=True), mode="immediate",
                                                     transition=dict(duration=0))]) for name in names])],
    )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x", row=1, col=1)
    fig.update_xaxes(title_text="step", range=[s0 - 0.5, s1 - 0.5], row=1, col=2)
    fig.update_yaxes(range=[0, ymax], row=1, col=2)
    return fig


def _window_marker(n: int, stride: int, ymax: float) -> go.Scatter:
    x0, x1 = n - 0.5, n + stride - 0.5
    # the axes are explicit: frames replace the trace, and a frame trace without them would land on x/y
    return go.Scatter(x=[x0, x1, x1, x0, x0], y=[0, 0, ymax, ymax, 0], mode="lines", fill="toself",
                      xaxis="x2", yaxis="y2", fillcolor="rgba(214,39,40,0.25)",
                      line=dict(color="rgba(214,39,40,0.8)", width=1),
                      name="current frame", showlegend=False, hoverinfo="skip")


# --- neuron inspector -----------------------------------------------------------------------------


def _as_trace(trace: Any) -> Any:
    """Accept a GustTrace or anything carrying one as ``.trace`` (a GustRun)."""
    inner = getattr(trace, "trace", None)
    if inner is not None and not hasattr(trace, "c"):
        trace = inner
    for attr in ("record", "c", "refractory"):
        if not hasattr(trace, attr):
            raise TypeError(f"expected a GustTrace (run_gust(..., trace=True).trace), got {type(trace).__name__} "
                            f"without .{attr}")
    return trace


def _pixel_index(record, pixel: Any) -> int:
    N = record.N
    if isinstance(pixel, (tuple, list)):
        shape = require_image_shape(record, "a (row, col) pixel")
        if len(pixel) != 2:
            raise ValueError(f"pixel must be an index 0..{N - 1} or (row, col), got {pixel!r}")
        r, c = (int(v) for v in pixel)
        if not (0 <= r < shape[0] and 0 <= c < shape[1]):
            raise IndexError(f"pixel (row, col) = {tuple(pixel)} outside the {shape[0]}x{shape[1]} image")
        return r * shape[1] + c
    if isinstance(pixel, bool) or not isinstance(pixel, (int, np.integer)) or not 0 <= pixel < N:
        raise IndexError(f"pixel must be an index 0..{N - 1} or (row, col), got {pixel!r}")
    return int(pixel)


def _step_window(T: int, steps: Any) -> tuple[int, int]:
    if steps is None:
        return 0, T
    if isinstance(steps, range):
        steps = (steps.start, steps.stop)
    if isinstance(steps, slice):
        s0, s1, _ = steps.indices(T)
    else:
        s0, s1, _ = slice(*steps).indices(T)
    if s1 <= s0:
        raise ValueError(f"empty step window {steps!r} for a trace of {T} steps")
    return s0, s1


def default_pixel(trace: Any, b: int = 0) -> int:
    """The on-pixel of sample ``b`` that fires most (a lively neuron to look at first)."""
    trace = _as_trace(trace)
    rec = trace.record
    b = check_batch(rec, b)
    counts = to_numpy(rec.spikes[:, b]).sum(0).astype(np.int64)
    return int(np.argmax(counts))


def neuron_inspector_figure(trace: Any, pixel: Any, b: int = 0, steps: Any = None, *,
                            title: str | None = None) -> go.Figure:
    """One pixel neuron of sample ``b`` over ``steps`` ((start, stop), range or slice; default all), from a
    ``GustTrace``. Top: c_t (the prediction the neuron received) and P(spike) = x * c_t while the gate is
    open (0 when closed or for an off-pixel). Middle: spikes. Bottom: the refractory counter after each
    step (tau_rfr - 1 right after a spike, then down to 0: the gate opens again). Dotted lines: cycles."""
    trace = _as_trace(trace)
    rec = trace.record
    b = check_batch(rec, b)
    i = _pixel_index(rec, pixel)
    s0, s1 = _step_window(rec.T, steps)
    x = np.arange(s0, s1)
    c = to_numpy(trace.c[s0:s1, b, i]).astype(np.float64)
    ref_all = to_numpy(trace.refractory[:, b, i]).astype(np.int64)
    ref = ref_all[s0:s1]
    gate = np.concatenate([[0], ref_all[:-1]])[s0:s1] == 0
    spikes = to_numpy(rec.spikes[s0:s1, b, i]).astype(bool)
    xi = 1.0 if rec.images is None else float(to_numpy(rec.images[b]).reshape(-1)[i])
    prob = np.clip(xi * c, 0, 1) * gate
    T = rec.cycle
    cyc = np.stack([x // T, x % T], 1) if T else np.stack([x, x], 1)

    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.45, 0.2, 0.35],
                        subplot_titles=["top-down prediction c_t and firing probability", "spikes",
                                        "refractory counter r (after the step)"])
    where = "cycle %{customdata[0]}, slot %{customdata[1]}" if T else "step %{x}"
    fig.add_scatter(x=x, y=c, customdata=cyc, mode="lines", name="c_t", line=dict(color=C_COLOR, shape="hv"),
                    hovertemplate=f"step %{{x}} ({where})<br>c = %{{y:.3f}}<extra></extra>", row=1, col=1)
    fig.add_scatter(x=x, y=prob, customdata=cyc, mode="lines", name="P(spike) = x·c_t·gate",
                    line=dict(color=P_COLOR, shape="hv", dash="dot"),
                    hovertemplate="step %{x}<br>P = %{y:.3f}<extra></extra>", row=1, col=1)
    fig.add_scatter(x=x[spikes], y=np.ones(int(spikes.sum())), customdata=cyc[spikes], mode="markers", name="spike",
                    marker=dict(symbol="line-ns-open", size=18, color=SPIKE_COLOR,
                                line=dict(width=2, color=SPIKE_COLOR)),
                    hovertemplate=f"spike at step %{{x}} ({where})<extra></extra>", row=2, col=1)
    fig.add_scatter(x=x, y=ref, customdata=cyc, mode="lines", name="refractory r",
                    line=dict(color=REF_COLOR, shape="hv"),
                    hovertemplate="step %{x}<br>r = %{y}<extra></extra>", row=3, col=1)
    if T:
        bounds = np.arange(-(-s0 // T) * T, s1 + 1, T) - 0.5
        for row, top in ((1, 1.05), (2, 1.5), (3, max(int(ref_all.max(initial=0)), 1) + 0.5)):
            bx = np.repeat(bounds, 3)
            by = np.tile([-0.05 if row == 1 else -0.5, top, np.nan], len(bounds))
            bx[2::3] = np.nan
            fig.add_scatter(x=bx, y=by, mode="lines", line=dict(color="rgba(120,120,120,0.45)", width=1, dash="dot"),
                            name="cycle boundary", showlegend=row == 1, hoverinfo="skip", row=row, col=1)
    shape = rec.image_shape
    at = f"row {i // shape[1]}, col {i % shape[1]}" if shape else f"neuron {i}"
    label = "" if rec.labels is None else f", label {int(to_numpy(rec.labels[b])[i])}"
    isi = np.diff(np.flatnonzero(to_numpy(rec.spikes[:, b, i])))
    fig.update_layout(
        title=title or (f"pixel {i} ({at}), sample {b}: x = {xi:g}{label}; {int(spikes.sum())} spikes in steps "
                        f"{s0}-{s1 - 1}" + (f" (min ISI over all steps {int(isi.min())})" if isi.size else "")),
        height=520, plot_bgcolor="white", margin=dict(l=60, r=10, t=70, b=40),
        legend=dict(orientation="h", y=-0.12), hovermode="x")
    fig.update_yaxes(range=[-0.05, 1.05], title_text="probability", row=1, col=1)
    fig.update_yaxes(range=[-0.5, 1.5], showticklabels=False, row=2, col=1)
    fig.update_yaxes(range=[-0.5, max(int(ref_all.max(initial=0)), 1) + 0.5], title_text="r", row=3, col=1)
    fig.update_xaxes(range=[s0 - 0.5, s1 - 0.5])
    fig.update_xaxes(title_text="step", row=3, col=1)
    return fig


def pixel_locator_figure(trace: Any, pixel: Any, b: int = 0, *, size: int = 260) -> go.Figure:
    """The input of sample ``b`` (on-pixels grey, or coloured by ground-truth group) with ``pixel`` ringed;
    in ``NeuronInspector`` a click on it picks the pixel."""
    trace = _as_trace(trace)
    rec = trace.record
    H, W_ = require_image_shape(rec, "pixel_locator_figure")
    b = check_batch(rec, b)
    i = _pixel_index(rec, pixel)
    on = to_numpy(rec.images[b]).reshape(-1) > 0 if rec.images is not None else np.ones(rec.N, bool)
    rgb = np.where(on[:, None], 0.55, 0.0) * np.ones(3)
    if rec.labels is not None:
        lab = to_numpy(rec.labels[b]).astype(np.int64)
        pal = np.asarray(GROUP_COLOURS)
        rgb = np.where((lab > 0)[:, None], pal[(lab - 1) % len(pal)], rgb)
    fig = go.Figure(go.Image(z=np.round(255 * rgb.reshape(H, W_, 3)).astype(np.uint8), name="input",
                             hovertemplate="row %{y}, col %{x}<extra>click to inspect</extra>"))
    fig.add_scatter(x=[i % W_], y=[i // W_], mode="markers", name="pixel", hoverinfo="skip", showlegend=False,
                    marker=dict(symbol="square-open", size=max(8, size // W_ + 4), color="red", line=dict(width=2)))
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x")
    fig.update_layout(title=f"pixel {i}", width=size, height=size + 40, margin=dict(l=5, r=5, t=35, b=5))
    return fig


class NeuronInspector:
    """Pick a pixel (row / column sliders, or a click on the image) and a step window; shows c_t, spikes
    and refractory counter of that pixel neuron (``neuron_inspector_figure``). ``trace`` is a ``GustTrace``
    (or a ``GustRun`` run with ``trace=True``)."""

    def __init__(self, trace: Any, pixel: Any = None, *, b: int = 0, steps: Any = None):
        self.trace = _as_trace(trace)
        rec = self.trace.record
        H, W_ = require_image_shape(rec, "NeuronInspector")
        b = check_batch(rec, b)
        i = default_pixel(self.trace, b) if pixel is None else _pixel_index(rec, pixel)
        s0, s1 = _step_window(rec.T, steps)
        self.b = W.IntSlider(value=b, min=0, max=max(rec.B - 1, 0), description="sample", disabled=rec.B == 1)
        self.row = W.IntSlider(value=i // W_, min=0, max=H - 1, description="row")
        self.col = W.IntSlider(value=i % W_, min=0, max=W_ - 1, description="column")
        self.steps = W.IntRangeSlider(value=(s0, s1), min=0, max=rec.T, description="steps", continuous_update=False,
                                      layout=W.Layout(width="480px"))
        self._hold = False
        self.locator = figure_widget(self._locator())
        self.figure = figure_widget(self._build())
        try:  # clicks need a live front end; the sliders always work
            self.locator.data[0].on_click(self._on_click)
        except Exception:  # pragma: no cover - depends on the plotly/anywidget front end
            pass
        for c in (self.b, self.row, self.col, self.steps):
            c.observe(self._on_change, names="value")
        self.widget = W.VBox([W.HBox([self.b, self.row, self.col]), self.steps, W.HBox([self.locator, self.figure])])

    @property
    def pixel(self) -> int:
        return self.row.value * self.trace.record.image_shape[1] + self.col.value

    def _window(self) -> tuple[int, int]:
        s0, s1 = self.steps.value
        if s1 <= s0:  # a squeezed range slider: show one step
            s1 = min(s0 + 1, self.trace.record.T)
            s0 = s1 - 1
        return s0, s1

    def _locator(self) -> go.Figure:
        return pixel_locator_figure(self.trace, self.pixel, self.b.value)

    def _build(self) -> go.Figure:
        return neuron_inspector_figure(self.trace, self.pixel, self.b.value, self._window())

    def _on_change(self, _change=None) -> None:
        if not self._hold:
            refresh(self.locator, self._locator())
            refresh(self.figure, self._build())

    def _on_click(self, _trace, points, _state) -> None:
        if getattr(points, "xs", None) and getattr(points, "ys", None):
            self.set(row=int(round(points.ys[0])), col=int(round(points.xs[0])))

    def set(self, *, b: int | None = None, row: int | None = None, col: int | None = None,
            pixel: Any = None, steps: Sequence[int] | None = None) -> "NeuronInspector":
        """Programmatic control (notebooks, tests): checks the values (sliders would clamp them silently),
        sets them and redraws once. ``pixel`` (index or (row, col)) overrides ``row`` / ``col``."""
        rec = self.trace.record
        b = None if b is None else check_batch(rec, b)
        if pixel is not None:
            i = _pixel_index(rec, pixel)
            row, col = divmod(i, rec.image_shape[1])
        elif row is not None or col is not None:
            _pixel_index(rec, (self.row.value if row is None else row, self.col.value if col is None else col))
        window = None if steps is None else _step_window(rec.T, steps)
        with holding(self):
            assign(((self.b, b), (self.row, row), (self.col, col), (self.steps, window)))
        self._on_change()
        return self

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

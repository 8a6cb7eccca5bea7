"""Grouping views: ground-truth / predicted groups and phase colouring of one cycle.

Phase colouring (DASBE spec §6.3, GUST spec §5.5) paints each pixel with the hues of the slots it
fired in during one cycle, so pixels that fire in the same phase get the same colour:
``RGB = clip(sum_t s_t * weight_t * rgb(hue_t), 0, 1)`` with ``hue_t = (t/T + 2/3) mod 1`` (HSV,
s = v = 1; slot 0 is blue). The two papers differ only in ``weight_t``, so it is a parameter.
"""

from __future__ import annotations

from typing import Callable, Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._style import (
    BACKGROUNDS,
    GROUP_PALETTE,
    OVERLAP_GREY,
    assign,
    check_batch,
    check_cycle,
    figure_widget,
    holding,
    refresh,
    require_cycle,
    require_image_shape,
    to_numpy,
)

WeightFn = Callable[[np.ndarray, int], np.ndarray]


def dasbe_weight(t: np.ndarray, T: int, w: float = 29 / 8) -> np.ndarray:
    """DASBE §6.3: 0.5 (sin(2 pi w t / T) + 1); w = D / r (the reference hard-codes 29/8)."""
    return 0.5 * (np.sin(2 * np.pi * w * t / T) + 1)


def gust_weight(t: np.ndarray, T: int, w: float = 29 / 9 / 2) -> np.ndarray:
    """GUST §5.5: 0.25 sin(2 pi w t / T + 0.2) + 0.75, in [0.5, 1]."""
    return 0.25 * np.sin(2 * np.pi * w * t / T + 0.2) + 0.75


PHASE_WEIGHTS: dict[str, Callable[..., np.ndarray]] = {"dasbe": dasbe_weight, "gust": gust_weight}


def phase_weights(T: int, weight: str | WeightFn = "dasbe", w: float | None = None) -> np.ndarray:
    """Per-slot weights ``[T]``. ``weight`` is a preset name or a callable ``f(t, T) -> [T]``."""
    t = np.arange(T, dtype=np.float64)
    if callable(weight):
        return np.asarray(weight(t, T), dtype=np.float64)
    if weight not in PHASE_WEIGHTS:
        raise ValueError(f"unknown phase weight {weight!r}; use one of {sorted(PHASE_WEIGHTS)} or a callable f(t, T)")
    fn = PHASE_WEIGHTS[weight]
    return fn(t, T) if w is None else fn(t, T, w)


def hsv_to_rgb(h: np.ndarray) -> np.ndarray:
    """Hue in [0, 1) with s = v = 1 -> RGB ``[..., 3]`` (vectorised colorsys.hsv_to_rgb)."""
    h = np.asarray(h, dtype=np.float64)
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    one, zero, q, t = np.ones_like(f), np.zeros_like(f), 1.0 - f, f
    table = np.stack(  # rows: the six sectors of the hue circle
        [np.stack(c, -1) for c in [(one, t, zero), (q, one, zero), (zero, one, t), (zero, q, one), (t, zero, one), (one, zero, q)]]
    )
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def phase_hues(T: int) -> np.ndarray:
    """RGB ``[T, 3]`` of each slot: hue_t = (t/T + 2/3) mod 1."""
    return hsv_to_rgb((np.arange(T) / T + 2 / 3) % 1.0)


def phase_colors(spikes_block, weight: str | WeightFn = "dasbe", w: float | None = None) -> np.ndarray:
    """Colour ``[N, 3]`` in [0, 1] of each neuron from one cycle's spikes ``[T, N]``."""
    s = to_numpy(spikes_block).astype(np.float64)
    if s.ndim != 2:
        raise ValueError(f"spikes_block must be [T, N] (one cycle of one sample); got shape {s.shape}")
    T = s.shape[0]
    slot_rgb = phase_weights(T, weight, w)[:, None] * phase_hues(T)  # [T, 3]
    return np.clip(s.T @ slot_rgb, 0.0, 1.0)


def group_image(labels, image_shape, palette=GROUP_PALETTE, *, image=None, background: str = "black") -> np.ndarray:
    """RGB ``[H, W, 3]`` of group labels ``[N]``: objects in palette colours, label 0 in the
    background colour, or grey (overlap) where ``image`` (``[N]``) is on."""
    lab = to_numpy(labels).astype(np.int64).reshape(-1)
    H, W_ = image_shape
    if lab.size != H * W_:
        raise ValueError(f"labels has {lab.size} entries but image_shape {tuple(image_shape)} needs {H * W_}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {sorted(BACKGROUNDS)}, got {background!r}")
    pal = np.asarray(palette, dtype=np.float64)
    rgb = pal[(lab - 1) % len(pal)]
    rgb[lab == 0] = BACKGROUNDS[background]
    if image is not None:
        rgb[(lab == 0) & (to_numpy(image).reshape(-1) > 0)] = OVERLAP_GREY
    return rgb.reshape(H, W_, 3)


def _auto_weight(record, weight, w):
    """Pick the paper's weighting from the record's metadata when not given (GUST records say so
    in meta['model']; DASBE records may carry D and r, giving w = D / r)."""
    meta = record.meta or {}
    if weight is None:
        weight = meta.get("phase_weight") or ("gust" if "gust" in str(meta.get("model", "")).lower() else "dasbe")
    if w is None and weight == "dasbe" and meta.get("D") and meta.get("r"):
        w = float(meta["D"]) / float(meta["r"])
    return weight, w


def phase_image(record, b: int = 0, cycle_index: int = -1, *, weight=None, w=None) -> np.ndarray:
    """Phase colouring ``[H, W, 3]`` of cycle ``cycle_index`` (negative = from the end) of sample ``b``."""
    shape = require_image_shape(record, "phase_image")
    cyc = require_cycle(record, "phase_image")
    b, k = check_batch(record, b), check_cycle(record, cycle_index)
    block = record.spikes[k * cyc : (k + 1) * cyc, b]
    return phase_colors(block, *_auto_weight(record, weight, w)).reshape(*shape, 3)


def _image_trace(rgb: np.ndarray, name: str) -> go.Image:
    return go.Image(z=np.round(255 * rgb).astype(np.uint8), name=name, hovertemplate="x=%{x} y=%{y}<br>rgb=%{z}<extra></extra>")


def _grey(img, shape) -> np.ndarray:
    x = to_numpy(img).astype(np.float64).reshape(*shape, 1)
    return np.clip(x / (x.max() or 1.0), 0.0, 1.0).repeat(3, -1)


def _image_figure(panels: list[tuple[str, np.ndarray]], title: str, size: int = 230) -> go.Figure:
    """One go.Image per panel. Trace names stop at the first comma ("phase, cycle 3" -> "phase") so
    that a FigureWidget sees the same traces when only the cycle changes, and patches them in place."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.02)
    for i, (label, rgb) in enumerate(panels, start=1):
        fig.add_trace(_image_trace(rgb, label.split(",")[0]), row=1, col=i)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x")
    fig.update_layout(title=title, height=size + 90, width=max(320, size * len(panels) + 60), margin=dict(l=10, r=10, t=70, b=10))
    return fig


def _check_pred(record, pred, b: int) -> np.ndarray:
    p = to_numpy(pred).astype(np.int64)
    if p.ndim == 2:  # [B, N] as the widget takes it
        p = p[b]
    if p.shape != (record.N,):
        raise ValueError(f"pred must be [N] = [{record.N}] (or [B, N]) group labels; got shape {to_numpy(pred).shape}")
    return p


def grouping_figure(record, b: int = 0, cycle_index: int | None = -1, pred=None, *, weight=None, w=None) -> go.Figure:
    """Side by side: input image, ground-truth groups, predicted groups (``pred`` [N]) and the phase
    colouring of one cycle. Panels whose data the record lacks are left out; ``cycle_index=None``
    leaves out the phase panel (then the record needs no cycle)."""
    shape = require_image_shape(record, "grouping_figure")
    b = check_batch(record, b)
    image = None if record.images is None else record.images[b]
    panels = []
    if image is not None:
        panels.append(("input", _grey(image, shape)))
    if record.labels is not None:
        panels.append(("ground truth", group_image(record.labels[b], shape, image=image)))
    if pred is not None:
        panels.append(("predicted", group_image(_check_pred(record, pred, b), shape, image=image)))
    if cycle_index is not None:
        require_cycle(record, "grouping_figure")
        k = check_cycle(record, cycle_index)
        panels.append((f"phase, cycle {k}", phase_image(record, b, k, weight=weight, w=w)))
    if not panels:
        raise ValueError("nothing to show: the record has no images or labels, no pred was given and cycle_index=None")
    return _image_figure(panels, f"sample {b}")


def phase_strip_figure(record, b: int = 0, cycles: Sequence[int] | None = None, *, weight=None, w=None) -> go.Figure:
    """A row of phase colourings of sample ``b`` over several cycles (default: up to 7 evenly spaced,
    first and last included, like the papers' strips 0, 5, ..., 29)."""
    require_image_shape(record, "phase_strip_figure")
    require_cycle(record, "phase_strip_figure")
    b = check_batch(record, b)
    if cycles is None:
        K = record.n_cycles
        cycles = sorted(set(np.linspace(0, K - 1, min(K, 7)).round().astype(int).tolist())) if K else [0]
    ks = [check_cycle(record, int(k)) for k in cycles]
    panels = [(f"cycle {k}", phase_image(record, b, k, weight=weight, w=w)) for k in ks]
    return _image_figure(panels, f"phase colouring, sample {b}", size=150)


class GroupColoring:
    """Input / ground truth / prediction / phase colouring of one sample, with a batch selector and a
    cycle slider (the phase panel is updated in place). ``pred`` is ``[B, N]`` (or ``[N]`` when B = 1)."""

    def __init__(self, record, pred=None, *, weight=None, w=None):
        require_image_shape(record, "GroupColoring")
        require_cycle(record, "GroupColoring")
        K = record.n_cycles
        check_cycle(record, -1)  # fail now if there is no complete cycle
        self.record, self.pred, self.w = record, self._batch_pred(record, pred), w
        self.b = W.IntSlider(value=0, min=0, max=record.B - 1, description="sample", disabled=record.B == 1)
        self.cycle = W.IntSlider(value=K - 1, min=0, max=K - 1, description="cycle", disabled=K == 1)
        self.weight = W.Dropdown(options=["dasbe", "gust"], value=_auto_weight(record, weight, None)[0], description="weight")
        self._hold = False
        self.figure = figure_widget(self._build())
        for c in (self.b, self.cycle, self.weight):
            c.observe(self._on_change, names="value")
        self.widget = W.VBox([W.HBox([self.b, self.cycle, self.weight]), self.figure])

    @staticmethod
    def _batch_pred(record, pred):
        if pred is None:
            return None
        p = to_numpy(pred).astype(np.int64)
        p = p[None] if p.ndim == 1 and record.B == 1 else p
        if p.shape != (record.B, record.N):
            raise ValueError(f"pred must be [B, N] = [{record.B}, {record.N}] (or [N] when B = 1); got {to_numpy(pred).shape}")
        return p

    def _build(self) -> go.Figure:
        return grouping_figure(self.record, self.b.value, self.cycle.value, self.pred, weight=self.weight.value, w=self.w)

    def _on_change(self, _change=None) -> None:
        if not self._hold:
            refresh(self.figure, self._build())

    def set(self, *, b: int | None = None, cycle: int | None = None, weight: str | None = None) -> "GroupColoring":
        """Programmatic control (notebooks, tests): checks the values (sliders would clamp them
        silently), sets them and redraws once."""
        b = None if b is None else check_batch(self.record, b)
        cycle = None if cycle is None else check_cycle(self.record, cycle)
        if weight is not None and weight not in self.weight.options:
            raise ValueError(f"weight must be one of {list(self.weight.options)}, got {weight!r}")
        with holding(self):
            assign(((self.b, b), (self.cycle, cycle), (self.weight, weight)))
        self._on_change()
        return self

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

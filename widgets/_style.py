"""Shared colours, argument checks and FigureWidget plumbing for the views in ``widgets/``."""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import numpy as np
import plotly.graph_objects as go

# Object colours (RGB in [0, 1]) for labels 1..K; gold/blue/green first, as in the papers' figures.
GROUP_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.90, 0.70, 0.10),  # gold
    (0.20, 0.45, 0.85),  # blue
    (0.20, 0.70, 0.30),  # green
    (0.85, 0.25, 0.25),  # red
    (0.60, 0.35, 0.75),  # purple
    (0.10, 0.75, 0.80),  # cyan
    (0.95, 0.50, 0.15),  # orange
    (0.55, 0.35, 0.20),  # brown
    (0.90, 0.45, 0.70),  # pink
    (0.55, 0.65, 0.15),  # olive
)
OVERLAP_GREY = (0.55, 0.55, 0.55)  # label 0 where the input is on: overlap pixels
BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}


def group_name(k: int) -> str:
    return "background/overlap" if k == 0 else f"object {k}"


def group_rgb(k: int, palette=GROUP_PALETTE) -> tuple[float, float, float]:
    """Colour of group ``k`` (0 = overlap grey, 1..K cycle through ``palette``)."""
    return OVERLAP_GREY if k == 0 else tuple(palette[(k - 1) % len(palette)])


def css(rgb) -> str:
    r, g, b = (int(round(255 * float(c))) for c in rgb)
    return f"rgb({r},{g},{b})"


def to_numpy(x: Any) -> np.ndarray:
    """Tensor or array-like -> numpy (records hold torch tensors, views work on numpy)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def check_batch(record, b: int) -> int:
    """Normalise batch index ``b`` (negatives allowed) or raise an IndexError naming the valid range."""
    B = record.B
    if not isinstance(b, (int, np.integer)) or not -B <= b < B:
        raise IndexError(f"batch index b={b!r} out of range: valid is 0..{B - 1} (or -{B}..-1) for B={B}")
    return int(b) % B


def require_image_shape(record, view: str) -> tuple[int, int]:
    if record.image_shape is None:
        raise ValueError(
            f"{view} needs pixel neurons, but this record has image_shape=None; "
            "create the SpikeRecord with image_shape=(H, W)"
        )
    return record.image_shape


def require_cycle(record, view: str) -> int:
    if not record.cycle:
        raise ValueError(
            f"{view} needs the cycle length, but this record has cycle=None; "
            "create the SpikeRecord with cycle=<steps per cycle> (DASBE's D, GUST's T)"
        )
    return record.cycle


def check_cycle(record, cycle_index: int) -> int:
    """Normalise a cycle index (negatives count from the last complete cycle)."""
    K = record.n_cycles
    if K == 0:
        raise IndexError(f"record has no complete cycle (T={record.T} < cycle={record.cycle})")
    if not isinstance(cycle_index, (int, np.integer)) or not -K <= cycle_index < K:
        raise IndexError(f"cycle_index={cycle_index!r} out of range: valid is 0..{K - 1} (or -{K}..-1), K={K} cycles")
    return int(cycle_index) % K


def figure_widget(fig: go.Figure) -> go.FigureWidget:
    """A live FigureWidget copy of ``fig``; plotly >= 6 needs the ``anywidget`` package for it."""
    try:
        return go.FigureWidget(fig)
    except ImportError as exc:
        raise ImportError(
            f"the interactive widgets need plotly's FigureWidget ({exc}); install it with "
            "`pip install anywidget`. The pure *_figure functions work without it."
        ) from exc


def _same_structure(a, b) -> bool:
    return len(a) == len(b) and all(
        (x.type, x.name, getattr(x, "xaxis", None), getattr(x, "yaxis", None))
        == (y.type, y.name, getattr(y, "xaxis", None), getattr(y, "yaxis", None))
        for x, y in zip(a, b)
    )


def refresh(fw: go.FigureWidget, fig: go.Figure) -> None:
    """Make ``fw`` show ``fig`` in one message: trace data are patched in place when the trace list
    has the same shape (the common case: a slider moved), and replaced wholesale when it does not
    (e.g. another neuron model with other panels)."""
    with fw.batch_update():
        if _same_structure(fw.data, fig.data):
            for live, new in zip(fw.data, fig.data):
                live.update(new.to_plotly_json(), overwrite=True)
        else:
            fw.data = ()
            fw.add_traces(list(fig.data))
        fw.layout = fig.layout


@contextlib.contextmanager
def holding(view) -> Iterator[None]:
    """Suspend ``view``'s observers (its ``_hold`` flag) while several controls change, so that a
    programmatic ``set`` redraws once instead of once per control."""
    view._hold = True
    try:
        yield
    finally:
        view._hold = False


def assign(pairs: Iterable[tuple[Any, Any]]) -> None:
    """Set ``control.value = value`` for each pair whose value is not None."""
    for control, value in pairs:
        if value is not None:
            control.value = value

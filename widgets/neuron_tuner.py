"""Single-neuron tuner: pick a model from ``workbench.neurons.explore``, move its parameters and the
input, and watch input, PSP, membrane/threshold, spikes and internal state (e.g. the refractory
counter) redraw live."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._style import figure_widget, holding, refresh

# Input sliders shared by every model: name -> (kind, default, min, max, step). Their names are the
# keyword arguments of explore.make_input.
INPUT_CONTROLS: dict[str, tuple[str, float, float, float, float]] = {
    "amplitude": ("float", 1.0, -5.0, 5.0, 0.05),
    "start": ("int", 0, 0, 0, 1),  # max set to T at build time
    "stop": ("int", 0, 0, 0, 1),  # 0..T; T means make_input's default (the end; one step for a pulse)
    "period": ("int", 10, 1, 100, 1),
    "rate": ("float", 0.1, 0.0, 1.0, 0.01),
}


COLORS = {"input": "#1f77b4", "psp": "#ff7f0e", "membrane": "#2ca02c", "threshold": "grey", "spike": "rgb(200,40,40)"}
EXTRA_COLORS = ("#9467bd", "#8c564b", "#17becf", "#e377c2")
HEIGHTS = {"input": 1.0, "psp": 1.0, "membrane": 2.0, "spikes": 0.45}  # extras: 0.7 each


def _panels(trace) -> list[str]:
    """Row names top to bottom; each extra state variable gets its own small row (their scales
    differ: a refractory counter 0..9 next to a drive in [0, 1])."""
    extra = [f"extra:{k}" for k in (trace.extra or {})]
    return ["input"] + (["psp"] if trace.psp is not None else []) + ["membrane", "spikes"] + extra


def _line(x, y, name: str, color: str, **kw) -> go.Scatter:
    return go.Scatter(x=x, y=y, name=name, mode="lines", line=dict(width=1.5, color=color), **kw)


def neuron_figure(trace, title: str = "") -> go.Figure:
    """Stacked panels sharing the time axis: input; PSP (if the model has one); membrane with its
    threshold (drawn as a trace, so dynamic thresholds show) and spike markers; spike ticks; then one
    small panel per extra state variable (``trace.extra``, e.g. the refractory counter)."""
    panels = _panels(trace)
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=[HEIGHTS.get(p, 0.7) for p in panels])
    row = {p: i + 1 for i, p in enumerate(panels)}
    t = np.asarray(trace.t)
    spikes = np.asarray(trace.spikes, dtype=bool)
    membrane = np.asarray(trace.membrane, dtype=float)
    fig.add_trace(_line(t, trace.input, "input", COLORS["input"], line_shape="hv"), row=row["input"], col=1)
    if "psp" in row:
        fig.add_trace(_line(t, trace.psp, "psp", COLORS["psp"]), row=row["psp"], col=1)
    fig.add_trace(_line(t, membrane, "membrane", COLORS["membrane"]), row=row["membrane"], col=1)
    threshold = np.broadcast_to(np.asarray(trace.threshold, dtype=float), t.shape)
    fig.add_trace(go.Scatter(x=t, y=threshold, name="threshold", mode="lines",
                             line=dict(dash="dash", color=COLORS["threshold"], width=1.2)), row=row["membrane"], col=1)
    fig.add_trace(go.Scatter(x=t[spikes], y=membrane[spikes], name="spike", mode="markers",
                             marker=dict(color=COLORS["spike"], size=7, symbol="circle-open", line=dict(width=2))),
                  row=row["membrane"], col=1)
    fig.add_trace(go.Scatter(x=t[spikes], y=np.zeros(int(spikes.sum())), name="spike train", mode="markers", showlegend=False,
                             marker=dict(color=COLORS["spike"], size=14, symbol="line-ns-open", line=dict(width=2))),
                  row=row["spikes"], col=1)
    for i, (name, values) in enumerate((trace.extra or {}).items()):
        fig.add_trace(_line(t, values, name, EXTRA_COLORS[i % len(EXTRA_COLORS)], line_shape="hv"), row=row[f"extra:{name}"], col=1)
    for p in panels:
        fig.update_yaxes(title_text=p.removeprefix("extra:"), row=row[p], col=1)
    fig.update_yaxes(showticklabels=False, showgrid=False, range=[-1, 1], row=row["spikes"], col=1)
    fig.update_xaxes(title_text="t (step × dt)", row=len(panels), col=1)
    n = int(spikes.sum())
    fig.update_layout(title=f"{title} ({n} spike{'s' if n != 1 else ''})".strip(), height=150 * len(panels) + 100,
                      margin=dict(l=70, r=10, t=50, b=40), hovermode="x unified")
    return fig


def _explore():
    # Imported late so that `import widgets` works (e.g. for the raster alone) while the neuron
    # catalogue is absent or broken; the tuner itself needs it.
    from workbench.neurons import explore

    return explore


def _slider(name: str, kind: str, value, lo, hi, step, tooltip: str = "") -> W.Widget:
    cls = W.IntSlider if kind == "int" else W.FloatSlider
    kw = {} if kind == "int" else {"readout_format": ".3g"}
    return cls(value=value, min=lo, max=hi, step=step, description=name, tooltip=tooltip, continuous_update=True,
               style={"description_width": "initial"}, layout=W.Layout(width="340px"), **kw)


class NeuronTuner:
    """Live single-neuron explorer over ``workbench.neurons.explore.NEURON_MODELS``.

    ``.widget`` is the box to display (the object displays itself too), ``.trace`` the latest
    NeuronTrace, ``.figure`` the FigureWidget, ``.set(**values)`` changes anything by name
    (``model``, ``input_kind``, ``seed``, the input sliders or the model's parameter names).
    """

    def __init__(self, model: str = "lif", T: int = 200, seed: int = 0):
        self.explore, self.T = _explore(), int(T)
        models = self.explore.NEURON_MODELS
        self._check_model(model)
        self.model = W.Dropdown(options=[(spec.title, key) for key, spec in models.items()], value=model, description="model")
        self.input_kind = W.Dropdown(options=list(self.explore.INPUT_KINDS), value=models[model].default_input, description="input")
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed", layout=W.Layout(width="180px"))
        self.inputs = {name: self._input_slider(name, *cfg) for name, cfg in INPUT_CONTROLS.items()}
        self.params: dict[str, W.Widget] = {}
        self.params_box = W.VBox()
        self.help = W.HTML()
        self.status = W.HTML()  # a simulation error from a slider move shows here instead of a traceback
        self._hold = False
        self._build_param_sliders(model)
        self.trace = self._simulate()
        self.figure = figure_widget(self._figure())
        self.model.observe(self._on_model, names="value")
        for c in [self.input_kind, self.seed, *self.inputs.values()]:
            c.observe(self._on_change, names="value")
        inputs = W.VBox([W.HBox([self.input_kind, self.seed]), *self.inputs.values()])
        self.widget = W.VBox([W.HBox([self.model]), self.help, W.HBox([self.params_box, inputs]), self.status, self.figure])

    # --- building --------------------------------------------------------------------------------
    def _check_model(self, key: str) -> None:
        if key not in self.explore.NEURON_MODELS:
            raise ValueError(f"unknown neuron model {key!r}; choose one of {sorted(self.explore.NEURON_MODELS)}")

    def _input_slider(self, name, kind, default, lo, hi, step) -> W.Widget:
        if name in ("start", "stop"):
            default, hi = (0 if name == "start" else self.T), self.T
        return _slider(name, kind, default, lo, hi, step)

    def _build_param_sliders(self, key: str) -> None:
        """One slider per ParamSpec (IntSlider for integer ones); called again on every model change."""
        for s in self.params.values():
            s.unobserve(self._on_change, names="value")
            s.close()
        spec = self.explore.NEURON_MODELS[key]
        self.params = {
            p.name: _slider(p.name, "int" if p.integer else "float", p.default, p.min, p.max, p.step, p.description)
            for p in spec.params
        }
        for s in self.params.values():
            s.observe(self._on_change, names="value")
        self.params_box.children = tuple(self.params.values())
        self.help.value = f"<b>{spec.title}</b>: {spec.description}"

    # --- running ---------------------------------------------------------------------------------
    def param_values(self) -> dict[str, float]:
        return {name: s.value for name, s in self.params.items()}

    def input_values(self) -> dict[str, Any]:
        vals = {name: s.value for name, s in self.inputs.items()}
        # make_input needs start <= stop; a stop slider left of start means "stop at start" (no input)
        vals["stop"] = None if vals["stop"] >= self.T else max(vals["stop"], vals["start"])
        return vals

    def _simulate(self):
        return self.explore.simulate_neuron(self.model.value, self.param_values(), input_kind=self.input_kind.value,
                                            T=self.T, seed=int(self.seed.value), **self.input_values())

    def _figure(self) -> go.Figure:
        fig = neuron_figure(self.trace, self.explore.NEURON_MODELS[self.model.value].title)
        # plotly.js keeps the user's zoom across redraws while uirevision is unchanged: per model
        return fig.update_layout(uirevision=self.model.value)

    def _redraw(self) -> None:
        self.trace = self._simulate()
        self.status.value = ""
        refresh(self.figure, self._figure())

    def _on_change(self, _change=None) -> None:
        """Slider callback: an invalid combination (e.g. tau_s == tau_m) is reported in the box and
        the last good figure stays, rather than a traceback in the widget log."""
        if self._hold:
            return
        try:
            self._redraw()
        except ValueError as exc:
            self.status.value = f"<span style='color:#b00'>not simulated: {html.escape(str(exc))}</span>"

    def _on_model(self, change) -> None:
        self._build_param_sliders(change["new"])
        if self._hold:  # inside set(): it assigns the input and redraws itself
            return
        with holding(self):
            self.input_kind.value = self.explore.NEURON_MODELS[change["new"]].default_input
        self._on_change()

    # --- programmatic use ------------------------------------------------------------------------
    def set(self, **values) -> "NeuronTuner":
        """Set controls by name and redraw once; e.g. ``tuner.set(model="iir", tau_m=5.0, input_kind="step")``.
        Values outside a slider's range raise (a slider would silently clamp them)."""
        values = dict(values)
        key = values.pop("model", self.model.value)
        self._check_model(key)
        valid = {*self.inputs, *(p.name for p in self.explore.NEURON_MODELS[key].params), "input_kind", "seed"}
        unknown = sorted(set(values) - valid)
        if unknown:  # checked before anything changes
            raise KeyError(f"unknown control(s) {unknown} for model {key!r}; valid: {sorted(valid | {'model'})}")
        with holding(self):
            if key != self.model.value:
                self.model.value = key  # rebuilds the parameter sliders
                self.input_kind.value = self.explore.NEURON_MODELS[key].default_input
            controls = {**self.inputs, **self.params, "input_kind": self.input_kind, "seed": self.seed}
            for name, val in values.items():
                self._assign(name, controls[name], val)
        self._redraw()  # programmatic use: a simulation error raises
        return self

    def _assign(self, name: str, ctrl: W.Widget, val) -> None:
        if name == "stop" and val is None:
            val = self.T
        if isinstance(ctrl, W.Dropdown):
            valid = [o[1] if isinstance(o, tuple) else o for o in ctrl.options]
            if val not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {val!r}")
        elif hasattr(ctrl, "min") and not ctrl.min <= val <= ctrl.max:
            raise ValueError(f"{name}={val!r} is outside its range [{ctrl.min}, {ctrl.max}]")
        ctrl.value = val

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

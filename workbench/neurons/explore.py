"""Single-neuron registry for interactive exploration (the NeuronTuner widget calls this).

Each entry of ``NEURON_MODELS`` names a neuron model, its tunable parameters (with slider ranges) and a
``simulate(params, input, seed)`` that runs the real library code on one neuron (B = 1, N = 1) and
returns a ``NeuronTrace`` of numpy arrays. ``simulate_neuron`` is the one-call entry point::

    trace = simulate_neuron("lif", {"tau_mem": 20.0}, input_kind="step", T=200, start=20)

Everything is deterministic given ``seed`` (input draws use numpy's generator, neuron noise a seeded
``torch.Generator``). Boolean options are integer parameters with values 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from workbench.neurons.iir import (
    DualExpIIR,
    DualExpIIRParams,
    DualExpTwoState,
    IIRNeuron,
    IIRNeuronParams,
    LowPass,
    LowPassParams,
    TwoStateParams,
)
from workbench.neurons.lif import LIF, LIFParams
from workbench.neurons.pcnn import PCNNParams, pcnn_initial_state, pcnn_step
from workbench.neurons.stochastic import StochasticNeuron, StochasticParams


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: float
    min: float
    max: float
    step: float
    description: str = ""
    integer: bool = False


@dataclass
class NeuronTrace:
    """One neuron's run; every array is numpy with length T."""

    t: np.ndarray  # step index * dt
    input: np.ndarray  # the input signal fed to the model
    membrane: np.ndarray  # the variable compared with the threshold
    threshold: np.ndarray  # threshold per step
    spikes: np.ndarray  # bool
    psp: np.ndarray | None  # filtered input where the model has a synapse filter, else None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class NeuronModelSpec:
    key: str
    title: str
    description: str
    params: tuple[ParamSpec, ...]
    default_input: str
    simulate: Callable[[Mapping[str, float], np.ndarray, int], NeuronTrace]


INPUT_KINDS: tuple[str, ...] = ("constant", "step", "pulse", "spike_train", "bernoulli")


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


def make_input(
    kind: str,
    T: int,
    *,
    amplitude: float = 1.0,
    start: int = 0,
    stop: int | None = None,
    period: int = 10,
    rate: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """A length-T float64 input signal.

    constant: ``amplitude`` at every step (start/stop ignored). step: ``amplitude`` on [start, stop),
    stop defaulting to T. pulse: ``amplitude`` on [start, stop), stop defaulting to start + 1 (one step).
    spike_train: ``amplitude`` every ``period`` steps from ``start`` until ``stop``. bernoulli: ``amplitude``
    with probability ``rate`` at each step of [start, stop), drawn from numpy's generator with ``seed``.
    """
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {kind!r}; choose one of {list(INPUT_KINDS)}")
    if int(T) != T or T < 1:
        raise ValueError(f"T must be a positive integer number of steps, got {T}")
    if not 0 <= start <= T:
        raise ValueError(f"start must lie in [0, T={T}], got {start}")
    default_stop = start + 1 if kind == "pulse" else T
    stop = min(default_stop, T) if stop is None else stop
    if not start <= stop <= T:
        raise ValueError(f"stop must lie in [start={start}, T={T}], got {stop}")
    if int(period) != period or period < 1:
        raise ValueError(f"period must be a positive integer number of steps, got {period}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be a probability in [0, 1], got {rate}")
    T, start, stop, period = int(T), int(start), int(stop), int(period)
    x = np.zeros(T)
    if kind == "constant":
        x[:] = amplitude
    elif kind in ("step", "pulse"):
        x[start:stop] = amplitude
    elif kind == "spike_train":
        x[start:stop:period] = amplitude
    else:  # draw all T steps so that moving the window does not change the draws inside it
        fires = np.random.default_rng(seed).random(T) < rate
        x[start:stop] = np.where(fires[start:stop], amplitude, 0.0)
    return x


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def _sequence(x: np.ndarray) -> torch.Tensor:
    """[T] numpy -> [T, 1, 1] float32 tensor (one neuron, one batch element)."""
    return torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(-1, 1, 1)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(-1).to(torch.float64).numpy()


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _steps(T: int, dt: float = 1.0) -> np.ndarray:
    return np.arange(T, dtype=np.float64) * dt


def _flag(value: float) -> bool:
    return bool(int(round(value)))


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------


LIF_PARAMS = (
    ParamSpec("tau_mem", 10.0, 1.0, 100.0, 0.5, "membrane time constant τ_mem"),
    ParamSpec("tau_syn", 5.0, 0.0, 50.0, 0.5, "synaptic current time constant τ_syn (0 = no synapse)"),
    ParamSpec("v_th", 1.0, 0.1, 5.0, 0.05, "firing threshold (strict: v > v_th)"),
    ParamSpec("v_reset", 0.0, -2.0, 0.9, 0.05, "reset potential (must stay below v_th)"),
    ParamSpec("v_leak", 0.0, -1.0, 1.0, 0.05, "resting (leak) potential"),
    ParamSpec("weight", 0.5, 0.0, 5.0, 0.05, "input gain: the current receives weight·input"),
    ParamSpec("reset_subtract", 1, 0, 1, 1, "1 = subtract (v_th - v_reset) after a spike, 0 = hard reset", True),
    ParamSpec("dt", 1.0, 0.1, 5.0, 0.1, "time step (same unit as the time constants)"),
)


def simulate_lif(params: Mapping[str, float], x: np.ndarray, seed: int) -> NeuronTrace:
    """LIF with current synapse; psp = synaptic current i, membrane = v before reset."""
    p = _resolve("lif", LIF_PARAMS, params)
    lif_params = LIFParams(
        tau_mem=p["tau_mem"], tau_syn=p["tau_syn"], v_th=p["v_th"], v_reset=p["v_reset"],
        v_leak=p["v_leak"], dt=p["dt"], reset="subtract" if _flag(p["reset_subtract"]) else "hard",
    )
    with torch.no_grad():
        z, rec = LIF(lif_params)(_sequence(x) * p["weight"], record=True)
    return NeuronTrace(
        t=_steps(len(x), p["dt"]), input=np.asarray(x, dtype=np.float64), membrane=_np(rec["v"]),
        threshold=np.full(len(x), lif_params.v_th), spikes=_np(z) > 0, psp=_np(rec["i"]),
        extra={"v_after_reset": _np(rec["v_reset"])},
    )


IIR_FILTERS = ("dual-exp IIR", "low-pass", "two-state dual-exp")
IIR_PARAMS = (
    ParamSpec("filter", 0, 0, 2, 1, "0 = dual-exp IIR, 1 = first-order low-pass, 2 = two-state dual-exp", True),
    ParamSpec("tau_m", 4.0, 1.0, 32.0, 0.5, "τm of the filter and of the neuron's reset/membrane decay"),
    ParamSpec("tau_s", 1.0, 0.5, 16.0, 0.5, "τs of the dual-exp filters (must differ from τm)"),
    ParamSpec("normalise", 0, 0, 1, 1, "dual-exp IIR only: 1 = scale β1 by v0 (peak 1)", True),
    ParamSpec("weight", 1.0, -5.0, 5.0, 0.05, "synaptic weight W: current = W·psp + b"),
    ParamSpec("bias", 0.0, -2.0, 2.0, 0.05, "bias b of the current"),
    ParamSpec("reset_v", 1.0, 0.0, 5.0, 0.05, "size of the decaying subtractive reset"),
    ParamSpec("membrane_filter", 0, 0, 1, 1, "1 = leaky membrane v = dm·v + I - r (0 = faithful default)", True),
)


def _iir_filter(p: Mapping[str, float]) -> torch.nn.Module:
    kind = int(p["filter"])
    if kind == 0:
        return DualExpIIR(1, DualExpIIRParams(p["tau_m"], p["tau_s"], normalise=_flag(p["normalise"])))
    if kind == 1:
        return LowPass(1, LowPassParams(p["tau_m"]))
    if kind == 2:
        return DualExpTwoState(1, TwoStateParams(p["tau_m"], p["tau_s"]))
    raise ValueError(f"filter must be 0, 1 or 2 ({', '.join(IIR_FILTERS)}), got {kind}")


def simulate_iir(params: Mapping[str, float], x: np.ndarray, seed: int) -> NeuronTrace:
    """Input -> filter (psp) -> current W·psp + b -> SNN-IIR neuron (threshold 1, decaying reset)."""
    p = _resolve("iir", IIR_PARAMS, params)
    neuron_params = IIRNeuronParams(
        tau_m=p["tau_m"], reset_v=p["reset_v"], membrane_filter=_flag(p["membrane_filter"])
    )
    neuron = IIRNeuron(neuron_params)
    with torch.no_grad():
        psp = _iir_filter(p)(_sequence(x))
        s, rec = neuron(p["weight"] * psp + p["bias"], record=True)
    return NeuronTrace(
        t=_steps(len(x)), input=np.asarray(x, dtype=np.float64), membrane=_np(rec["v"]),
        threshold=np.full(len(x), neuron.params.threshold), spikes=_np(s) > 0, psp=_np(psp),
        extra={"reset": _np(rec["r"])},
    )


GAIN_DESCRIPTION = "gain c multiplying the input: drive = input·c (keep it in [0, 1])"
DASBE_PARAMS = (
    ParamSpec("refractory", 9, 0, 30, 1, "r: silent steps after a spike (minimum ISI r + 1)", True),
    ParamSpec("gain", 0.5, 0.0, 1.0, 0.01, GAIN_DESCRIPTION),
    ParamSpec("offset", 1e-5, 0.0, 0.1, 1e-5, "threshold margin: spike iff drive + U > 1 + offset"),
)
GUST_PARAMS = (
    ParamSpec("tau_rfr", 9, 1, 30, 1, "τ_rfr: minimum ISI (τ_rfr - 1 silent steps after a spike)", True),
    ParamSpec("gain", 0.5, 0.0, 1.0, 0.01, GAIN_DESCRIPTION),
)


def _simulate_stochastic(neuron_params: StochasticParams, gain: float, x: np.ndarray, seed: int) -> NeuronTrace:
    drive = _sequence(x) * gain
    with torch.no_grad():
        s, rec = StochasticNeuron(neuron_params)(drive, generator=_generator(seed), record=True)
    return NeuronTrace(
        t=_steps(len(x)), input=np.asarray(x, dtype=np.float64), membrane=_np(rec["membrane"]),
        threshold=np.full(len(x), neuron_params.effective_threshold), spikes=_np(s) > 0, psp=None,
        extra={"refractory": _np(rec["refractory"]), "drive": _np(drive)},
    )


def simulate_stochastic_dasbe(params: Mapping[str, float], x: np.ndarray, seed: int) -> NeuronTrace:
    p = _resolve("stochastic_dasbe", DASBE_PARAMS, params)
    return _simulate_stochastic(StochasticParams.dasbe(p["refractory"], offset=p["offset"]), p["gain"], x, seed)


def simulate_stochastic_gust(params: Mapping[str, float], x: np.ndarray, seed: int) -> NeuronTrace:
    p = _resolve("stochastic_gust", GUST_PARAMS, params)
    return _simulate_stochastic(StochasticParams.gust(p["tau_rfr"]), p["gain"], x, seed)


_PCNN_DEFAULTS = PCNNParams()
PCNN_PARAMS = (
    ParamSpec("beta", _PCNN_DEFAULTS.beta, 0.0, 10.0, 0.1, "linking strength β"),
    ParamSpec("v_l", _PCNN_DEFAULTS.v_l, 0.0, 5.0, 0.1, "linking amplitude V_L"),
    ParamSpec("tau_l", _PCNN_DEFAULTS.tau_l, 0.5, 20.0, 0.5, "linking time constant τ_L"),
    ParamSpec("theta0", _PCNN_DEFAULTS.theta0, 0.0, 10.0, 0.1, "initial threshold θ0"),
    ParamSpec("w_i", _PCNN_DEFAULTS.w_i, 0.0, 10.0, 0.1, "global inhibition w_I (if any pixel fired last step)"),
    ParamSpec("v_theta", _PCNN_DEFAULTS.v_theta, 0.0, 20.0, 0.5, "threshold jump V_θ after a spike (Shapes: 6)"),
    ParamSpec("tau_theta", _PCNN_DEFAULTS.tau_theta, 0.5, 20.0, 0.5, "threshold time constant τ_θ (Shapes: 8)"),
    ParamSpec("keep_prob", _PCNN_DEFAULTS.keep_prob, 0.0, 1.0, 0.05, "feeding keep probability (1 - dropout)"),
    ParamSpec("patch", 9, 1, 15, 2, "side of the uniform patch around the neuron (odd; 1 = isolated)", True),
)


def simulate_pcnn(params: Mapping[str, float], x: np.ndarray, seed: int) -> NeuronTrace:
    """Centre pixel of a uniform patch: every pixel of the patch receives input[t] at step t.

    Neighbours couple through the linking kernel and the global inhibition; patch = 1 isolates the
    neuron (no linking, self-inhibition only). membrane = U, threshold = θ of the centre pixel.
    """
    p = _resolve("pcnn", PCNN_PARAMS, params)
    side = int(p["patch"])
    if side < 1 or side % 2 == 0:
        raise ValueError(f"patch must be an odd integer >= 1 so it has a centre pixel, got {side}")
    pcnn_params = PCNNParams(**{k: v for k, v in p.items() if k != "patch"})
    generator, centre = _generator(seed), side // 2
    image = torch.zeros(1, side, side)
    state = pcnn_initial_state(image, pcnn_params)
    rows: dict[str, list[float]] = {"u": [], "theta": [], "spike": [], "linking": [], "patch_spikes": []}
    with torch.inference_mode():
        for value in x:
            noise = torch.rand(image.shape, generator=generator)
            y, state = pcnn_step(torch.full_like(image, float(value)), state, pcnn_params, noise)
            centre_values = {"u": state.u, "theta": state.theta, "spike": state.y, "linking": state.linking}
            for key, tensor in centre_values.items():
                rows[key].append(float(tensor[0, centre, centre]))
            rows["patch_spikes"].append(float(y.sum()))
    return NeuronTrace(
        t=_steps(len(x)), input=np.asarray(x, dtype=np.float64), membrane=np.array(rows["u"]),
        threshold=np.array(rows["theta"]), spikes=np.array(rows["spike"]) > 0, psp=None,
        extra={"linking": np.array(rows["linking"]), "patch_spikes": np.array(rows["patch_spikes"])},
    )


NEURON_MODELS: dict[str, NeuronModelSpec] = {
    spec.key: spec
    for spec in (
        NeuronModelSpec(
            "lif", "Leaky integrate-and-fire",
            "LIF with an exponential current synapse (exact exponential discretisation); "
            "hard or subtractive reset.",
            LIF_PARAMS, "constant", simulate_lif,
        ),
        NeuronModelSpec(
            "iir", "SNN-IIR neuron",
            "Input filtered by a dual-exponential IIR, low-pass or two-state PSP filter, then the SNN-IIR neuron "
            "with strict threshold 1 and a decaying subtractive reset.",
            IIR_PARAMS, "constant", simulate_iir,
        ),
        NeuronModelSpec(
            "stochastic_dasbe", "Stochastic pixel neuron (DASBE)",
            "Memoryless: spikes iff drive + U(0,1) > 1 + offset, then r silent steps. P(spike) = drive - offset.",
            DASBE_PARAMS, "constant", simulate_stochastic_dasbe,
        ),
        NeuronModelSpec(
            "stochastic_gust", "Stochastic pixel neuron (GUST)",
            "Memoryless: spikes iff drive + U(0,1) > 1 with an open gate; r = max(0, r - 1 + τ_rfr·s).",
            GUST_PARAMS, "constant", simulate_stochastic_gust,
        ),
        NeuronModelSpec(
            "pcnn", "PCNN pixel",
            "Pulse-coupled neuron at the centre of a uniform patch: feeding with dropout, linking from "
            "neighbours, global inhibition and a dynamic threshold.",
            PCNN_PARAMS, "constant", simulate_pcnn,
        ),
    )
}


def _resolve(key: str, specs: tuple[ParamSpec, ...], params: Mapping[str, float] | None) -> dict[str, float]:
    """Defaults overridden by ``params``; unknown names raise, integer parameters are rounded."""
    params = dict(params or {})
    names = [s.name for s in specs]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for neuron model {key!r}; valid: {names}")
    resolved = {}
    for spec in specs:
        try:
            value = float(params.get(spec.name, spec.default))
        except (TypeError, ValueError):
            raise ValueError(f"parameter {spec.name!r} must be a number, got {params[spec.name]!r}") from None
        resolved[spec.name] = int(round(value)) if spec.integer else value
    return resolved


def get_model(key: str) -> NeuronModelSpec:
    if key not in NEURON_MODELS:
        raise ValueError(f"unknown neuron model {key!r}; choose one of {list(NEURON_MODELS)}")
    return NEURON_MODELS[key]


def simulate_neuron(
    key: str,
    params: Mapping[str, float] | None = None,
    *,
    input_kind: str | None = None,
    T: int = 100,
    seed: int = 0,
    **input_kwargs: float,
) -> NeuronTrace:
    """Run model ``key`` on a ``make_input(input_kind, T, seed=seed, **input_kwargs)`` signal."""
    spec = get_model(key)
    allowed = ("amplitude", "start", "stop", "period", "rate")
    unknown = sorted(set(input_kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown input option(s) {unknown}; valid: {list(allowed)}")
    x = make_input(input_kind or spec.default_input, T, seed=seed, **input_kwargs)
    return spec.simulate(_resolve(key, spec.params, params), x, seed)

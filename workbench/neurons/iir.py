"""SNN-IIR synapse filters and neuron (specs/snn_iir.md §2, §7).

Filters act per channel on time-first input ``x [T, B, *channels]``; all states start at zero on every call.

* ``DualExpIIR``  ψ[t] = α1·ψ[t-1] + α2·ψ[t-2] + β1·x[t];  α1 = dm + ds, α2 = -dm·ds, β1 = dm - ds
  (× v0 with ``normalise=True``). Impulse response dm^(k+1) - ds^(k+1): it answers in the same step.
* ``DualExpTwoState``  m = dm·m + x, q = ds·q + x, ψ = v0·(m - q): the normalised form, one step later.
* ``LowPass``  ψ[t] = α·ψ[t-1] + x[t],  α = exp(-1/τ).
* ``IIRNeuron``  v = [dm·v] + I - r;  s = spike(v - 1) (strict, Gaussian surrogate σ = 0.4);
  r = dm·r + reset_v·s: a decaying subtractive self-inhibition, not detached.

Here dm = exp(-1/τm), ds = exp(-1/τs), η = τm/τs and v0 = η^(η/(η-1))/(η-1) scales the continuous kernel
exp(-t/τm) - exp(-t/τs) to a peak of 1.

The filters are linear and time-invariant, so the default ``impl="auto"`` computes the impulse response
h[0..T-1] by running the recursion on an impulse (T tiny steps, differentiable in the coefficients) and
then one causal depthwise convolution of x with h. It falls back to the per-step recursion when a pole
has modulus >= 1, where the growing kernel would lose precision. ``impl="loop"`` always runs the
recursion and is the reference in the tests; ``impl="conv"`` always convolves.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from workbench.checks import check_sequence, require_choice, require_finite, require_positive
from workbench.neurons.surrogate import SpikeFn, resolve_spike_fn

PARAMETRISATIONS = ("free", "stable", "projected")
PROJECTED_MAX_MODULUS = 0.995  # "projected": pole moduli are clipped to this after every optimiser step
IMPLS = ("auto", "conv", "loop")


def dual_exp_constants(tau_m: float, tau_s: float) -> tuple[float, float, float]:
    """(dm, ds, v0) for the dual-exponential kernel with time constants tau_m, tau_s (in steps)."""
    eta = tau_m / tau_s
    v0 = eta ** (eta / (eta - 1.0)) / (eta - 1.0)
    return math.exp(-1.0 / tau_m), math.exp(-1.0 / tau_s), v0


def _check_taus(tau_m: float, tau_s: float) -> None:
    require_positive("tau_m", tau_m)
    require_positive("tau_s", tau_s)
    if tau_m == tau_s:
        raise ValueError(f"tau_m and tau_s must differ (both {tau_m}): the dual-exponential kernel vanishes")


# ----------------------------------------------------------------------------------------------------
# Params
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DualExpIIRParams:
    """Initial constants of ``DualExpIIR``; the trained coefficients live in the module."""

    tau_m: float = 4.0
    tau_s: float = 1.0
    normalise: bool = False
    parametrisation: str = "free"

    def __post_init__(self) -> None:
        _check_taus(self.tau_m, self.tau_s)
        require_choice("parametrisation", self.parametrisation, PARAMETRISATIONS)

    @property
    def dm(self) -> float:
        return dual_exp_constants(self.tau_m, self.tau_s)[0]

    @property
    def ds(self) -> float:
        return dual_exp_constants(self.tau_m, self.tau_s)[1]

    @property
    def v0(self) -> float:
        return dual_exp_constants(self.tau_m, self.tau_s)[2]

    @property
    def continuous_peak_time(self) -> float:
        """Time of the peak of exp(-t/τm) - exp(-t/τs): τm·τs·ln(τm/τs)/(τm - τs)."""
        return self.tau_m * self.tau_s * math.log(self.tau_m / self.tau_s) / (self.tau_m - self.tau_s)

    @property
    def gain(self) -> float:
        """Input gain g in β1 = g·(dm - ds): v0 when normalised, else 1."""
        return self.v0 if self.normalise else 1.0

    def coefficients(
        self, channels: int | Sequence[int] = (), dtype: torch.dtype = torch.float32
    ) -> "IIRCoefficients":
        shape = _as_shape(channels)
        dm, ds = self.dm, self.ds
        values = (dm + ds, -dm * ds, self.gain * (dm - ds))
        return IIRCoefficients(*(torch.full(shape, v, dtype=dtype) for v in values))


@dataclass(frozen=True)
class TwoStateParams:
    """Constants of ``DualExpTwoState`` (the read-out filter of the associative memory is 8/2)."""

    tau_m: float = 4.0
    tau_s: float = 1.0

    def __post_init__(self) -> None:
        _check_taus(self.tau_m, self.tau_s)

    def coefficients(
        self, channels: int | Sequence[int] = (), dtype: torch.dtype = torch.float32
    ) -> "TwoStateCoefficients":
        dm, ds, v0 = dual_exp_constants(self.tau_m, self.tau_s)
        shape = _as_shape(channels)
        return TwoStateCoefficients(
            torch.full(shape, dm, dtype=dtype), torch.full(shape, ds, dtype=dtype), torch.tensor(v0, dtype=dtype)
        )


@dataclass(frozen=True)
class LowPassParams:
    tau: float = 4.0

    def __post_init__(self) -> None:
        require_positive("tau", self.tau)

    @property
    def alpha(self) -> float:
        return math.exp(-1.0 / self.tau)


@dataclass(frozen=True)
class IIRNeuronParams:
    """SNN-IIR neuron: strict threshold, decaying subtractive reset, optional leaky membrane."""

    tau_m: float = 4.0
    reset_v: float = 1.0
    threshold: float = 1.0
    membrane_filter: bool = False
    surrogate: str | SpikeFn = "gaussian"  # default sigma 0.4 = SNN-IIR

    def __post_init__(self) -> None:
        require_positive("tau_m", self.tau_m)
        require_finite("reset_v", self.reset_v)
        require_finite("threshold", self.threshold)
        object.__setattr__(self, "surrogate", resolve_spike_fn(self.surrogate))

    @property
    def dm(self) -> float:
        return math.exp(-1.0 / self.tau_m)


# ----------------------------------------------------------------------------------------------------
# Functional core: coefficients, states, steps, impulse responses
# ----------------------------------------------------------------------------------------------------


class IIRCoefficients(NamedTuple):
    alpha_1: torch.Tensor
    alpha_2: torch.Tensor
    beta_1: torch.Tensor


class IIRState(NamedTuple):
    psi_1: torch.Tensor  # ψ[t-1]
    psi_2: torch.Tensor  # ψ[t-2]


class TwoStateCoefficients(NamedTuple):
    decay_m: torch.Tensor
    decay_s: torch.Tensor
    v0: torch.Tensor


class TwoStateState(NamedTuple):
    m: torch.Tensor
    q: torch.Tensor


class LowPassState(NamedTuple):
    psi: torch.Tensor


def dual_exp_iir_step(
    x: torch.Tensor, state: IIRState | None, coeffs: IIRCoefficients
) -> tuple[torch.Tensor, IIRState]:
    if state is None:
        state = IIRState(torch.zeros_like(x), torch.zeros_like(x))
    psi = coeffs.alpha_1 * state.psi_1 + coeffs.alpha_2 * state.psi_2 + coeffs.beta_1 * x
    return psi, IIRState(psi, state.psi_1)


def two_state_step(
    x: torch.Tensor, state: TwoStateState | None, coeffs: TwoStateCoefficients
) -> tuple[torch.Tensor, TwoStateState]:
    if state is None:
        state = TwoStateState(torch.zeros_like(x), torch.zeros_like(x))
    m = coeffs.decay_m * state.m + x
    q = coeffs.decay_s * state.q + x
    return coeffs.v0 * (m - q), TwoStateState(m, q)


def low_pass_step(
    x: torch.Tensor, state: LowPassState | None, alpha: torch.Tensor
) -> tuple[torch.Tensor, LowPassState]:
    psi = x if state is None else alpha * state.psi + x
    return psi, LowPassState(psi)


def _impulse(step: Callable, coeffs: object, shape: torch.Size, T: int, like: torch.Tensor) -> torch.Tensor:
    """h[0..T-1]: run a filter's own step on a unit impulse (differentiable in the coefficients)."""
    x = torch.zeros(shape, dtype=like.dtype, device=like.device)
    h, state = [], None
    for k in range(T):
        out, state = step(x + 1.0 if k == 0 else x, state, coeffs)
        h.append(out)
    return torch.stack(h)


def dual_exp_iir_impulse(coeffs: IIRCoefficients, T: int) -> torch.Tensor:
    return _impulse(dual_exp_iir_step, coeffs, coeffs.alpha_1.shape, T, coeffs.alpha_1)


def two_state_impulse(coeffs: TwoStateCoefficients, T: int) -> torch.Tensor:
    return _impulse(two_state_step, coeffs, coeffs.decay_m.shape, T, coeffs.decay_m)


def low_pass_impulse(alpha: torch.Tensor, T: int) -> torch.Tensor:
    return _impulse(low_pass_step, alpha, alpha.shape, T, alpha)


def project_poles_(alpha_1: torch.Tensor, alpha_2: torch.Tensor, max_modulus: float = PROJECTED_MAX_MODULUS) -> int:
    """Move the roots of z² - α1·z - α2 inside |z| <= ``max_modulus``, in place; returns how many channels moved.

    Real roots are clipped to [-max_modulus, max_modulus] one by one; a complex pair keeps its angle and takes
    modulus ``max_modulus``. Channels already inside are untouched, so the projection is idempotent."""
    if not 0.0 < max_modulus < 1.0:
        raise ValueError(f"max_modulus must lie in (0, 1), got {max_modulus}")
    with torch.no_grad():
        a1, a2 = alpha_1.detach(), alpha_2.detach()
        disc = a1 * a1 + 4.0 * a2
        real = disc >= 0
        root = disc.clamp(min=0.0).sqrt()
        r1 = ((a1 + root) / 2.0).clamp(-max_modulus, max_modulus)
        r2 = ((a1 - root) / 2.0).clamp(-max_modulus, max_modulus)
        modulus = (-a2).clamp(min=0.0).sqrt()
        scale = (max_modulus / modulus.clamp(min=max_modulus)).clamp(max=1.0)
        outside = iir_pole_moduli(IIRCoefficients(a1, a2, a1)) > max_modulus
        new_a1 = torch.where(real, r1 + r2, a1 * scale)
        new_a2 = torch.where(real, -r1 * r2, a2 * scale * scale)
        alpha_1.copy_(torch.where(outside, new_a1, a1))
        alpha_2.copy_(torch.where(outside, new_a2, a2))
    return int(outside.sum())


def iir_pole_moduli(coeffs: IIRCoefficients) -> torch.Tensor:
    """Per-channel largest modulus of the roots of z² - α1·z - α2 (the filter is stable iff < 1)."""
    a1, a2 = coeffs.alpha_1.detach(), coeffs.alpha_2.detach()
    disc = a1 * a1 + 4.0 * a2
    root = disc.abs().sqrt()
    real = torch.maximum((a1 + root).abs(), (a1 - root).abs()) / 2.0
    complex_pair = (-a2).clamp(min=0.0).sqrt()  # complex roots: |z|² = product of roots = -α2
    return torch.where(disc >= 0, real, complex_pair)


# ----------------------------------------------------------------------------------------------------
# Runs: vectorised (impulse response + causal convolution) or per-step loop
# ----------------------------------------------------------------------------------------------------


def causal_conv(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """ψ[t] = Σ_k h[k]·x[t-k] per channel; x ``[T, B, *S]``, h ``[T, *S]`` (one depthwise conv1d)."""
    T, B = x.shape[:2]
    channels = h[0].numel()
    xc = x.reshape(T, B, channels).permute(1, 2, 0)  # [B, C, T]
    weight = h.reshape(T, channels).flip(0).t().unsqueeze(1)  # conv1d correlates, so flip the kernel
    y = F.conv1d(F.pad(xc, (T - 1, 0)), weight, groups=channels)
    return y.permute(2, 0, 1).reshape(x.shape)


def _run_loop(step: Callable, x: torch.Tensor, coeffs: object) -> torch.Tensor:
    outs, state = [], None
    for t in range(x.shape[0]):
        out, state = step(x[t], state, coeffs)
        outs.append(out)
    return torch.stack(outs)


def _use_conv(impl: str, max_modulus: Callable[[], float]) -> bool:
    require_choice("impl", impl, IMPLS)
    if impl != "auto":
        return impl == "conv"
    modulus = max_modulus()
    if modulus >= 1.0:
        warnings.warn(f"IIR filter pole modulus {modulus:.4f} >= 1 (unstable); using the per-step recursion")
        return False
    return True


def _broadcast_input(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Let x [T, B, C_in] (or [T, B, C_in, 1]) feed per-synapse coefficients [C_in, C_out]."""
    return x.expand(*x.shape[:2], *shape) if tuple(x.shape[2:]) != tuple(shape) else x


def dual_exp_iir_run(x: torch.Tensor, coeffs: IIRCoefficients, impl: str = "auto") -> torch.Tensor:
    x = _broadcast_input(x, coeffs.alpha_1.shape)
    if _use_conv(impl, lambda: float(iir_pole_moduli(coeffs).max())):
        return causal_conv(x, dual_exp_iir_impulse(coeffs, x.shape[0]))
    return _run_loop(dual_exp_iir_step, x, coeffs)


def two_state_run(x: torch.Tensor, coeffs: TwoStateCoefficients, impl: str = "auto") -> torch.Tensor:
    x = _broadcast_input(x, coeffs.decay_m.shape)
    decays = torch.cat([coeffs.decay_m.detach().reshape(-1), coeffs.decay_s.detach().reshape(-1)])
    if _use_conv(impl, lambda: float(decays.abs().max())):
        return causal_conv(x, two_state_impulse(coeffs, x.shape[0]))
    return _run_loop(two_state_step, x, coeffs)


def low_pass_run(x: torch.Tensor, alpha: torch.Tensor, impl: str = "auto") -> torch.Tensor:
    x = _broadcast_input(x, alpha.shape)
    if _use_conv(impl, lambda: float(alpha.detach().abs().max())):
        return causal_conv(x, low_pass_impulse(alpha, x.shape[0]))
    return _run_loop(low_pass_step, x, alpha)


# ----------------------------------------------------------------------------------------------------
# Neuron
# ----------------------------------------------------------------------------------------------------


class IIRNeuronState(NamedTuple):
    v: torch.Tensor
    r: torch.Tensor  # decaying reset (self-inhibition) trace


def iir_neuron_step(
    current: torch.Tensor, state: IIRNeuronState | None, params: IIRNeuronParams
) -> tuple[torch.Tensor, IIRNeuronState]:
    if state is None:
        state = IIRNeuronState(torch.zeros_like(current), torch.zeros_like(current))
    leak = params.dm * state.v if params.membrane_filter else 0.0
    v = leak + current - state.r
    s = params.surrogate(v - params.threshold)
    r = params.dm * state.r + params.reset_v * s
    return s, IIRNeuronState(v, r)


def iir_neuron_run(
    current: torch.Tensor, params: IIRNeuronParams
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Spikes ``[T, B, ...]`` for the input current, plus the traces {"v", "r"} (elementwise loop over T)."""
    state = None
    spikes, vs, rs = [], [], []
    for t in range(current.shape[0]):
        s, state = iir_neuron_step(current[t], state, params)
        spikes.append(s)
        vs.append(state.v)
        rs.append(state.r)
    return torch.stack(spikes), {"v": torch.stack(vs), "r": torch.stack(rs)}


# ----------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------


def _as_shape(channels: int | Sequence[int]) -> torch.Size:
    shape = torch.Size((channels,) if isinstance(channels, int) else tuple(channels))
    if any(int(c) < 1 for c in shape):
        raise ValueError(f"channels must be positive, got {tuple(shape)}")
    return shape


def _check_channels(x: torch.Tensor, shape: torch.Size, name: str) -> None:
    check_sequence(x, "x", f"[T, B, {', '.join(map(str, shape))}]")
    trailing = tuple(x.shape[2:])
    # Size-1 input axes broadcast (per-synapse filters take [T, B, C_in, 1]).
    if len(trailing) != len(shape) or any(a not in (b, 1) for a, b in zip(trailing, shape)):
        raise ValueError(
            f"{name} expects input [T, B, {', '.join(map(str, shape))}], got shape {tuple(x.shape)}"
        )


class _Filter(nn.Module):
    def _tensor(self, name: str, value: torch.Tensor, trainable: bool) -> None:
        if trainable:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)


class DualExpIIR(_Filter):
    """Second-order IIR dual-exponential PSP filter with per-channel coefficients.

    ``parametrisation="free"`` trains α1, α2, β1 directly (faithful). ``"stable"`` trains θm, θs, g with
    dm = sigmoid(θm), ds = sigmoid(θs), β1 = g·(dm - ds): both poles stay real and in (0, 1).
    ``"projected"`` trains α1, α2, β1 like "free" (same step sizes, complex poles allowed) and ``project_()``,
    called by the trainers after every optimiser step, pulls the poles back inside |z| <= 0.995.
    """

    def __init__(
        self,
        channels: int | Sequence[int],
        params: DualExpIIRParams | None = None,
        *,
        trainable: bool = True,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        require_choice("impl", impl, IMPLS)
        self.params = params if params is not None else DualExpIIRParams()
        self.shape = _as_shape(channels)
        self.impl = impl
        p = self.params
        full = lambda v: torch.full(self.shape, float(v))  # noqa: E731
        if p.parametrisation in ("free", "projected"):
            init = p.coefficients(self.shape)
            for name, value in zip(IIRCoefficients._fields, init):
                self._tensor(name, value, trainable)
        else:
            self._tensor("theta_m", torch.logit(full(p.dm)), trainable)
            self._tensor("theta_s", torch.logit(full(p.ds)), trainable)
            self._tensor("gain", full(p.gain), trainable)

    def coefficients(self) -> IIRCoefficients:
        if self.params.parametrisation in ("free", "projected"):
            return IIRCoefficients(self.alpha_1, self.alpha_2, self.beta_1)
        dm, ds = torch.sigmoid(self.theta_m), torch.sigmoid(self.theta_s)
        return IIRCoefficients(dm + ds, -dm * ds, self.gain * (dm - ds))

    def impulse_response(self, T: int) -> torch.Tensor:
        return dual_exp_iir_impulse(self.coefficients(), T)

    def project_(self, max_modulus: float = PROJECTED_MAX_MODULUS) -> int:
        """Pull the poles inside |z| <= ``max_modulus`` ("projected" only; a no-op returning 0 otherwise)."""
        if self.params.parametrisation != "projected":
            return 0
        return project_poles_(self.alpha_1.data, self.alpha_2.data, max_modulus)

    def max_pole_modulus(self) -> float:
        """Largest pole modulus over channels (log it per epoch; >= 1 means unstable)."""
        return float(iir_pole_moduli(self.coefficients()).max())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.shape, "DualExpIIR")
        return dual_exp_iir_run(x, self.coefficients(), self.impl)

    def extra_repr(self) -> str:
        return f"channels={tuple(self.shape)}, {self.params}, impl={self.impl!r}"


class DualExpTwoState(_Filter):
    """Normalised two-state dual-exponential filter ψ = v0·(m - q); h[0] = 0, peak ≈ 1.

    Decays are per channel, fixed by default (``trainable=True`` makes them parameters). ``channels``
    may be ``(C_in, C_out)`` for the per-synapse variant; a ``[T, B, C_in, 1]`` input then broadcasts.
    """

    def __init__(
        self,
        channels: int | Sequence[int],
        params: TwoStateParams | None = None,
        *,
        trainable: bool = False,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        require_choice("impl", impl, IMPLS)
        self.params = params if params is not None else TwoStateParams()
        self.shape = _as_shape(channels)
        self.impl = impl
        init = self.params.coefficients(self.shape)
        self._tensor("decay_m", init.decay_m, trainable)
        self._tensor("decay_s", init.decay_s, trainable)
        self.register_buffer("v0", init.v0)

    def coefficients(self) -> TwoStateCoefficients:
        return TwoStateCoefficients(self.decay_m, self.decay_s, self.v0)

    def impulse_response(self, T: int) -> torch.Tensor:
        return two_state_impulse(self.coefficients(), T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.shape, "DualExpTwoState")
        return two_state_run(x, self.coefficients(), self.impl)

    def extra_repr(self) -> str:
        return f"channels={tuple(self.shape)}, {self.params}, impl={self.impl!r}"


class LowPass(_Filter):
    """First-order low-pass ψ = α·ψ + x with α = exp(-1/τ) per channel (trainable by default).

    No input gain and no normalisation: the DC gain is 1/(1-α).
    """

    def __init__(
        self,
        channels: int | Sequence[int],
        params: LowPassParams | None = None,
        *,
        trainable: bool = True,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        require_choice("impl", impl, IMPLS)
        self.params = params if params is not None else LowPassParams()
        self.shape = _as_shape(channels)
        self.impl = impl
        self._tensor("alpha_1", torch.full(self.shape, self.params.alpha), trainable)

    def impulse_response(self, T: int) -> torch.Tensor:
        return low_pass_impulse(self.alpha_1, T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.shape, "LowPass")
        return low_pass_run(x, self.alpha_1, self.impl)

    def extra_repr(self) -> str:
        return f"channels={tuple(self.shape)}, {self.params}, impl={self.impl!r}"


class IIRNeuron(nn.Module):
    """SNN-IIR spiking neuron over an input current ``[T, B, ...]``; returns spikes ``[T, B, ...]``.

    ``record=True`` also returns ``{"v": membrane, "r": reset trace}``. Gradients flow through the reset.
    """

    def __init__(self, params: IIRNeuronParams | None = None) -> None:
        super().__init__()
        self.params = params if params is not None else IIRNeuronParams()

    def forward(
        self, current: torch.Tensor, *, record: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_sequence(current, "current", "[T, B, ...]")
        spikes, traces = iir_neuron_run(current, self.params)
        return (spikes, traces) if record else spikes

    def extra_repr(self) -> str:
        return repr(self.params)

"""SNN-IIR layers over time-first sequences ``[T, B, ...]`` (specs/snn_iir.md §1, §2, §7).

One layer is: **input-side PSP filter** (one filter per presynaptic channel, shared by all its outgoing
synapses) → **Linear** (one GEMM over ``[T·B, C_in]``) → **IIR neuron** (strict threshold 1, Gaussian
pseudo-gradient σ, decaying subtractive reset, optional membrane filter). Each layer processes the whole
sequence before the next starts, which is exact for feed-forward nets and lets every stage but the
neuron run vectorised over time.

* ``IIRDense``       filter → Linear → neuron; ``psp="dual_exp"`` (mlp_1 / memory), ``"low_pass"`` (mlp_2), ``"none"``.
* ``IIRSynapseDense`` per-synapse two-state filters ``[C_in, C_out]`` (large memory; never a default).
* ``IIRConv2d``, ``IIRAvgPool2d``  conv and pooling variants over ``[T, B, C, H, W]``.
* ``ReadoutFilter``  fixed, normalised two-state read-out filter (τ 8/2 for the associative memory).
* ``iir_neuron_fast`` the neuron's reset recursion as one custom autograd Function: forward and backward
  each run one elementwise pass over T without building a per-step graph. ``impl="loop"`` uses plain
  autograd over the per-step ``iir_neuron_step`` (the reference in the tests).
* ``max_pole_modulus(module)`` the largest pole modulus over every IIR filter inside a module.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from workbench.checks import check_sequence, require_choice, require_positive
from workbench.neurons.iir import (
    DualExpIIR,
    DualExpIIRParams,
    DualExpTwoState,
    IIRNeuronParams,
    LowPass,
    LowPassParams,
    TwoStateParams,
    iir_neuron_run,
    iir_pole_moduli,
)
from workbench.neurons.surrogate import SpikeFunction, surrogate

__all__ = ["PSP_KINDS", "LayerRecord", "IIRDense", "IIRSynapseDense", "IIRConv2d", "IIRAvgPool2d",
           "ReadoutFilter", "iir_neuron_fast", "iir2_fast", "apply_psp", "run_neuron", "make_psp", "max_pole_modulus",
           "project_filters_"]

PSP_KINDS = ("dual_exp", "low_pass", "none")
LAYER_IMPLS = ("auto", "conv", "loop")


class LayerRecord(NamedTuple):
    """Internal traces of one layer: filtered input ``psp [T, B, C_in]``, membrane ``v`` and reset ``r`` ``[T, B, C_out]``."""

    psp: torch.Tensor
    v: torch.Tensor
    r: torch.Tensor


# ----------------------------------------------------------------------------------------------------
# The neuron's reset recursion as one autograd Function
# ----------------------------------------------------------------------------------------------------


class _IIRNeuronFn(torch.autograd.Function):
    """Forward: v = [dm·v] + I - r; s = (v > θ); r = dm·r + reset_v·s, over t = 0..T-1.

    Backward (a_x = dL/dx, a[T] = 0), from t = T-1 down to 0:
        a_r[t] = dm·a_r[t+1] - a_v[t+1]
        a_v[t] = (dL/ds[t] + reset_v·a_r[t])·g(v[t]-θ) + [dm·a_v[t+1]]
        dL/dI[t] = a_v[t]
    where g is the surrogate derivative. Gradients flow through the reset, as in the reference.
    """

    @staticmethod
    def forward(ctx: Any, current: torch.Tensor, dm: float, reset_v: float, threshold: float,
                membrane: bool, spike_fn: SpikeFunction) -> torch.Tensor:
        v_all = torch.empty_like(current)
        r = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            v = v_all[t]
            if membrane and t > 0:
                torch.add(current[t], v_all[t - 1], alpha=dm, out=v)
                v.sub_(r)
            else:
                torch.sub(current[t], r, out=v)
            r.mul_(dm).add_(v > threshold, alpha=reset_v)
        ctx.save_for_backward(v_all)
        ctx.consts = (dm, reset_v, threshold, membrane, spike_fn)
        return (v_all > threshold).to(current.dtype)

    @staticmethod
    def backward(ctx: Any, grad_spikes: torch.Tensor):
        (v_all,) = ctx.saved_tensors
        dm, reset_v, threshold, membrane, spike_fn = ctx.consts
        g = spike_fn.grad(v_all - threshold)
        grad_current = torch.empty_like(v_all)
        a_r = torch.zeros_like(v_all[0])
        a_v = torch.zeros_like(v_all[0])
        for t in range(v_all.shape[0] - 1, -1, -1):
            a_r.mul_(dm).sub_(a_v)
            out = grad_current[t]
            torch.add(grad_spikes[t], a_r, alpha=reset_v, out=out)
            out.mul_(g[t])
            if membrane:
                out.add_(a_v, alpha=dm)
            a_v = out
        return grad_current, None, None, None, None, None


def iir_neuron_fast(current: torch.Tensor, params: IIRNeuronParams) -> torch.Tensor:
    """Spikes of the IIR neuron for ``current [T, B, ...]`` via the one-pass autograd Function.

    Needs a ``SpikeFunction`` surrogate (one with a ``grad``); other callables use ``iir_neuron_run``.
    """
    fn = params.surrogate
    if not isinstance(fn, SpikeFunction):
        raise ValueError(f"iir_neuron_fast needs a named surrogate (SpikeFunction), got {fn!r}; use impl='loop'")
    return _IIRNeuronFn.apply(current, params.dm, float(params.reset_v), float(params.threshold),
                              bool(params.membrane_filter), fn)


def run_neuron(current: torch.Tensor, params: IIRNeuronParams, impl: str = "auto",
               record: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """Spikes (and {"v", "r"} when ``record``): the fast Function unless ``impl="loop"`` or a record is asked."""
    if impl == "loop" or record or not isinstance(params.surrogate, SpikeFunction):
        spikes, traces = iir_neuron_run(current, params)
        return spikes, (traces if record else None)
    return iir_neuron_fast(current, params), None


class _IIR2Fn(torch.autograd.Function):
    """ψ[t] = a1·ψ[t-1] + a2·ψ[t-2] + b·x[t] per channel (zero state), with a one-pass adjoint backward:

        λ[t] = dL/dψ[t] + a1·λ[t+1] + a2·λ[t+2]
        dL/dx[t] = b·λ[t];  dL/da1 = Σ λ[t]·ψ[t-1];  dL/da2 = Σ λ[t]·ψ[t-2];  dL/db = Σ λ[t]·x[t]

    (sums over time and batch). Exact for any coefficients, stable or not: it is the recursion itself.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        psi = x * b
        second_order = bool(a2.ne(0).any())
        for t in range(1, x.shape[0]):
            psi[t].addcmul_(a1, psi[t - 1])
            if second_order and t > 1:
                psi[t].addcmul_(a2, psi[t - 2])
        ctx.second_order = second_order
        ctx.save_for_backward(x, psi, a1, a2, b)
        return psi

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, psi, a1, a2, b = ctx.saved_tensors
        lam = grad.clone()
        T = grad.shape[0]
        for t in range(T - 2, -1, -1):
            lam[t].addcmul_(a1, lam[t + 1])
            if ctx.second_order and t + 2 < T:
                lam[t].addcmul_(a2, lam[t + 2])
        dims = (0, 1)
        g_x = lam * b if ctx.needs_input_grad[0] else None
        g_a1 = (lam[1:] * psi[:-1]).sum(dims) if ctx.needs_input_grad[1] else None
        g_a2 = (lam[2:] * psi[:-2]).sum(dims) if ctx.needs_input_grad[2] else None
        g_b = (lam * x).sum(dims) if ctx.needs_input_grad[3] else None
        return g_x, g_a1, g_a2, g_b


def iir2_fast(x: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Second-order per-channel IIR over ``x [T, B, C]`` (coefficients ``[C]``) via the one-pass Function."""
    shape = x.shape[2:]
    a1, a2, b = (torch.as_tensor(c, dtype=x.dtype, device=x.device).expand(shape) for c in (a1, a2, b))
    return _IIR2Fn.apply(x, a1, a2, b)


def apply_psp(psp: nn.Module, x: torch.Tensor, impl: str = "auto") -> torch.Tensor:
    """Run a layer's input filter on ``x [T, B, C]``. "auto" uses the one-pass recursion Function for
    ``DualExpIIR``/``LowPass`` (on CPU the impulse-response convolution is 5-40x slower, see
    bench/iir_bench.py); "conv"/"loop" defer to the filter module's own implementation."""
    if impl != "auto" or isinstance(psp, nn.Identity):
        return psp(x)
    if isinstance(psp, DualExpIIR):
        c = psp.coefficients()
        coeffs = (c.alpha_1, c.alpha_2, c.beta_1)
    elif isinstance(psp, LowPass):
        coeffs = (psp.alpha_1, torch.zeros((), dtype=x.dtype), torch.ones((), dtype=x.dtype))
    else:
        return psp(x)
    if x.shape[0] > 1 and x.stride(0) == 0:
        # Input constant over time (the direct encoding's expanded view): the output is the filter's step
        # response times the input, exactly; one T-step recursion over [1, C] instead of [B, C].
        step = iir2_fast(torch.ones(x.shape[0], 1, *x.shape[2:], dtype=x.dtype, device=x.device), *coeffs)
        return step * x[0]
    return iir2_fast(x, *coeffs)


# ----------------------------------------------------------------------------------------------------
# PSP filters
# ----------------------------------------------------------------------------------------------------


def make_psp(kind: str, channels: int, *, tau_m: float = 4.0, tau_s: float = 1.0, trainable: bool = True,
             parametrisation: str = "free", normalised: bool = False, impl: str = "auto") -> nn.Module:
    """The input-side filter of a layer: ``DualExpIIR(τm, τs)``, ``LowPass(τ = τm)`` or identity."""
    require_choice("psp", kind, PSP_KINDS)
    filter_impl = "conv" if impl == "conv" else "loop" if impl == "loop" else "auto"
    if kind == "dual_exp":
        params = DualExpIIRParams(tau_m=tau_m, tau_s=tau_s, normalise=normalised, parametrisation=parametrisation)
        return DualExpIIR(channels, params, trainable=trainable, impl=filter_impl)
    if kind == "low_pass":
        return LowPass(channels, LowPassParams(tau=tau_m), trainable=trainable, impl=filter_impl)
    return nn.Identity()


def _neuron_params(tau_m: float, reset_v: float, membrane_filter: bool, sigma: float) -> IIRNeuronParams:
    require_positive("sigma", sigma)
    return IIRNeuronParams(tau_m=tau_m, reset_v=reset_v, membrane_filter=membrane_filter,
                           surrogate=surrogate("gaussian", sigma=sigma))


def _check_input(x: torch.Tensor, features: int, name: str) -> None:
    check_sequence(x, "x", f"[T, B, {features}]")
    if x.dim() != 3 or x.shape[2] != features:
        raise ValueError(f"{name} expects x [T, B, {features}], got shape {tuple(x.shape)}")


class IIRDense(nn.Module):
    """Input filter → Linear → IIR neuron over ``x [T, B, in_features]``; returns spikes ``[T, B, out]``.

    ``psp``: "dual_exp" (``DualExpIIR(tau_m, tau_s)``, unnormalised unless ``normalised=True``;
    ``parametrisation="stable"`` keeps both poles in (0, 1)), "low_pass" (``LowPass(τ = tau_m)``) or "none".
    The neuron uses ``neuron_tau_m`` (default ``tau_m``), ``reset_v``, the Gaussian surrogate ``sigma`` and
    a leaky membrane when ``membrane_filter``. ``impl``: "auto" (vectorised filter + one-pass neuron),
    "conv", or "loop" (per-step recursion with plain autograd: the test reference).
    """

    def __init__(self, in_features: int, out_features: int, *, psp: str = "dual_exp", tau_m: float = 4.0,
                 tau_s: float = 1.0, psp_trainable: bool = True, parametrisation: str = "free",
                 normalised: bool = False, neuron_tau_m: float | None = None, membrane_filter: bool = False,
                 reset_v: float = 1.0, sigma: float = 0.4, bias: bool = True, impl: str = "auto") -> None:
        super().__init__()
        require_choice("impl", impl, LAYER_IMPLS)
        self.in_features, self.out_features, self.impl = int(in_features), int(out_features), impl
        self.psp_kind = psp
        self.psp = make_psp(psp, self.in_features, tau_m=tau_m, tau_s=tau_s, trainable=psp_trainable,
                            parametrisation=parametrisation, normalised=normalised, impl=impl)
        self.linear = nn.Linear(self.in_features, self.out_features, bias=bias)
        self.neuron_params = _neuron_params(tau_m if neuron_tau_m is None else neuron_tau_m, reset_v,
                                            membrane_filter, sigma)

    def forward(self, x: torch.Tensor, record: bool = False) -> torch.Tensor | tuple[torch.Tensor, LayerRecord]:
        _check_input(x, self.in_features, "IIRDense")
        psi = apply_psp(self.psp, x, self.impl)
        current = self.linear(psi)  # nn.Linear on [T, B, C_in] is one GEMM over [T·B, C_in]
        spikes, traces = run_neuron(current, self.neuron_params, self.impl, record)
        return (spikes, LayerRecord(psi, traces["v"], traces["r"])) if record else spikes

    def max_pole_modulus(self) -> float:
        return max_pole_modulus(self)

    def extra_repr(self) -> str:
        p = self.neuron_params
        return (f"psp={self.psp_kind!r}, neuron_tau_m={p.tau_m}, reset_v={p.reset_v}, "
                f"membrane_filter={p.membrane_filter}, surrogate={p.surrogate!r}, impl={self.impl!r}")


class IIRSynapseDense(nn.Module):
    """Per-synapse two-state filters (reference ``synapse_layer``): ψ_ij = v0·(m_ij - q_ij) for every pair
    (i, j), I_j = Σ_i W_ij·ψ_ij + b_j, then the IIR neuron. State ``[T, B, C_in, C_out]``: memory grows as
    T·B·C_in·C_out, so this is an option for small layers, never a default. W is Xavier-uniform."""

    def __init__(self, in_features: int, out_features: int, *, tau_m: float = 4.0, tau_s: float = 1.0,
                 trainable: bool = True, neuron_tau_m: float | None = None, membrane_filter: bool = False,
                 reset_v: float = 1.0, sigma: float = 0.4, bias: bool = True, impl: str = "auto") -> None:
        super().__init__()
        require_choice("impl", impl, LAYER_IMPLS)
        self.in_features, self.out_features, self.impl = int(in_features), int(out_features), impl
        self.psp = DualExpTwoState((self.in_features, self.out_features), TwoStateParams(tau_m, tau_s),
                                   trainable=trainable, impl="auto" if impl == "auto" else impl)
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.in_features, self.out_features)))
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        self.neuron_params = _neuron_params(tau_m if neuron_tau_m is None else neuron_tau_m, reset_v,
                                            membrane_filter, sigma)

    def forward(self, x: torch.Tensor, record: bool = False) -> torch.Tensor | tuple[torch.Tensor, LayerRecord]:
        _check_input(x, self.in_features, "IIRSynapseDense")
        psi = self.psp(x.unsqueeze(-1))  # [T, B, C_in, C_out]
        current = torch.einsum("tbij,ij->tbj", psi, self.weight)
        if self.bias is not None:
            current = current + self.bias
        spikes, traces = run_neuron(current, self.neuron_params, self.impl, record)
        return (spikes, LayerRecord(psi, traces["v"], traces["r"])) if record else spikes

    def max_pole_modulus(self) -> float:
        return max_pole_modulus(self)


def _filter_channels_last(psp: nn.Module, x: torch.Tensor, impl: str = "auto") -> torch.Tensor:
    """Apply a per-channel filter to ``x [T, B, C, H, W]`` (channels folded last, pixels into the batch)."""
    if isinstance(psp, nn.Identity):
        return x
    T, B, C, H, W = x.shape
    flat = x.permute(0, 1, 3, 4, 2).reshape(T, B * H * W, C)
    return apply_psp(psp, flat, impl).reshape(T, B, H, W, C).permute(0, 1, 4, 2, 3)


def _check_image_seq(x: torch.Tensor, channels: int, name: str) -> None:
    check_sequence(x, "x", f"[T, B, {channels}, H, W]")
    if x.dim() != 5 or x.shape[2] != channels:
        raise ValueError(f"{name} expects x [T, B, {channels}, H, W], got shape {tuple(x.shape)}")


class IIRConv2d(nn.Module):
    """Per-input-channel filter → Conv2d (one call over ``[T·B, C, H, W]``) → IIR neuron.

    Input and output are ``[T, B, C, H, W]``; ``dilation`` is passed through (reference defect 12)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *,
                 stride: int = 1, padding: int = 0, dilation: int = 1, psp: str = "dual_exp", tau_m: float = 4.0,
                 tau_s: float = 1.0, psp_trainable: bool = True, parametrisation: str = "free",
                 normalised: bool = False, neuron_tau_m: float | None = None, membrane_filter: bool = False,
                 reset_v: float = 1.0, sigma: float = 0.4, bias: bool = True, impl: str = "auto") -> None:
        super().__init__()
        require_choice("impl", impl, LAYER_IMPLS)
        self.in_channels, self.impl = int(in_channels), impl
        self.psp = make_psp(psp, self.in_channels, tau_m=tau_m, tau_s=tau_s, trainable=psp_trainable,
                            parametrisation=parametrisation, normalised=normalised, impl=impl)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, bias=bias)
        self.neuron_params = _neuron_params(tau_m if neuron_tau_m is None else neuron_tau_m, reset_v,
                                            membrane_filter, sigma)

    def forward(self, x: torch.Tensor, record: bool = False) -> torch.Tensor | tuple[torch.Tensor, LayerRecord]:
        _check_image_seq(x, self.in_channels, "IIRConv2d")
        T, B = x.shape[:2]
        psi = _filter_channels_last(self.psp, x, self.impl)
        current = self.conv(psi.reshape(T * B, *psi.shape[2:]))
        current = current.reshape(T, B, *current.shape[1:])
        spikes, traces = run_neuron(current, self.neuron_params, self.impl, record)
        return (spikes, LayerRecord(psi, traces["v"], traces["r"])) if record else spikes

    def max_pole_modulus(self) -> float:
        return max_pole_modulus(self)


class IIRAvgPool2d(nn.Module):
    """Per-channel filter → average pooling (× ``scale``, a fixed buffer) → IIR neuron over ``[T, B, C, H, W]``."""

    def __init__(self, channels: int, kernel_size: int, *, stride: int | None = None, scale: float = 1.0,
                 psp: str = "dual_exp", tau_m: float = 4.0, tau_s: float = 1.0, psp_trainable: bool = True,
                 parametrisation: str = "free", normalised: bool = False, neuron_tau_m: float | None = None,
                 membrane_filter: bool = False, reset_v: float = 1.0, sigma: float = 0.4,
                 impl: str = "auto") -> None:
        super().__init__()
        require_choice("impl", impl, LAYER_IMPLS)
        self.channels, self.kernel_size, self.stride, self.impl = int(channels), kernel_size, stride, impl
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.psp = make_psp(psp, self.channels, tau_m=tau_m, tau_s=tau_s, trainable=psp_trainable,
                            parametrisation=parametrisation, normalised=normalised, impl=impl)
        self.neuron_params = _neuron_params(tau_m if neuron_tau_m is None else neuron_tau_m, reset_v,
                                            membrane_filter, sigma)

    def forward(self, x: torch.Tensor, record: bool = False) -> torch.Tensor | tuple[torch.Tensor, LayerRecord]:
        _check_image_seq(x, self.channels, "IIRAvgPool2d")
        T, B = x.shape[:2]
        psi = _filter_channels_last(self.psp, x, self.impl)
        pooled = F.avg_pool2d(psi.reshape(T * B, *psi.shape[2:]), self.kernel_size, self.stride) * self.scale
        current = pooled.reshape(T, B, *pooled.shape[1:])
        spikes, traces = run_neuron(current, self.neuron_params, self.impl, record)
        return (spikes, LayerRecord(psi, traces["v"], traces["r"])) if record else spikes


class ReadoutFilter(nn.Module):
    """Fixed, normalised two-state read-out filter ψ = v0·(m - q) (h[0] = 0, peak ≈ 1); not trainable.

    ``forward(x [T, B, channels]) -> [T, B, channels]``. τ = 8/2 for the associative memory."""

    def __init__(self, channels: int, tau_m: float = 8.0, tau_s: float = 2.0) -> None:
        super().__init__()
        self.channels = int(channels)
        self.filter = DualExpTwoState(self.channels, TwoStateParams(tau_m, tau_s), trainable=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.channels, "ReadoutFilter")
        return self.filter(x)


# ----------------------------------------------------------------------------------------------------
# Pole monitor
# ----------------------------------------------------------------------------------------------------


def project_filters_(module: nn.Module) -> int:
    """Apply ``DualExpIIR.project_`` to every "projected" filter in ``module`` (call after each optimiser step);
    returns the number of channels moved."""
    return sum(m.project_() for m in module.modules() if isinstance(m, DualExpIIR))


def max_pole_modulus(module: nn.Module) -> float:
    """Largest pole modulus over every IIR filter in ``module`` (0.0 when it has none); >= 1 is unstable."""
    best = 0.0
    for m in module.modules():
        if isinstance(m, DualExpIIR):
            best = max(best, float(iir_pole_moduli(m.coefficients()).max()))
        elif isinstance(m, LowPass):
            best = max(best, float(m.alpha_1.detach().abs().max()))
        elif isinstance(m, DualExpTwoState):
            best = max(best, float(m.decay_m.detach().abs().max()), float(m.decay_s.detach().abs().max()))
    return best if math.isfinite(best) else math.inf

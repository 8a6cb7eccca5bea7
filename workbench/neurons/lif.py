"""Leaky integrate-and-fire neuron with an optional current-based synapse.

Exact exponential (zero-order-hold) discretisation with step ``dt``; ``dm = exp(-dt/tau_mem)`` and
``ds = exp(-dt/tau_syn)`` (``tau_syn = 0`` means no synapse, ``ds = 0``, so ``i = x``)::

    i[t] = ds * i[t-1] + x[t]                                  # input jumps the current (Norse/snnTorch)
    v[t] = v_leak + dm * (v[t-1] - v_leak) + (1 - dm) * i[t]   # v relaxes towards v_leak + i
    z[t] = spike(v[t] - v_th)                                  # strict: v == v_th does not spike
    reset "hard":     v[t] <- v_reset where z[t] = 1
    reset "subtract": v[t] <- v[t] - (v_th - v_reset)          # = v - v_th for the default v_reset = 0

The input acts in the same step it arrives. For constant input x the steady state is
``v_leak + x / (1 - ds)``; without a synapse and from rest, ``v[t] = v_leak + x (1 - dm^(t+1))``.
Spikes are not detached: gradients flow through the reset as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from workbench.checks import check_sequence, require_choice, require_finite, require_nonnegative, require_positive
from workbench.neurons.surrogate import SpikeFn, resolve_spike_fn

RESETS = ("subtract", "hard")


@dataclass(frozen=True)
class LIFParams:
    """Constants of the LIF neuron (times in the same unit as ``dt``)."""

    tau_mem: float = 10.0
    tau_syn: float = 5.0
    v_th: float = 1.0
    v_reset: float = 0.0
    v_leak: float = 0.0
    dt: float = 1.0
    reset: str = "subtract"
    surrogate: str | SpikeFn = "fast_sigmoid"

    def __post_init__(self) -> None:
        require_positive("tau_mem", self.tau_mem)
        require_nonnegative("tau_syn (0 = no synapse)", self.tau_syn)
        require_positive("dt", self.dt)
        for name in ("v_th", "v_reset", "v_leak"):
            require_finite(name, getattr(self, name))
        if self.v_reset >= self.v_th:
            raise ValueError(
                f"v_reset ({self.v_reset}) must be below v_th ({self.v_th}), or the neuron never stops firing"
            )
        require_choice("reset", self.reset, RESETS)
        object.__setattr__(self, "surrogate", resolve_spike_fn(self.surrogate))

    @property
    def dm(self) -> float:
        return math.exp(-self.dt / self.tau_mem)

    @property
    def ds(self) -> float:
        return math.exp(-self.dt / self.tau_syn) if self.tau_syn > 0 else 0.0


class LIFState(NamedTuple):
    v: torch.Tensor  # membrane after reset
    i: torch.Tensor  # synaptic current


def lif_initial_state(like: torch.Tensor, params: LIFParams) -> LIFState:
    """Rest: v = v_leak, i = 0."""
    return LIFState(torch.full_like(like, params.v_leak), torch.zeros_like(like))


def lif_integrate(x: torch.Tensor, state: LIFState, params: LIFParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Membrane (before the threshold test and reset) and current after one step of input x."""
    i = params.ds * state.i + x
    v = params.v_leak + params.dm * (state.v - params.v_leak) + (1.0 - params.dm) * i
    return v, i


def lif_fire(v: torch.Tensor, params: LIFParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and the membrane after reset, both differentiable in v."""
    z = params.surrogate(v - params.v_th)
    if params.reset == "hard":
        return z, v - z * (v - params.v_reset)
    return z, v - z * (params.v_th - params.v_reset)


def lif_step(x: torch.Tensor, state: LIFState | None, params: LIFParams) -> tuple[torch.Tensor, LIFState]:
    if state is None:
        state = lif_initial_state(x, params)
    v, i = lif_integrate(x, state, params)
    z, v = lif_fire(v, params)
    return z, LIFState(v, i)


class LIF(nn.Module):
    """Runs the LIF neuron over ``x [T, B, ...]`` from rest; returns spikes ``[T, B, ...]``.

    ``record=True`` also returns ``{"v": membrane before reset (what the threshold sees),
    "v_reset": membrane after reset, "i": synaptic current}``, each ``[T, B, ...]``.
    """

    def __init__(self, params: LIFParams | None = None) -> None:
        super().__init__()
        self.params = params if params is not None else LIFParams()

    def forward(
        self, x: torch.Tensor, *, record: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_sequence(x, "x", "[T, B, ...]")
        state = lif_initial_state(x[0], self.params)
        spikes, v_pre, v_post, cur = [], [], [], []
        for t in range(x.shape[0]):
            v, i = lif_integrate(x[t], state, self.params)
            z, v_after = lif_fire(v, self.params)
            state = LIFState(v_after, i)
            spikes.append(z)
            if record:
                v_pre.append(v)
                v_post.append(v_after)
                cur.append(i)
        out = torch.stack(spikes)
        if not record:
            return out
        return out, {"v": torch.stack(v_pre), "v_reset": torch.stack(v_post), "i": torch.stack(cur)}

    def extra_repr(self) -> str:
        return repr(self.params)

"""Memoryless stochastic pixel neuron with an absolute refractory counter (DASBE §2.3, GUST §2.2).

One step, for a drive ``d`` (DASBE: x·R, GUST: x·c) and uniform noise ``U ~ U[0, 1)``::

    v    = d + U                                          # no membrane memory
    s    = spike(v - (threshold + offset)) * [ref < 1]    # strict threshold, gate open iff ref == 0
    ref  = max(0, ref - 1 + (refractory + 1) * s)         # `refractory` silent steps after a spike

so P(spike | gate open) = clip(d - (threshold + offset - 1), 0, 1) and the minimum inter-spike
interval is ``refractory + 1``. Both papers are this neuron with different constants:

* ``StochasticParams.dasbe(r)``: refractory = r, offset = 1e-5. DASBE counts its counter down *before*
  the test (``ref -= 1; s = ... and ref < 0; ref = r after a spike``); that also leaves exactly r silent
  steps, so with drive 1 it fires at 0, r+1, 2(r+1), ... (r = 9: 0, 10, 20).
* ``StochasticParams.gust(tau_rfr)``: refractory = tau_rfr - 1, offset = 0, which is GUST's
  ``r = max(0, r - 1 + tau_rfr * s)`` verbatim: 8 silent steps and ISI 9 for tau_rfr = 9.

Gradients (GUST §2.4): the threshold uses the rectangle surrogate (gradient 1 where abs(v - 1) < 0.5).
The gate passes a straight-through gradient d gate / d ref = -1 only where ref == 0 (open gate), and
max(0, .) passes gradient where its input is > 0, so BPTT runs through the refractory state.

Noise is never drawn inside ``stochastic_step``: the caller passes ``noise``, so a step is deterministic
given its noise. ``StochasticNeuron`` draws it from a ``torch.Generator`` or takes it as a tensor.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from workbench.checks import check_noise, check_sequence, require_finite, require_nonnegative
from workbench.neurons.surrogate import SpikeFn, SpikeFunction, resolve_spike_fn

DASBE_OFFSET = 1e-5


@dataclass(frozen=True)
class StochasticParams:
    """Constants of the stochastic pixel neuron.

    Attributes:
        refractory: silent steps after a spike (integer >= 0); minimum ISI = refractory + 1.
        threshold: spike iff drive + U > threshold + offset.
        offset: small margin above the threshold (DASBE uses 1e-5, so drive 1 fires with P = 1 - 1e-5).
        surrogate: surrogate name or spike callable applied to v - (threshold + offset).
    """

    refractory: int = 8
    threshold: float = 1.0
    offset: float = 0.0
    surrogate: str | SpikeFn = "rectangle"

    def __post_init__(self) -> None:
        try:
            refractory = operator.index(self.refractory)
        except TypeError:
            if not (isinstance(self.refractory, float) and self.refractory.is_integer()):
                raise ValueError(
                    f"refractory must be an integer number of silent steps, got {self.refractory!r}"
                ) from None
            refractory = int(self.refractory)
        require_nonnegative("refractory", refractory)
        object.__setattr__(self, "refractory", refractory)
        require_finite("threshold", self.threshold)
        require_finite("offset", self.offset)
        object.__setattr__(self, "surrogate", resolve_spike_fn(self.surrogate))

    @classmethod
    def dasbe(cls, r: int = 9, offset: float = DASBE_OFFSET, **kwargs: Any) -> "StochasticParams":
        """DASBE pixel neuron: r silent steps after a spike, threshold 1 + 1e-5 (spikes at 0, r+1, ...)."""
        return cls(refractory=r, threshold=1.0, offset=offset, **kwargs)

    @classmethod
    def gust(cls, tau_rfr: int = 9, **kwargs: Any) -> "StochasticParams":
        """GUST pixel neuron: r = max(0, r - 1 + tau_rfr*s), i.e. tau_rfr - 1 silent steps, ISI tau_rfr."""
        if not tau_rfr >= 1:
            raise ValueError(f"tau_rfr must be an integer >= 1 (the minimum ISI in steps), got {tau_rfr}")
        return cls(refractory=tau_rfr - 1, threshold=1.0, offset=0.0, **kwargs)

    @property
    def effective_threshold(self) -> float:
        return self.threshold + self.offset


class StochasticState(NamedTuple):
    """refractory: remaining silent steps (float, so gradients can flow through it); 0 = gate open."""

    refractory: torch.Tensor


def spike_probability(drive: torch.Tensor, params: StochasticParams) -> torch.Tensor:
    """P(spike) of a non-refractory neuron for noise U[0, 1): clip(drive - (threshold + offset - 1), 0, 1)."""
    return (drive - (params.effective_threshold - 1.0)).clamp(0.0, 1.0)


class _OpenGate(torch.autograd.Function):
    """Forward 1[ref < 1]; backward d/d ref = -1 where ref == 0 exactly (GUST's gate on -ref), else 0."""

    @staticmethod
    def forward(ctx: Any, ref: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ref)
        return (ref < 1).to(ref.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> torch.Tensor:
        (ref,) = ctx.saved_tensors
        return -grad_out * (ref == 0).to(grad_out.dtype)


def stochastic_step(
    drive: torch.Tensor,
    state: StochasticState | None,
    params: StochasticParams,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, StochasticState]:
    """One step for drive (B, N) and uniform noise U[0, 1) of the same shape; returns float spikes."""
    if state is None:
        state = StochasticState(torch.zeros_like(drive))
    x = drive + noise - params.effective_threshold
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (drive, noise, state.refractory))
    if needs_grad or not isinstance(params.surrogate, SpikeFunction):
        s = params.surrogate(x) * _OpenGate.apply(state.refractory)
    else:  # same values without the autograd Functions: about 2x faster in DASBE's long inference loops
        s = ((x > 0) & (state.refractory < 1)).to(drive.dtype)
    ref = torch.relu(state.refractory - 1.0 + (params.refractory + 1) * s)
    return s, StochasticState(ref)


def draw_noise(
    shape: torch.Size | tuple[int, ...],
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniform U[0, 1) noise on ``like``'s device and dtype (None = torch's global generator)."""
    return torch.rand(tuple(shape), generator=generator, device=like.device, dtype=like.dtype)


class StochasticNeuron(nn.Module):
    """Runs the stochastic pixel neuron over a drive ``[T, B, N]`` from a zero refractory state.

    ``forward(drive, generator=g)`` draws the noise from ``g``; ``forward(drive, noise=u)`` uses ``u``
    (same shape as ``drive``) so runs can be replayed exactly. With ``record=True`` it also returns
    ``{"membrane": drive + U, "refractory": counter after each step}``.
    """

    def __init__(self, params: StochasticParams | None = None) -> None:
        super().__init__()
        self.params = params if params is not None else StochasticParams()

    def forward(
        self,
        drive: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        record: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_sequence(drive, "drive")
        if noise is not None and generator is not None:
            raise ValueError("pass either generator or noise, not both")
        if noise is None:
            noise = draw_noise(drive.shape, drive, generator)
        check_noise(noise, drive.shape)
        state = StochasticState(torch.zeros_like(drive[0]))
        spikes, refractory = [], []
        for t in range(drive.shape[0]):
            s, state = stochastic_step(drive[t], state, self.params, noise[t])
            spikes.append(s)
            refractory.append(state.refractory)
        out = torch.stack(spikes)
        if not record:
            return out
        return out, {"membrane": drive + noise, "refractory": torch.stack(refractory)}

    def extra_repr(self) -> str:
        return repr(self.params)

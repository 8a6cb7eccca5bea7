"""Surrogate-gradient spike functions.

A spike function takes ``x = v - threshold`` and returns the strict Heaviside step ``(x > 0)`` (so
``v == threshold`` does not spike). Its backward pass replaces the step's zero/infinite derivative by a
smooth *surrogate* ``g(x)``. Every surrogate here is the exact derivative of a named smooth counterpart
``S(x)`` (``SpikeFunction.smooth``), so tests can check the backward pass against finite differences of
``S`` and a whole network can be run "smoothed" (forward ``S`` instead of the step) for gradcheck.

| name           | parameter (default) | surrogate g(x)                             | smooth counterpart S(x)    |
|----------------|---------------------|--------------------------------------------|----------------------------|
| "rectangle"    | width (1.0)         | 1/width where abs(x) < width/2 (area 1)    | clamp(x/width + 1/2, 0, 1) |
| "gaussian"     | sigma (0.4)         | normal pdf exp(-x²/2σ²)/(σ√(2π)) (area 1)  | normal CDF Φ(x/σ)          |
| "fast_sigmoid" | slope (25.0)        | 1/(1 + slope·abs(x))², peak 1 (SuperSpike) | x/(1 + slope·abs(x))       |
| "arctan"       | alpha (2.0)         | (α/2)/(1 + (πα x/2)²), area 1 (ATan)       | arctan(πα x/2)/π + 1/2     |

The rectangle is normalised to area 1, so the DASBE/GUST surrogate (gradient 1 where abs(v-1) < 0.5) is
``surrogate("rectangle")`` with the default width 1. SNN-IIR's Gaussian (σ = 0.4, threshold 1) is
``surrogate("gaussian", sigma=0.4)``. fast_sigmoid and arctan keep their usual literature scaling so
settings port unchanged from snnTorch/SpikingJelly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import torch

from workbench.checks import require_positive

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


class _Kind(NamedTuple):
    param: str
    default: float
    grad: Callable[[torch.Tensor, float], torch.Tensor]
    smooth: Callable[[torch.Tensor, float], torch.Tensor]


def _rect_grad(x: torch.Tensor, width: float) -> torch.Tensor:
    return (x.abs() < width / 2).to(x.dtype) / width


def _rect_smooth(x: torch.Tensor, width: float) -> torch.Tensor:
    return (x / width + 0.5).clamp(0.0, 1.0)


def _gauss_grad(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.exp(-0.5 * (x / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))


def _gauss_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / (sigma * math.sqrt(2.0))))


def _fast_sigmoid_grad(x: torch.Tensor, slope: float) -> torch.Tensor:
    return 1.0 / (1.0 + slope * x.abs()) ** 2


def _fast_sigmoid_smooth(x: torch.Tensor, slope: float) -> torch.Tensor:
    return x / (1.0 + slope * x.abs())


def _arctan_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)


def _arctan_smooth(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.atan(math.pi / 2.0 * alpha * x) / math.pi + 0.5


SURROGATES: dict[str, _Kind] = {
    "rectangle": _Kind("width", 1.0, _rect_grad, _rect_smooth),
    "gaussian": _Kind("sigma", 0.4, _gauss_grad, _gauss_smooth),
    "fast_sigmoid": _Kind("slope", 25.0, _fast_sigmoid_grad, _fast_sigmoid_smooth),
    "arctan": _Kind("alpha", 2.0, _arctan_grad, _arctan_smooth),
}


@lru_cache(maxsize=None)
def _autograd_class(name: str) -> type[torch.autograd.Function]:
    """One autograd Function class per surrogate kind, built once (the parameter travels as an argument)."""
    kind = SURROGATES[name]

    def forward(ctx: Any, x: torch.Tensor, param: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.param = param
        return (x > 0).to(x.dtype)

    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_out * kind.grad(x, ctx.param), None

    cls_name = "".join(p.capitalize() for p in name.split("_")) + "Spike"
    methods = {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    return type(cls_name, (torch.autograd.Function,), methods)


@dataclass(frozen=True)
class SpikeFunction:
    """Heaviside forward, surrogate backward. Call it on ``x = v - threshold``; hashable, so it can sit in
    a frozen Params dataclass."""

    name: str
    param: float

    def __post_init__(self) -> None:
        if self.name not in SURROGATES:
            raise ValueError(f"unknown surrogate {self.name!r}; choose one of {sorted(SURROGATES)}")
        value = require_positive(f"surrogate {self.name!r} {SURROGATES[self.name].param}", self.param)
        object.__setattr__(self, "param", value)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _autograd_class(self.name).apply(x, self.param)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative g(x) used by the backward pass."""
        return SURROGATES[self.name].grad(x, self.param)

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The smooth counterpart S(x) with S' = g; differentiable by plain autograd."""
        return SURROGATES[self.name].smooth(x, self.param)

    def __repr__(self) -> str:
        return f"surrogate({self.name!r}, {SURROGATES[self.name].param}={self.param})"


def surrogate(name: str = "gaussian", **params: float) -> SpikeFunction:
    """Build the spike function ``name`` (see the module table); e.g. ``surrogate("gaussian", sigma=0.4)``."""
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {sorted(SURROGATES)}")
    kind = SURROGATES[name]
    unknown = set(params) - {kind.param}
    if unknown:
        raise ValueError(f"surrogate {name!r} takes only {kind.param!r}, got {sorted(unknown)}")
    return SpikeFunction(name, params.get(kind.param, kind.default))


def resolve_spike_fn(spec: str | SpikeFn) -> SpikeFn:
    """A surrogate name (default parameter) or any callable x -> spikes (e.g. ``fn.smooth`` for gradcheck)."""
    if isinstance(spec, str):
        return surrogate(spec)
    if callable(spec):
        return spec
    raise ValueError(f"surrogate must be a name in {sorted(SURROGATES)} or a callable x -> spikes, got {spec!r}")

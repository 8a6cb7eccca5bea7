"""Pulse-coupled neural network: DASBE's "pure-SNN" baseline (specs/dasbe.md §3), batched over images.

State y = L = 0, θ = θ0. Per step, for images x ``[B, H, W]``::

    F  = x * Bern(keep_prob)                               # feeding input with 20 % pixel dropout
    L  = L·exp(-1/τ_L) + V_L · conv(y_prev, w)             # linking from the neighbours' last spikes
    U  = F·(1 + β·L) - min(Σ y_prev, 1)·w_I                # global inhibition if anything fired last step
    θ  = θ·exp(-1/τ_θ) + V_θ · y_prev                      # dynamic threshold
    y  = (U - θ) >= 0

The coupling w(p, q) = exp(-‖p - q‖₂) for 0 < Chebyshev distance <= 4 (else 0) is a zero-centred 9×9
kernel applied with zero padding; ``dense_coupling`` builds the reference's literal (H, W, H, W) tensor
for the equivalence test. The dropout mask is ``noise < keep_prob`` for uniform ``noise`` passed in by the
caller (``PCNN`` draws it from a ``torch.Generator``), so a step is deterministic given its noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from workbench.checks import require_finite, require_positive


@dataclass(frozen=True)
class PCNNParams:
    """PCNN constants (DASBE defaults). ``PCNNParams.shapes()`` is the Shapes setting (V_θ = 6, τ_θ = 8)."""

    beta: float = 3.0
    v_l: float = 1.0
    tau_l: float = 2.0
    theta0: float = 2.0
    w_i: float = 3.5
    v_theta: float = 10.0
    tau_theta: float = 6.0
    keep_prob: float = 0.8
    radius: int = 4

    def __post_init__(self) -> None:
        for name in ("beta", "v_l", "theta0", "w_i", "v_theta"):
            require_finite(name, getattr(self, name))
        require_positive("tau_l", self.tau_l)
        require_positive("tau_theta", self.tau_theta)
        if not 0.0 <= float(self.keep_prob) <= 1.0:
            raise ValueError(f"keep_prob must be a probability in [0, 1], got {self.keep_prob}")
        if int(self.radius) != self.radius or self.radius < 1:
            raise ValueError(f"radius must be an integer >= 1 (Chebyshev reach of the kernel), got {self.radius}")

    @classmethod
    def shapes(cls, **kwargs: float) -> "PCNNParams":
        """The Shapes dataset setting of DASBE's Table I."""
        return cls(**{"v_theta": 6.0, "tau_theta": 8.0, **kwargs})

    @property
    def decay_l(self) -> float:
        return math.exp(-1.0 / self.tau_l)

    @property
    def decay_theta(self) -> float:
        return math.exp(-1.0 / self.tau_theta)


class PCNNState(NamedTuple):
    y: torch.Tensor  # last spikes as 0/1 floats [B, H, W]
    linking: torch.Tensor
    theta: torch.Tensor
    u: torch.Tensor  # last internal activity U (kept for records; the next step does not read it)


def _coupling_weight(dy: int, dx: int, radius: int) -> float:
    return math.exp(-math.hypot(dy, dx)) if 0 < max(abs(dy), abs(dx)) <= radius else 0.0


@lru_cache(maxsize=16)
def _kernel_cached(radius: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    offsets = range(-radius, radius + 1)
    rows = [[_coupling_weight(dy, dx, radius) for dx in offsets] for dy in offsets]
    return torch.tensor(rows, dtype=dtype, device=device)


def coupling_kernel(
    radius: int = 4, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """The (2r+1, 2r+1) zero-centred kernel w[dy, dx] = exp(-hypot(dy, dx)), 0 at the centre."""
    return _kernel_cached(int(radius), dtype, str(device))


def dense_coupling(height: int, width: int, radius: int = 4, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Literal reference: W[i, j, k, l] = w((i, j), (k, l)), an (H, W, H, W) tensor. Small images only."""
    out = torch.zeros(height, width, height, width, dtype=dtype)
    for i in range(height):
        for j in range(width):
            for k in range(height):
                for l in range(width):
                    out[i, j, k, l] = _coupling_weight(k - i, l - j, radius)
    return out


def linking_input(y: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """conv(y, w) with zero padding for spikes y ``[B, H, W]`` (w is symmetric, so correlation = convolution)."""
    kernel = coupling_kernel(radius, y.dtype, y.device)[None, None]
    return F.conv2d(y[:, None], kernel, padding=radius)[:, 0]


def pcnn_initial_state(images: torch.Tensor, params: PCNNParams) -> PCNNState:
    zeros = torch.zeros_like(images)
    return PCNNState(zeros, zeros, torch.full_like(images, params.theta0), zeros)


def pcnn_step(
    images: torch.Tensor, state: PCNNState | None, params: PCNNParams, noise: torch.Tensor
) -> tuple[torch.Tensor, PCNNState]:
    """One step for images ``[B, H, W]`` and uniform noise of the same shape; returns bool spikes."""
    if state is None:
        state = pcnn_initial_state(images, params)
    y_prev = state.y
    feeding = images * (noise < params.keep_prob).to(images.dtype)
    linking = state.linking * params.decay_l + params.v_l * linking_input(y_prev, params.radius)
    inhibition = y_prev.sum(dim=(1, 2), keepdim=True).clamp(max=1.0) * params.w_i
    u = feeding * (1.0 + params.beta * linking) - inhibition
    theta = state.theta * params.decay_theta + params.v_theta * y_prev
    y = (u - theta) >= 0
    return y, PCNNState(y.to(images.dtype), linking, theta, u)


def _as_images(images: torch.Tensor, image_shape: tuple[int, int] | None) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() not in (2, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be [B, H, W] or [B, N] with image_shape=(H, W), got {shape}")
    images = images if images.is_floating_point() else images.float()
    if images.dim() == 3:
        return images
    if image_shape is None:
        raise ValueError(f"flat images {tuple(images.shape)} need image_shape=(H, W)")
    height, width = image_shape
    if height * width != images.shape[1]:
        raise ValueError(f"image_shape {image_shape} has {height * width} pixels, images have {images.shape[1]}")
    return images.reshape(images.shape[0], height, width)


class PCNN(nn.Module):
    """Runs the PCNN for ``T`` steps on static images; returns spikes ``[T, B, N]`` (bool, N = H·W).

    Noise comes from ``generator`` (None = torch's global generator, drawn one step at a time) or is
    given as ``noise`` ``[T, B, H, W]`` / ``[T, B, N]``. ``record=True`` adds ``{"U", "theta", "linking"}``
    traces ``[T, B, N]``. Runs under ``torch.inference_mode`` (no learning).
    """

    def __init__(self, params: PCNNParams | None = None) -> None:
        super().__init__()
        self.params = params if params is not None else PCNNParams()

    def forward(
        self,
        images: torch.Tensor,
        T: int = 500,
        *,
        image_shape: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        record: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.inference_mode():
            x = _as_images(images, image_shape)
            batch = x.shape[0]
            noise = self._check_noise(noise, generator, T, x)
            state = pcnn_initial_state(x, self.params)
            spikes, traces = [], {"U": [], "theta": [], "linking": []}
            for t in range(T):
                if noise is not None:
                    step_noise = noise[t]
                else:  # one step at a time: T x B x N uniforms at once would be large for T = 500
                    step_noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                y, state = pcnn_step(x, state, self.params, step_noise)
                spikes.append(y.reshape(batch, -1))
                if record:
                    for key, value in (("U", state.u), ("theta", state.theta), ("linking", state.linking)):
                        traces[key].append(value.reshape(batch, -1))
            out = torch.stack(spikes)
            if not record:
                return out
            return out, {key: torch.stack(values) for key, values in traces.items()}

    @staticmethod
    def _check_noise(
        noise: torch.Tensor | None, generator: torch.Generator | None, T: int, x: torch.Tensor
    ) -> torch.Tensor | None:
        if noise is None:
            return None
        if generator is not None:
            raise ValueError("pass either generator or noise, not both")
        expected = (T, *x.shape)
        if noise.numel() != math.prod(expected) or noise.shape[:2] != expected[:2]:
            raise ValueError(f"noise must be [T, B, H, W] = {expected} (or [T, B, H*W]), got {tuple(noise.shape)}")
        return noise.reshape(expected)

    def extra_repr(self) -> str:
        return repr(self.params)

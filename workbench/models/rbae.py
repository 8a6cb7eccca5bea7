"""rbae: the recurrent DAE of the moving-shapes experiment (DASBE Fig 5; spec §2.5, §5).

    h_t = enc(x_t)                                  784 -> 600 ReLU -> 300 sigmoid
    y_t = dec(sigmoid(h_{t-1} W_h + h_t + b))       300 -> 600 ReLU -> 784 sigmoid,  W_h ~ N(0, 1) 300x300

The recurrence links the encoder codes of consecutive frames; ``step(frame, h_prev) -> (recon, h)`` is a
pure function of its inputs, so the caller keeps the state (the binding loop keeps one per phase slot;
``h_prev=None`` means zeros). ``forward(frames [T, B, N], h0)`` runs a time-first sequence.

Training (spec §5): the reconstruction ``y_t`` is scored against the clean *next* frame ``x_{t+1}`` (MSE),
with truncated back-propagation through windows of 20 frames, the carried state detached between windows
and one optimiser step per window. Inputs are corrupted per sequence: ``floor(0.2 T) + 1`` whole frames
blanked, pixel dropout 0.5, salt noise 0.05, re-binarised.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

RBAE_SIZES = (784, 600, 300)


class RBAE(nn.Module):
    """``sizes = (in, ..., code)`` for the encoder; the decoder mirrors it back to ``in``."""

    def __init__(self, sizes: Sequence[int] = RBAE_SIZES, seed: int | None = None) -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must be (in, ..., code) with >= 2 positive entries, got {sizes}")
        self.sizes = sizes
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
            self.recurrent = nn.Parameter(torch.randn(sizes[-1], sizes[-1]))  # W_h ~ N(0, 1)
            self.bias = nn.Parameter(torch.zeros(sizes[-1]))
            back = sizes[::-1]
            self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(back[:-1], back[1:]))

    @property
    def n_hidden(self) -> int:
        return self.sizes[-1]

    def config_kwargs(self) -> dict:
        return {"sizes": list(self.sizes)}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder[:-1]:
            x = torch.relu(layer(x))
        return torch.sigmoid(self.encoder[-1](x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.decoder[:-1]:
            z = torch.relu(layer(z))
        return torch.sigmoid(self.decoder[-1](z))

    def step(self, frame: torch.Tensor, h_prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame ``[B, N]``: ``(prediction y_t [B, N], code h_t [B, H])``; ``h_prev`` is h_{t-1} (None = 0)."""
        h = self.encode(frame)
        if h_prev is None:
            mixed = h + self.bias
        else:
            if tuple(h_prev.shape) != tuple(h.shape):
                raise ValueError(f"h_prev must be {tuple(h.shape)}, got {tuple(h_prev.shape)}")
            mixed = h_prev @ self.recurrent + h + self.bias
        return self.decode(torch.sigmoid(mixed)), h

    def forward(self, frames: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``frames [T, B, N]``: ``(predictions [T, B, N], last code [B, H])``."""
        if frames.dim() != 3:
            raise ValueError(f"frames must be time-first [T, B, N], got shape {tuple(frames.shape)}")
        h, out = h0, []
        for frame in frames:
            y, h = self.step(frame, h)
            out.append(y)
        return torch.stack(out), h


def corrupt_sequences(frames: torch.Tensor, gen: torch.Generator, *, drop_fraction: float = 0.2,
                      pixel_dropout: float = 0.5, salt: float = 0.05) -> torch.Tensor:
    """rbae input corruption of clean 0/1 ``frames [T, B, N]`` (spec §5), per sequence ``b``:

    blank ``floor(drop_fraction * T) + 1`` distinct random frames, keep each on-pixel with probability
    ``1 - pixel_dropout``, switch each pixel on with probability ``salt``, re-binarise to 0/1.
    Random numbers come from ``gen`` (CPU) in a fixed order, so a seeded generator reproduces them.
    """
    T, B, N = frames.shape
    n_drop = min(T, int(drop_fraction * T) + 1)
    order = torch.rand(B, T, generator=gen).argsort(dim=1)[:, :n_drop]  # n_drop distinct frames per sequence
    keep_frame = torch.ones(B, T)
    keep_frame.scatter_(1, order, 0.0)
    keep_pixel = (torch.rand(T, B, N, generator=gen) >= pixel_dropout).float()
    salt_on = (torch.rand(T, B, N, generator=gen) < salt).float()
    x = frames.cpu().float() * keep_frame.T[:, :, None] * keep_pixel + salt_on
    return (x > 0.5).to(frames.device, frames.dtype)


def tbptt_step(model: RBAE, corrupted: torch.Tensor, clean: torch.Tensor, optimiser: torch.optim.Optimizer,
               window: int = 20) -> float:
    """Train on one batch of sequences ``[T, B, N]`` with truncated BPTT; returns the mean window loss.

    Window ``[t0, t0 + window)`` predicts ``clean[t + 1]`` from ``corrupted[t]``; the state entering a
    window is the previous window's last code, detached; one optimiser step per window.
    """
    T = corrupted.shape[0]
    h, losses = None, []
    for t0 in range(0, T - 1, window):
        t1 = min(t0 + window, T - 1)
        pred, h = model(corrupted[t0:t1], h)
        loss = F.mse_loss(pred, clean[t0 + 1:t1 + 1])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        h = h.detach()
        losses.append(float(loss.detach()))
    return sum(losses) / max(len(losses), 1)


@torch.no_grad()
def next_frame_mse(model: RBAE, frames: torch.Tensor) -> torch.Tensor:
    """Mean MSE of predicting ``frames[t + 1]`` from clean ``frames[0..t]`` over a batch ``[T, B, N]``."""
    pred, _ = model(frames[:-1])
    return F.mse_loss(pred, frames[1:])

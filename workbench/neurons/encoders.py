"""Analog → spike-sequence encoders for SNN-IIR classifiers (specs/snn_iir.md §3.2).

* ``direct_encode``    the analog value p is repeated at all T steps (``input="analog"``, the default).
* ``bernoulli_encode`` each pixel spikes independently at each step with probability p (the authors call
  it "Poisson"). The draws are counter-based (``workbench.rng``): a pure function of
  ``(seed, image id, step)``, so an image gets the same spikes in any batch, at any position.

Neither is a latency code. Both return float32 ``[T, B, N]``; the frozen-dataclass wrappers delegate to
the pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.checks import require_positive
from workbench.rng import Stream, uniform

ENCODE_STREAM = Stream.ENCODE  # rng stream of the Bernoulli input encoding


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 2:
        raise ValueError(f"images must be [B, N] with values in [0, 1], got shape {tuple(images.shape)}; "
                         "flatten 28x28 images to 784")
    if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
        raise ValueError(f"images must lie in [0, 1] (got {float(images.min()):.3g}..{float(images.max()):.3g}); "
                         "divide bytes by 255")


def direct_encode(images: torch.Tensor, T: int) -> torch.Tensor:
    """``[T, B, N]``: the analog images repeated at every step (a view, no copy)."""
    require_positive("T", T)
    _check_images(images)
    return images.to(torch.float32).unsqueeze(0).expand(int(T), *images.shape)


def bernoulli_encode(images: torch.Tensor, T: int, *, seed: int, image_ids: torch.Tensor | None = None,
                     step_offset: int = 0) -> torch.Tensor:
    """``[T, B, N]`` 0/1 spikes, P(spike) = pixel value, independent over pixels and steps.

    ``image_ids [B]`` (default 0..B-1) and ``seed`` key the draws; ``step_offset`` shifts the step counter
    (training uses ``epoch · T`` so that every epoch sees fresh noise)."""
    require_positive("T", T)
    _check_images(images)
    B, N = images.shape
    ids = torch.arange(B) if image_ids is None else torch.as_tensor(image_ids, dtype=torch.int64).cpu()
    if ids.shape != (B,):
        raise ValueError(f"image_ids must have shape ({B},), got {tuple(ids.shape)}")
    steps = torch.arange(int(T), dtype=torch.int64) + int(step_offset)
    u = uniform(int(seed), ENCODE_STREAM, ids.repeat(int(T)), steps.repeat_interleave(B), N)
    return (u.reshape(int(T), B, N).to(images.device) < images.to(torch.float32)).to(torch.float32)


@dataclass(frozen=True)
class DirectEncoder:
    T: int = 25

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return direct_encode(images, self.T)


@dataclass(frozen=True)
class BernoulliEncoder:
    T: int = 25
    seed: int = 0

    def __call__(self, images: torch.Tensor, image_ids: torch.Tensor | None = None, step_offset: int = 0) -> torch.Tensor:
        return bernoulli_encode(images, self.T, seed=self.seed, image_ids=image_ids, step_offset=step_offset)

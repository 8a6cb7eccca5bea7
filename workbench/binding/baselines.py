"""DASBE's two baselines (spec §3): the pure-ANN delay loop ("DAE" column) and the PCNN ("pure-SNN" column).

Both batch over images and seeds (rows seed-major, row ``s*B + b`` = seed ``s`` on image ``b``, as
``run_binding``) and draw every random number from the counter RNG keyed by (seed, image id, step), so
an image's output does not depend on the batch it runs in.

**Pure-ANN**: the DASBE delay loop with no spikes, no noise, no refractoriness and no window. The delay
line starts as ``|N(0,1)|`` *without* the per-pixel normalisation of DASBE (``normalise_init=True``
adds it). Each step ``m = x * R[t]``, ``y = DAE(m)``, ``R[t] <- y``; the real-valued ``m`` of the last
``back`` iterations is returned, ``[back*D, rows, N]``, ready for
``group_pixels(m, k, back_steps=back*D)``.

**PCNN**: ``workbench.neurons.pcnn.pcnn_step`` for ``T`` steps; the feeding dropout noise of step ``t`` is
``rng.uniform(seed, Stream.DROPOUT, image_id, t, N)``. It runs in float64 so that the 9x9 linking
convolution (whose summation order may depend on the batch size) cannot flip a threshold decision.
Returns a ``SpikeRecord`` of the last ``back_steps`` steps (spec §6.1: last 100 of 500).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Sequence

import torch

from workbench import rng
from workbench.checks import require_positive_int
from workbench.binding.dasbe import (
    DasbeParams,
    _DaeCall,
    _flat_images,
    _flat_labels,
    init_delay_line,
    seed_major_rows,
)
from workbench.neurons.pcnn import PCNNParams, pcnn_initial_state, pcnn_step
from workbench.record import SpikeRecord
from workbench.rng import Stream
from workbench.runtime import resolve_device


def run_pure_ann(dae: Callable[[torch.Tensor], Any], images: Any, params: DasbeParams | None = None, *,
                 seed: int | Sequence[int] = 0, image_ids: Any = None, back: int = 10,
                 normalise_init: bool = False, device: str | torch.device | None = "cpu",
                 dae_dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """Real-valued ``m = x * R[t]`` of the last ``back`` iterations, float32 ``[back*D, S*B, N]``.

    Args:
        dae: module mapping ``[rows, N]`` inputs to ``(reconstruction, hidden)`` or a reconstruction.
        images: ``[B, N]`` or ``[B, H, W]`` in [0, 1].
        params: only ``delay`` and ``n_iter`` are used (default ``DasbeParams.bars()``).
        seed: one seed or several (extra rows, seed-major); keys the init with ``image_ids``.
        back: iterations kept (clipped to ``n_iter``).
        normalise_init: divide the init per pixel by its sum over the D slots, as DASBE does. The
            authors' code does not (spec §3, §8); with the normalised init the loop lands near the paper's
            Table I column instead (measured on 100 images with the authors' DAEs: Bars 9.8-10.2 vs the
            paper's 9.6, Corners 52.0-52.4 vs 54.2; un-normalised: 46.6-49.7 and 60.1-60.5).
        dae_dtype: dtype the DAE runs in (float64 rounded to float32 keeps rows batch invariant).
    """
    params = params or DasbeParams.bars()
    back = require_positive_int("back (iterations kept)", back)
    x, _ = _flat_images(images, None)
    B, N = x.shape
    dev = resolve_device(device)
    x_rows, row_seeds, row_ids = (t.to(dev) for t in seed_major_rows(x, seed, image_ids))
    D, keep = params.delay, min(back, params.n_iter)
    first = (params.n_iter - keep) * D
    out = torch.empty(keep * D, len(x_rows), N, dtype=torch.float32, device=dev)
    with _DaeCall(dae, dae_dtype, dev) as call, torch.inference_mode():
        ring = init_delay_line(row_seeds, row_ids, D, N, normalise=normalise_init)
        for n in range(params.n_steps):
            t = n % D
            m = x_rows * ring[t]
            ring[t] = call(m)
            if n >= first:
                out[n - first] = m
    return out


def run_pcnn(images: Any, image_shape: tuple[int, int] | None, params: PCNNParams | None = None, *,
             T: int = 500, seed: int | Sequence[int] = 0, image_ids: Any = None, back_steps: int = 100,
             device: str | torch.device | None = "cpu", labels: Any = None) -> SpikeRecord:
    """PCNN spikes of the last ``back_steps`` of ``T`` steps as a ``SpikeRecord`` ``[back_steps, S*B, N]``.

    Args:
        images: ``[B, N]`` (with ``image_shape=(H, W)``) or ``[B, H, W]`` in [0, 1].
        params: PCNN constants (default ``PCNNParams()``; Shapes uses ``PCNNParams.shapes()``).
        seed, image_ids: key the dropout noise (one seed or several, seed-major rows).
        labels: optional ``[B, N]`` labels stored in the record (for ``evaluate_grouping``).
    """
    params = params or PCNNParams()
    T = require_positive_int("T (PCNN steps)", T)
    back_steps = require_positive_int("back_steps", back_steps)
    if back_steps > T:
        raise ValueError(f"back_steps must be at most T={T}, got {back_steps}")
    x, shape = _flat_images(images, image_shape)
    if shape is None or shape[0] * shape[1] != x.shape[1]:
        raise ValueError(f"image_shape {image_shape} does not fit images with {x.shape[1]} pixels; pass (H, W)")
    if image_shape is not None and tuple(image_shape) != tuple(shape):
        raise ValueError(f"image_shape {tuple(image_shape)} disagrees with the images' shape {tuple(shape)}")
    B, N = x.shape
    dev = resolve_device(device)
    x_rows, row_seeds, row_ids = (t.to(dev) for t in seed_major_rows(x, seed, image_ids))
    rows = len(x_rows)
    first = T - back_steps
    spikes = torch.zeros(back_steps, rows, N, dtype=torch.bool, device=dev)
    with torch.inference_mode():
        grid = x_rows.to(torch.float64).reshape(rows, *shape)
        state = pcnn_initial_state(grid, params)
        for t in range(T):
            noise = rng.uniform(row_seeds, Stream.DROPOUT, row_ids, t, N).to(torch.float64)
            y, state = pcnn_step(grid, state, params, noise.reshape(grid.shape))
            if t >= first:
                spikes[t - first] = y.reshape(rows, N)
    meta = {"model": "pcnn", "params": asdict(params), "T": T, "first_step": first,
            "seeds": row_seeds.tolist(), "image_ids": row_ids.tolist()}
    return SpikeRecord(spikes, image_shape=shape, images=x_rows,
                       labels=_flat_labels(labels, B, N, len(x_rows) // B, dev), meta=meta)

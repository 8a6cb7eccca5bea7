"""DASBE binding loop: stochastic spiking pixels + a DAE coupled through a delay line (spec §2).

One step at global step ``n = k*D + t`` (spec §2.3, in this order)::

    m    = x * R[t]                                 # R[t] holds DAE(a(n - D)), or the init in iteration 0
    s    = stochastic pixel neuron(m, noise U(0,1)) # fires iff m + U > 1 + 1e-5 and not refractory
    a    = s | s1 | s2                              # coincidence window over 3 steps
    R[t] = DAE(a)                                   # read before written: a delay of exactly D steps
    s2   = s1 & Bern(retention[2] / retention[1])   # uses the old s1
    s1   = s  & Bern(retention[1])

The neuron is ``workbench.neurons.stochastic.stochastic_step`` with ``StochasticParams.dasbe(r)``; its
counter leaves exactly r silent steps after a spike, like the reference's ``ref -= 1 ... ref < 0``.

Everything is batched over rows = (seed, image) pairs, seed-major: row ``s*B + b`` is seed ``s`` on image
``b``. All noise comes from the counter RNG (``workbench.rng``) keyed by (seed, image id, step, pixel),
and the DAE runs in float64 with its output rounded to float32 (``dae_dtype``): float32 matrix products
pick different kernels for different batch sizes and differ in the last bit, float64 rounded to float32
practically never does. Together this makes each row's spikes identical for any batch size or position
(spec §2.6, §11 item 9). Pass ``dae_dtype=None`` to run the DAE in its own dtype (faster, but then batch
invariance holds only up to last-bit rounding).

``impl="reference"`` runs a slow, literal one-image-at-a-time loop with the spec's integer refractory
counter, for equivalence tests.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from workbench import rng
from workbench.neurons.stochastic import StochasticParams, StochasticState, stochastic_step
from workbench.record import SpikeRecord
from workbench.rng import Stream
from workbench.runtime import resolve_device


@dataclass(frozen=True)
class DasbeParams:
    """Constants of the binding loop (spec §2.4); the classmethods are the Table I presets.

    Attributes:
        delay: D, steps per iteration (the cortical delay and the oscillation cycle).
        refractory: r, silent steps after a pixel spike (minimum inter-spike interval r + 1).
        n_iter: iterations of D steps.
        retention: overall probability that s(n), s(n-1), s(n-2) are in the coincidence window.
        threshold_offset: a pixel fires iff x*R + U > 1 + threshold_offset.
    """

    delay: int = 54
    refractory: int = 6
    n_iter: int = 50
    retention: tuple[float, float, float] = (1.0, 0.5, 0.25)
    threshold_offset: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "retention", tuple(float(v) for v in self.retention))
        if self.delay < 1 or self.refractory < 0 or self.n_iter < 1:
            raise ValueError(f"need delay >= 1, refractory >= 0, n_iter >= 1; got delay={self.delay}, "
                             f"refractory={self.refractory}, n_iter={self.n_iter}")
        r0, r1, r2 = self.retention
        if r0 != 1.0 or not 0.0 <= r2 <= r1 <= 1.0:
            raise ValueError(f"retention must be (1, q1, q2) with 0 <= q2 <= q1 <= 1 (the current spike always "
                             f"enters the window; older ones fade), got {self.retention}")
        if not math.isfinite(self.threshold_offset):
            raise ValueError(f"threshold_offset must be finite, got {self.threshold_offset}")

    @classmethod
    def bars(cls, **overrides: Any) -> "DasbeParams":
        return cls(**{"delay": 54, "refractory": 6, **overrides})

    @classmethod
    def corners(cls, **overrides: Any) -> "DasbeParams":
        return cls(**{"delay": 28, "refractory": 8, **overrides})

    @classmethod
    def shapes(cls, **overrides: Any) -> "DasbeParams":
        return cls(**{"delay": 32, "refractory": 9, **overrides})

    @classmethod
    def mnist_shape(cls, **overrides: Any) -> "DasbeParams":
        return cls(**{"delay": 29, "refractory": 9, **overrides})

    @classmethod
    def multi_mnist(cls, **overrides: Any) -> "DasbeParams":
        """Pixel constants only; the spiking-hidden bcdae of that row is not part of this loop."""
        return cls(**{"delay": 29, "refractory": 12, **overrides})

    @property
    def n_steps(self) -> int:
        return self.n_iter * self.delay

    def neuron(self) -> StochasticParams:
        return StochasticParams.dasbe(self.refractory, offset=self.threshold_offset)

    def mask_probabilities(self) -> tuple[float, float]:
        """Per-step Bernoulli probabilities (s -> s1, s1 -> s2) that give the overall retention."""
        _, r1, r2 = self.retention
        return r1, (r2 / r1 if r1 > 0 else 0.0)


RecordSpec = str | int


def run_binding(dae: Callable[[torch.Tensor], Any], images: Any, params: DasbeParams | None = None, *,
                seed: int | Sequence[int] = 0, image_ids: Any = None, labels: Any = None,
                record: RecordSpec = "all", device: str | torch.device | None = "cpu",
                impl: str = "batched", dae_dtype: torch.dtype | None = torch.float64,
                image_shape: tuple[int, int] | None = None) -> SpikeRecord:
    """Run the DASBE loop on ``images`` ``[B, N]`` or ``[B, H, W]`` (0/1) and return the spikes.

    Args:
        dae: module mapping a ``[rows, N]`` window to ``(reconstruction, hidden)`` or a reconstruction.
        params: loop constants (default ``DasbeParams.bars()``).
        seed: one seed, or several: each seed runs every image as extra rows (seed-major).
        image_ids: ``[B]`` integers that key the random numbers (default ``0..B-1``); pass the images'
            dataset indices so a subset reproduces the full run's spikes.
        labels: optional ``[B, N]`` group labels stored in the record.
        record: ``"all"``, ``"last:<k>"`` or an int ``k``: keep the last k iterations.
        impl: ``"batched"`` or the slow literal ``"reference"``.
        dae_dtype: dtype the DAE runs in (float64: batch invariant), None = the DAE's own.

    Returns a ``SpikeRecord`` with spikes ``[kept steps, S*B, N]``, ``cycle = D`` and metadata (seeds,
    image ids, first recorded step).
    """
    params = params or DasbeParams.bars()
    x, shape = _flat_images(images, image_shape)
    B, N = x.shape
    ids, seeds = _image_ids(image_ids, B), _seed_list(seed)
    keep = _kept_iterations(record, params.n_iter)
    dev = resolve_device(device)
    row_seeds = torch.tensor(seeds, dtype=torch.int64).repeat_interleave(B)
    row_ids = ids.repeat(len(seeds))
    x_rows = x.repeat(len(seeds), 1)
    if impl not in ("batched", "reference"):
        raise ValueError(f"impl must be 'batched' or 'reference', got {impl!r}")
    loop = _run_batched if impl == "batched" else _run_reference
    # Allocated outside inference mode so that callers may edit the record's tensor in place later.
    spikes = torch.zeros(keep * params.delay, len(x_rows), N, dtype=torch.bool, device=dev)
    with _DaeCall(dae, dae_dtype, dev) as call, torch.inference_mode():
        loop(call, x_rows.to(dev), row_seeds.to(dev), row_ids.to(dev), params, spikes)
    first_step = (params.n_iter - keep) * params.delay
    meta = {"model": "dasbe", "D": params.delay, "r": params.refractory, "params": asdict(params),
            "seeds": row_seeds.tolist(), "image_ids": row_ids.tolist(), "first_step": first_step,
            "impl": impl, "dae_dtype": str(dae_dtype).replace("torch.", "") if dae_dtype else "native"}
    return SpikeRecord(spikes, image_shape=shape, cycle=params.delay, images=x_rows.to(dev),
                       labels=_flat_labels(labels, B, N, len(seeds), dev), meta=meta)


def init_delay_line(seeds: torch.Tensor, image_ids: torch.Tensor, delay: int, n: int) -> torch.Tensor:
    """``[D, rows, N]`` ring buffer: ``|N(0,1)|`` per slot, divided per pixel by its sum over the D slots.

    The sum runs slot by slot in a fixed order, so a row's values never depend on how many rows there are.
    """
    ring = rng.half_normal(seeds, Stream.INIT, image_ids, 0, delay * n).reshape(-1, delay, n)
    ring = ring.transpose(0, 1).contiguous()  # slot-major: ring[t] is one contiguous [rows, N] block
    total = ring[0].clone()
    for slot in ring[1:]:
        total += slot
    return ring / total


def _run_batched(dae: "_DaeCall", x: torch.Tensor, seeds: torch.Tensor, ids: torch.Tensor,
                 params: DasbeParams, out: torch.Tensor) -> None:
    """Fill ``out`` (the last ``len(out)`` steps, ``[steps, rows, N]``) with the spikes of all rows at once."""
    N, D = x.shape[1], params.delay
    ring = init_delay_line(seeds, ids, D, N)
    neuron, (q1, q2) = params.neuron(), params.mask_probabilities()
    state = StochasticState(torch.zeros_like(x))
    s1 = s2 = torch.zeros_like(x, dtype=torch.bool)
    first = params.n_steps - len(out)
    for n in range(params.n_steps):
        t = n % D
        noise = rng.uniform(seeds, Stream.THRESHOLD, ids, n, N)
        fired, state = stochastic_step(x * ring[t], state, neuron, noise)
        s = fired > 0
        ring[t] = dae(s | s1 | s2)  # R[t] was read above: the reconstruction returns D steps later
        s2 = _decay(s1, q2, seeds, ids, n, Stream.MASK2)
        s1 = _decay(s, q1, seeds, ids, n, Stream.MASK1)
        if n >= first:
            out[n - first] = s


def _decay(spikes: torch.Tensor, keep_p: float, seeds: torch.Tensor, ids: torch.Tensor, step: int,
           stream: Stream) -> torch.Tensor:
    """``spikes & Bern(keep_p)`` with counter noise; on CPU only the (few) spiking positions are hashed."""
    if keep_p >= 1.0:
        return spikes
    keys = rng.row_keys(seeds, stream, ids, step)
    if spikes.is_cuda:  # a dense hash is cheap on a GPU and avoids nonzero()'s device sync
        return spikes & (rng.bits_to_uniform(rng.random_bits(keys, spikes.shape[1])) < keep_p)
    rows, cols = spikes.nonzero(as_tuple=True)
    kept = torch.zeros_like(spikes)
    kept[rows, cols] = rng.uniform_at(keys, rows, cols) < keep_p
    return kept


def _run_reference(dae: "_DaeCall", x: torch.Tensor, seeds: torch.Tensor, ids: torch.Tensor,
                   params: DasbeParams, out: torch.Tensor) -> None:
    """Slow literal loop, one image and one step at a time (the authors' structure, our RNG)."""
    keep = len(out) // params.delay
    for row in range(x.shape[0]):
        out[:, row] = _reference_one_image(dae, x[row], seeds[row:row + 1], ids[row:row + 1], params, keep)


def _reference_one_image(dae: "_DaeCall", x: torch.Tensor, seed: torch.Tensor, image_id: torch.Tensor,
                         params: DasbeParams, keep: int) -> torch.Tensor:
    N, D = x.shape[0], params.delay
    R = init_delay_line(seed, image_id, D, N)[:, 0]
    q1, q2 = params.mask_probabilities()
    ref = torch.zeros(N, dtype=torch.int64, device=x.device)
    s1 = s2 = torch.zeros(N, dtype=torch.bool, device=x.device)
    record = []
    for k in range(params.n_iter):
        for t in range(D):
            n = k * D + t
            m = x * R[t]
            ref = ref - 1
            u = rng.uniform(seed, Stream.THRESHOLD, image_id, n, N)[0]
            s = ((m + u) > 1 + params.threshold_offset) & (ref < 0)
            ref = torch.where(s, params.refractory, ref)
            a = s | s1 | s2
            y = dae(a[None])[0]
            s2 = s1 & (rng.uniform(seed, Stream.MASK2, image_id, n, N)[0] < q2)
            s1 = s & (rng.uniform(seed, Stream.MASK1, image_id, n, N)[0] < q1)
            R[t] = y
            if k >= params.n_iter - keep:
                record.append(s)
    return torch.stack(record)


class _DaeCall:
    """Calls the DAE on a bool window in ``dtype`` and returns a float32 ``[rows, N]`` reconstruction.

    Converts a copy when the module's parameters are not already in ``dtype`` on ``device`` (the caller's
    module is never modified) and puts the module in eval mode for the run.
    """

    def __init__(self, dae: Callable[[torch.Tensor], Any], dtype: torch.dtype | None, device: torch.device) -> None:
        self.module = dae
        tensors = _module_tensors(dae)
        self.dtype = dtype or (tensors[0].dtype if tensors else torch.float32)
        if any(t.dtype != self.dtype or t.device != device for t in tensors):
            self.module = copy.deepcopy(dae).to(device=device, dtype=self.dtype)
        self._was_training = getattr(self.module, "training", None)

    def __enter__(self) -> "_DaeCall":
        if isinstance(self.module, nn.Module):
            self.module.eval()
        return self

    def __exit__(self, *exc: Any) -> None:
        if isinstance(self.module, nn.Module) and self._was_training is not None:
            self.module.train(self._was_training)

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        out = self.module(window.to(self.dtype))
        y = out[0] if isinstance(out, (tuple, list)) else out
        if tuple(y.shape) != tuple(window.shape):
            raise ValueError(f"the DAE must return a reconstruction of shape {tuple(window.shape)} "
                             f"(or a tuple starting with one), got {tuple(y.shape)}")
        return y.to(torch.float32)


def _module_tensors(dae: Any) -> list[torch.Tensor]:
    if not isinstance(dae, nn.Module):
        return []
    return [t for t in list(dae.parameters()) + list(dae.buffers()) if t.is_floating_point()]


# --- input checks --------------------------------------------------------------------------------


def _flat_images(images: Any, image_shape: tuple[int, int] | None) -> tuple[torch.Tensor, tuple[int, int] | None]:
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dim() == 3:
        image_shape = image_shape or (int(x.shape[1]), int(x.shape[2]))
        x = x.reshape(x.shape[0], -1)
    if x.dim() != 2:
        raise ValueError(f"images must be [B, N] or [B, H, W], got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
    if x.numel() and not (torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise ValueError("images must lie in [0, 1] (DASBE images are binary 0/1)")
    if image_shape is None:
        side = math.isqrt(x.shape[1])
        image_shape = (side, side) if side * side == x.shape[1] else None
    return x, image_shape


def _flat_labels(labels: Any, B: int, N: int, repeats: int, device: torch.device) -> torch.Tensor | None:
    if labels is None:
        return None
    lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    lab = lab.reshape(lab.shape[0], -1).to(torch.int64) if lab.dim() >= 2 else lab
    if tuple(lab.shape) != (B, N):
        raise ValueError(f"labels must be [B, N] = [{B}, {N}] (or [B, H, W]), got {tuple(lab.shape)}")
    return lab.repeat(repeats, 1).to(device)


def _image_ids(image_ids: Any, B: int) -> torch.Tensor:
    if image_ids is None:
        return torch.arange(B, dtype=torch.int64)
    ids = torch.as_tensor(np.asarray(image_ids) if not isinstance(image_ids, torch.Tensor) else image_ids)
    if ids.shape != (B,) or ids.is_floating_point():
        raise ValueError(f"image_ids must be {B} integers (one per image), got {tuple(ids.shape)} {ids.dtype}")
    return ids.to(torch.int64).cpu()


def _seed_list(seed: int | Sequence[int]) -> list[int]:
    seeds = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if not seeds:
        raise ValueError("seed must be an int or a non-empty sequence of ints")
    return seeds


def _kept_iterations(record: RecordSpec, n_iter: int) -> int:
    if record == "all":
        return n_iter
    if isinstance(record, str) and record.startswith("last:") and record[5:].isdigit():
        k = int(record[5:])
    elif isinstance(record, (int, np.integer)) and not isinstance(record, bool):
        k = int(record)
    else:
        raise ValueError(f"record must be 'all', 'last:<k>' or an int k (keep the last k iterations), got {record!r}")
    if k < 1:
        raise ValueError(f"record must keep at least one iteration, got {record!r}")
    return min(k, n_iter)

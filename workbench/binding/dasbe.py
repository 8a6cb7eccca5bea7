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

Three implementations give the same spikes (``impl``):

* ``"batched"`` (default): neuron state, noise and delay line only at each row's on-pixels, and for an
  ``MLPDAE`` the DAE evaluated once per iteration on all D windows, with a sparse first layer and the
  output layer only at the on-pixels (spec §9; see the comment above ``_OnPixels``). Other DAEs are
  called once per step on the whole batch. Two more exact shortcuts on CPU (issue 3): the per-step
  bookkeeping runs in numpy on arrays that share the tensors' memory (same float32 operations, same uint64
  hash bits, a fraction of torch's per-call cost), and a one-hidden-layer MLP with float32 weights runs its
  products in float32 with rigorous error bounds (``_MlpFastPath.write_bounds``): a spike decision is taken
  from the bounds when both ends agree and from the float64 value, recomputed entry by entry, when not.
* ``"dense"``: the plain batched loop on ``[rows, N]`` tensors, one DAE call per step.
* ``"reference"``: a slow, literal one-image-at-a-time loop with the spec's integer refractory counter.

Spiking-hidden DAEs (bcdae, CLRNET: ``workbench.models.spiking_dae.SpikingDAE``, spec §2.5) carry a hidden
refractory counter r_a from step to step. The loop keeps it as part of its state, one ``[rows, H]`` counter
per (seed, image) row, zero at the start of every run (so it is reset per image: no row ever sees another
row's or another run's counter), decremented once per step (one DAE call per step, as in the reference).
The hidden noise ``U(0, 1)`` of step n is ``rng.uniform(seed, HIDDEN_STREAM, image_id, n, H)``: a stream of
its own, so the pixel streams and every stateless run are unchanged. All three implementations give the
same pixel and hidden spikes; the batched one encodes a whole iteration's windows at once, runs the gate
slot by slot, then decodes the D spike vectors at once (the windows of an iteration do not depend on the
DAE outputs of that iteration). ``run_binding_hidden`` also returns the hidden spikes (Fig 4).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from workbench import rng
from workbench.checks import require_finite_weights
from workbench.models.dae import MLPDAE
from workbench.models.spiking_dae import HiddenState, SpikingDAE, refractory_gate
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
HIDDEN_STREAM = Stream.HIDDEN  # rng stream of the hidden-layer spike noise


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
        impl: ``"batched"`` (on-pixel state, MLP fast path), ``"dense"`` (one dense DAE call per step
            for the whole batch) or the slow literal one-image ``"reference"``. All three give the
            same spikes.
        dae_dtype: dtype the DAE runs in (float64: batch invariant), None = the DAE's own.

    Returns a ``SpikeRecord`` with spikes ``[kept steps, S*B, N]``, ``cycle = D`` and metadata (seeds,
    image ids, first recorded step, and ``dae_path``: ``"mlp"`` when the batched loop recognised an
    ``MLPDAE`` and ran its fast path, ``"spiking"`` for an unmodified ``SpikingDAE``'s fast path, else
    ``"module"``: the DAE was called once per step).

    A spiking-hidden DAE (one with ``initial_state``, called as ``dae(window, state, noise) ->
    (reconstruction, spikes, state)``, e.g. bcdae or CLRNET) runs with its hidden refractory state carried
    by the loop and reset per image (see the module docstring); the metadata then also holds
    ``hidden_refractory``, ``hidden_units`` and ``hidden_stream``. ``run_binding_hidden`` returns its spikes.
    """
    return _run(dae, images, params, seed=seed, image_ids=image_ids, labels=labels, record=record, device=device,
                impl=impl, dae_dtype=dae_dtype, image_shape=image_shape, hidden=False)[0]


def run_binding_hidden(dae: Callable[[torch.Tensor], Any], images: Any, params: DasbeParams | None = None, *,
                       seed: int | Sequence[int] = 0, image_ids: Any = None, labels: Any = None,
                       record: RecordSpec = "all", device: str | torch.device | None = "cpu",
                       impl: str = "batched", dae_dtype: torch.dtype | None = torch.float64,
                       image_shape: tuple[int, int] | None = None) -> tuple[SpikeRecord, SpikeRecord]:
    """``run_binding`` for a spiking-hidden DAE that also returns its hidden spikes.

    Returns ``(pixels, hidden)``: the pixel record of ``run_binding`` and a record of the hidden layer's
    spikes ``[kept steps, S*B, H]`` (same steps, rows and metadata; ``image_shape`` is the square
    ``(sqrt H, sqrt H)`` when H is a square, e.g. CLRNET's 1600 -> 40 x 40, else None; no labels).
    """
    return _run(dae, images, params, seed=seed, image_ids=image_ids, labels=labels, record=record, device=device,
                impl=impl, dae_dtype=dae_dtype, image_shape=image_shape, hidden=True)


def _run(dae: Callable[[torch.Tensor], Any], images: Any, params: DasbeParams | None, *, seed: Any, image_ids: Any,
         labels: Any, record: RecordSpec, device: Any, impl: str, dae_dtype: torch.dtype | None,
         image_shape: tuple[int, int] | None, hidden: bool) -> tuple[SpikeRecord, SpikeRecord | None]:
    params = params or DasbeParams.bars()
    x, shape = _flat_images(images, image_shape)
    B, N = x.shape
    keep = _kept_iterations(record, params.n_iter)
    dev = resolve_device(device)
    x_rows, row_seeds, row_ids = seed_major_rows(x, seed, image_ids)
    loops = {"batched": _run_batched, "dense": _run_dense, "reference": _run_reference}
    if impl not in loops:
        raise ValueError(f"impl must be one of {sorted(loops)}, got {impl!r}")
    # Allocated outside inference mode so that callers may edit the record's tensor in place later.
    spikes = torch.zeros(keep * params.delay, len(x_rows), N, dtype=torch.bool, device=dev)
    with _DaeCall(dae, dae_dtype, dev) as call, torch.inference_mode():
        if hidden and not call.stateful:
            raise ValueError(f"run_binding_hidden needs a spiking-hidden DAE (with initial_state, e.g. SpikingDAE), "
                             f"got {type(dae).__name__}; use run_binding for stateless DAEs")
        hidden_spikes = None
        if hidden:
            with torch.inference_mode(False):
                hidden_spikes = torch.zeros(keep * params.delay, len(x_rows), call.n_hidden, dtype=torch.bool,
                                            device=dev)
        extra = {"n_images": B} if impl == "batched" else {}
        dae_path = loops[impl](call, x_rows.to(dev), row_seeds.to(dev), row_ids.to(dev), params, spikes,
                               hidden=hidden_spikes, **extra)
    first_step = (params.n_iter - keep) * params.delay
    meta = {"model": "dasbe", "D": params.delay, "r": params.refractory, "params": asdict(params),
            "seeds": row_seeds.tolist(), "image_ids": row_ids.tolist(), "first_step": first_step,
            "impl": impl, "dae_dtype": str(dae_dtype).replace("torch.", "") if dae_dtype else "native",
            "dae_path": dae_path or "module"}
    if call.stateful:
        meta.update(hidden_refractory=call.refractory, hidden_units=call.n_hidden, hidden_stream=HIDDEN_STREAM)
    pixels = SpikeRecord(spikes, image_shape=shape, cycle=params.delay, images=x_rows.to(dev),
                         labels=_flat_labels(labels, B, N, len(x_rows) // B, dev), meta=meta)
    if hidden_spikes is None:
        return pixels, None
    side = math.isqrt(call.n_hidden)
    hidden_shape = (side, side) if side * side == call.n_hidden else None
    return pixels, SpikeRecord(hidden_spikes, image_shape=hidden_shape, cycle=params.delay,
                               meta={**meta, "layer": "hidden"})


def init_delay_line(seeds: torch.Tensor, image_ids: torch.Tensor, delay: int, n: int, *,
                    normalise: bool = True) -> torch.Tensor:
    """``[D, rows, N]`` ring buffer: ``|N(0,1)|`` per slot, divided per pixel by its sum over the D slots.

    The sum runs slot by slot in a fixed order, so a row's values never depend on how many rows there are.
    ``normalise=False`` returns the raw ``|N(0,1)|`` values (the pure-ANN baseline's init, spec §3).
    """
    ring = rng.half_normal(seeds, Stream.INIT, image_ids, 0, delay * n).reshape(-1, delay, n)
    ring = ring.transpose(0, 1).contiguous()  # slot-major: ring[t] is one contiguous [rows, N] block
    if not normalise:
        return ring
    total = ring[0].clone()
    for slot in ring[1:]:
        total += slot
    return ring / total


# --- fast batched loop: state on on-pixels only, the DAE once per iteration -------------------------
#
# Two exact shortcuts (spec §9). (1) Off-pixels (x = 0) never fire, so the neuron state, the noise and the
# delay line are kept only for each row's on-pixels, padded to the batch's largest count P (padding entries
# never open their gate). (2) The DAE output of step n is first read at step n + D, so for a feed-forward
# MLP DAE the windows of a whole iteration are collected and the DAE runs once per iteration: the first
# layer as a sum of the selected weight columns (``embedding_bag`` over the active pixels of the binary
# window; a dense GEMM if the windows are dense), the hidden layers as GEMMs over D*rows windows, and the
# output layer only at each image's on-pixels (a batched product with the image's gathered decoder rows,
# reused for all D slots and all seeds; dense if the on-pixels are most of the image). The arithmetic is
# float64 by default, rounded once to float32, like the dense path; the two differ only in summation order,
# far below float32's rounding, so the spikes are the dense path's spikes (tests check bit identity).

_NEVER = 1 << 62  # gate-opening step of padding entries: they never fire
# Crossovers measured on one CPU thread, float64, 784 -> 256 -> 784 (bench/dasbe_bench.py's setting): the
# sparse first layer wins below ~20 % active window pixels (DASBE's windows hold 1-3 %), the per-image
# on-pixel output layer below ~70 % on-pixels (Corners ~15 %, Bars 51 %).
_SPARSE_MAX_DENSITY = 0.2
_GATHER_MAX_FRACTION = 0.7


def _flatnonzero(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the True entries of a 1-D bool tensor (numpy's is ~10x faster than torch's on CPU)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask).squeeze(1)


class _OnPixels:
    """Each row's on-pixels in ascending order, padded to ``P``, rows image-major.

    Run rows are seed-major (``r = s*B + b``); here compact row ``c = b*S + s`` holds run row
    ``row_of[c]``, so that all seeds of one image are adjacent and share the image's decoder rows. Entry
    ``q = c*P + j`` is pixel ``pix[c, j]`` of run row ``row_q[q]``.
    """

    def __init__(self, x: torch.Tensor, n_images: int) -> None:
        rows, self.n = x.shape
        B = n_images if n_images and rows % n_images == 0 else rows
        S = rows // B if B else 1
        self.rows, self.n_images, self.n_seeds = rows, B, S
        dev = x.device
        self.row_of = (torch.arange(B, device=dev)[:, None] + B * torch.arange(S, device=dev)[None, :]).reshape(-1)
        on = x[self.row_of] > 0
        counts = on.sum(dim=1)
        self.P = P = max(int(counts.max()) if rows else 0, 1)
        order = torch.argsort((~on).to(torch.int8), dim=1, stable=True)[:, :P]  # on-pixels first, ascending
        self.valid = torch.arange(P, device=dev)[None, :] < counts[:, None]  # [rows, P]
        self.pix = torch.where(self.valid, order, torch.zeros_like(order))  # [rows, P]; padding -> pixel 0
        self.row_q = self.row_of.repeat_interleave(P)  # [Q] run row of each entry
        self.pix_q = self.pix.reshape(-1)
        self.dense_q = self.row_q * self.n + self.pix_q  # index into a flat [rows, N] block of run rows
        self.entry = torch.arange(rows * P, device=dev)
        self.col_term = (self.pix_q + 1) * rng.GOLDEN  # counter offset of element `pixel` (see rng.uniform_at)
        xv = x[self.row_of].gather(1, self.pix) * self.valid
        self.x_q = None if bool(((xv == 0) | (xv == 1)).all()) else xv.reshape(-1)  # binary: m = R exactly

    @property
    def Q(self) -> int:
        return self.rows * self.P

    def uniform_rows(self, entry_keys: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``rng.uniform(...)[row, pixel]`` at entries ``q``, given each entry's row key (``rng.row_keys``)."""
        return rng.bits_to_uniform(rng.mix64_(entry_keys + torch.index_select(self.col_term, 0, q)))

    def init_ring(self, seeds: torch.Tensor, ids: torch.Tensor, delay: int) -> torch.Tensor:
        """``init_delay_line(...)`` at the on-pixels, ``[D, Q]``, with the same arithmetic element by element."""
        keys = rng.row_keys(seeds, Stream.INIT, ids, 0)
        if keys.device.type == "cpu" and _NUMPY_STEPS:  # the same bits, slot by slot in numpy (cache-sized)
            row_keys = keys.numpy().view(np.uint64)[self.row_of.numpy()][:, None]  # [rows, 1]
            golden, mask = rng.GOLDEN & (2**64 - 1), 2**64 - 1
            offsets = (self.pix.numpy().astype(np.uint64) + np.uint64(1)) * np.uint64(golden)  # (pixel + 1) * GOLDEN
            u_radius = np.empty((delay, *self.pix.shape), dtype=np.float32)
            u_angle = np.empty_like(u_radius)
            base = row_keys + offsets
            for t in range(delay):  # element t*N + pixel, and the angle half at element (D + t)*N + pixel
                u_radius[t] = _uniform_np(base + np.uint64(t * self.n * golden & mask))
                u_angle[t] = _uniform_np(base + np.uint64((delay + t) * self.n * golden & mask))
            u_radius = torch.from_numpy(u_radius).to(torch.float64)
            u_angle = torch.from_numpy(u_angle).to(torch.float64)
        else:
            element = torch.arange(delay, device=keys.device)[:, None, None] * self.n + self.pix[None]  # t*N + pixel
            rows = self.row_of[None, :, None].expand_as(element)
            u_radius = rng.uniform_at(keys, rows, element).to(torch.float64)
            u_angle = rng.uniform_at(keys, rows, element + delay * self.n).to(torch.float64)
        radius = torch.sqrt(-2.0 * torch.log1p(-u_radius))
        ring = (radius * torch.cos(2.0 * torch.pi * u_angle).abs()).to(torch.float32)
        total = ring[0].clone()
        for slot in ring[1:]:
            total += slot
        return (ring / total).reshape(delay, -1)

    def scatter_record_numpy(self, fired: list[np.ndarray], out: torch.Tensor) -> None:
        """``scatter_record`` for numpy index arrays (CPU)."""
        if fired:
            steps = np.repeat(np.arange(len(fired)), [len(f) for f in fired])
            out.numpy().reshape(len(fired), -1)[steps, self.dense_q.numpy()[np.concatenate(fired)]] = True

    def scatter_record(self, fired: list[torch.Tensor], out: torch.Tensor) -> None:
        """Write each recorded step's fired entries into ``out [steps, rows, N]``."""
        if not fired:
            return
        lengths = torch.tensor([len(f) for f in fired], device=out.device)
        steps = torch.repeat_interleave(torch.arange(len(fired), device=out.device), lengths)
        out.view(len(fired), -1).index_put_((steps, self.dense_q[torch.cat(fired)]),
                                            torch.ones((), dtype=torch.bool, device=out.device))


def _run_batched(dae: "_DaeCall", x: torch.Tensor, seeds: torch.Tensor, ids: torch.Tensor,
                 params: DasbeParams, out: torch.Tensor, n_images: int | None = None,
                 hidden: torch.Tensor | None = None) -> str:
    """Same spikes as ``_run_dense``, on on-pixel state; MLP DAEs run once per iteration (see above).

    ``n_images``: rows ``r`` and ``r + n_images`` hold the same image (seed-major rows); None = no sharing.

    Bookkeeping that gives the dense path's numbers with less work per step:
    * the refractory counter is kept as the first step at which the gate opens again (``n + r + 1`` after
      a spike at ``n``: the counter's r silent steps), so no per-step decrement is needed;
    * threshold noise is hashed only where a spike is possible: gate open and drive m above
      ``threshold - 1`` (less a margin far above float32 rounding): since U < 1, nothing else can fire.
      After the first iterations most on-pixels sit at m ~ 0 outside their object's phase;
    * one hash call per step serves three uses: threshold noise of step n, and for the entries that fired
      at step n-1 the window masks Bern(q1) of step n-1 (s -> s1) and Bern(q2) of step n (s1 -> s2, drawn
      one step early for the entries that will survive into s1). Every draw is keyed by (seed, image, step,
      pixel) as in ``rng.uniform``, so where and when it is computed changes nothing.
    """
    D, R, dev = params.delay, x.shape[0], x.device
    lay = _OnPixels(x, n_images=n_images or R)
    first = params.n_steps - len(out)
    rows_state = _HiddenRows(dae, seeds, ids, hidden, first, lay.row_of) if dae.stateful else None
    mlp = _MlpFastPath.build(dae, lay, D, rows_state)
    stepper = _HiddenSteps(dae, seeds, ids, hidden, first) if mlp is None and dae.stateful else None
    ring = lay.init_ring(seeds, ids, D)
    bounded = mlp is not None and mlp.use_bounds
    ring_lo = ring.clone() if bounded else ring  # lower bounds of the reconstructions' logits z (see write_bounds)
    threshold, r = params.neuron().effective_threshold, params.refractory
    silent_below = threshold - 1.0 - 2.0 ** -20  # m <= this cannot fire: m + U < threshold
    q1, q2 = params.mask_probabilities()
    opens_at = torch.where(lay.valid.reshape(-1), 0, _NEVER)  # first step at which each gate is open
    window = torch.zeros(lay.Q * D, dtype=torch.bool, device=dev)  # the iteration's windows, [rows, D, P]
    last_window = torch.zeros_like(window) if bounded else None  # the windows behind the ring's bounds
    window_q = (lay.entry // lay.P) * (D * lay.P) + lay.entry % lay.P  # entry q at slot t: window_q[q] + t*P
    if dev.type == "cpu" and _NUMPY_STEPS:
        fired = _numpy_steps(params, lay, seeds, ids, first, mlp, stepper or dae, ring, ring_lo, opens_at,
                             (window, last_window), window_q)
        lay.scatter_record_numpy(fired, out)
        return "module" if mlp is None else ("spiking" if dae.stateful else "mlp")
    none = torch.zeros(0, dtype=torch.int64, device=dev)
    s, s2, s2_next = none, none, none
    fired_log = []
    take = torch.index_select  # much faster than advanced indexing for 1-D gathers on CPU
    for k in range(params.n_iter):
        keys = _iteration_keys(seeds, ids, k * D - 1, D + 1)  # row t + 1 holds step k*D + t
        if bounded:
            window, last_window = last_window, window
        window.fill_(False)
        check = bounded and k > 0  # iteration 0 reads the exact initial ring
        for t in range(D):
            n = k * D + t
            m = ring[t] if lay.x_q is None else ring[t] * lay.x_q
            candidates = _flatnonzero((opens_at <= n) & (m > silent_below))
            rows_c, rows_s = take(lay.row_q, 0, candidates), take(lay.row_q, 0, s)  # s: spikes of step n-1
            row_keys = torch.cat([take(keys[0][t + 1], 0, rows_c), take(keys[1][t], 0, rows_s),
                                  take(keys[2][t + 1], 0, rows_s)])
            u, b1, b2 = lay.uniform_rows(row_keys, torch.cat([candidates, s, s])).split([len(candidates), len(s),
                                                                                          len(s)])
            b1 = b1 < q1
            s1, s2, s2_next = take(s, 0, _flatnonzero(b1)), s2_next, take(s, 0, _flatnonzero(b1 & (b2 < q2)))
            fires = (take(m, 0, candidates) + u - threshold) > 0  # = stochastic_step
            if check:  # m is an upper bound: where the lower bound decides otherwise, use the exact value
                m_lo = torch.sigmoid(take(ring_lo[t], 0, candidates).to(torch.float64)).mul_(1.0 - 2.0 ** -19)
                unsure = _flatnonzero(fires & ~((m_lo.to(torch.float32) + u - threshold) > 0))  # NaN: unsure
                if len(unsure):
                    exact = mlp.exact(last_window, take(candidates, 0, unsure), t)
                    fires[unsure] = (exact + take(u, 0, unsure) - threshold) > 0
            s = take(candidates, 0, _flatnonzero(fires))
            opens_at.index_fill_(0, s, n + r + 1)
            if n >= first:
                fired_log.append(s)
            if mlp is not None:
                window.index_fill_(0, take(window_q, 0, torch.cat([s, s1, s2])) + t * lay.P, True)
            else:
                ring[t] = _dense_dae_at_on_pixels(stepper or dae, (s, s1, s2), lay, n)
        if bounded:
            mlp.write_bounds(window, ring_lo, ring)
        elif mlp is not None:
            mlp(window, ring, k)
    lay.scatter_record(fired_log, out)
    return "module" if mlp is None else ("spiking" if dae.stateful else "mlp")


_NUMPY_STEPS = True  # CPU: the per-step bookkeeping in numpy (same numbers, a fraction of torch's per-call cost)
_MUL1, _MUL2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)  # rng.mix64's constants


def _uniform_np(z: np.ndarray) -> np.ndarray:
    """``rng.bits_to_uniform(rng.mix64_(z))`` on uint64 words, in place: numpy's unsigned arithmetic wraps
    modulo 2^64 and shifts logically, so the bits are those of the torch int64 version."""
    z ^= z >> np.uint64(30)
    z *= _MUL1
    z ^= z >> np.uint64(27)
    z *= _MUL2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)


def _numpy_steps(params: DasbeParams, lay: "_OnPixels", seeds: torch.Tensor, ids: torch.Tensor, first: int,
                 mlp: "_MlpFastPath | None", dae: Any, ring: torch.Tensor, ring_lo: torch.Tensor,
                 opens_at: torch.Tensor, windows: tuple[torch.Tensor, torch.Tensor | None],
                 window_q: torch.Tensor) -> list[np.ndarray]:
    """``_run_batched``'s step loop on CPU with numpy arrays that share the tensors' memory: the same
    operations in the same order (float32 arithmetic, uint64 hashes), so the same spikes. Returns the fired
    entries of each recorded step."""
    D, P, r = params.delay, lay.P, params.refractory
    threshold = params.neuron().effective_threshold
    silent_below = threshold - 1.0 - 2.0 ** -20  # m <= this cannot fire: m + U < threshold
    q1, q2 = params.mask_probabilities()
    bounded = ring_lo is not ring
    row_q, window_q = lay.row_q.numpy(), window_q.numpy()
    col_term = lay.col_term.numpy().view(np.uint64)
    x_q = None if lay.x_q is None else lay.x_q.numpy()
    gate = opens_at.numpy()
    ring_np, ring_lo_np = ring.numpy(), ring_lo.numpy()
    window, last_window = windows
    none = np.zeros(0, dtype=np.int64)
    s, s2_next = none, none
    fired_log = []
    for k in range(params.n_iter):
        keys = [key.numpy().view(np.uint64) for key in _iteration_keys(seeds, ids, k * D - 1, D + 1)]
        if bounded:
            window, last_window = last_window, window
        window.fill_(False)
        window_np = window.numpy()
        check = bounded and k > 0  # iteration 0 reads the exact initial ring
        for t in range(D):
            n = k * D + t
            m = ring_np[t] if x_q is None else ring_np[t] * x_q
            candidates = np.flatnonzero((gate <= n) & (m > silent_below))
            rows_s = row_q[s]  # s: spikes of step n-1
            z = np.concatenate([keys[0][t + 1][row_q[candidates]], keys[1][t][rows_s], keys[2][t + 1][rows_s]])
            z += col_term[np.concatenate([candidates, s, s])]
            v = _uniform_np(z)
            nc, ns = len(candidates), len(s)
            u, b1 = v[:nc], v[nc:nc + ns] < q1
            s1, s2, s2_next = s[b1], s2_next, s[b1 & (v[nc + ns:] < q2)]
            fired = np.flatnonzero((m[candidates] + u - threshold) > 0)  # = stochastic_step
            if check:  # m is an upper bound: where the lower bound decides otherwise, use the exact value
                q_fired, u_fired = candidates[fired], u[fired]
                unsure = np.flatnonzero(~((mlp.lower_bound(ring_lo_np[t][q_fired]) + u_fired - threshold) > 0))
                if len(unsure):
                    exact = mlp.exact(last_window, torch.from_numpy(q_fired[unsure]), t).numpy()
                    keep = np.ones(len(fired), dtype=bool)
                    keep[unsure] = (exact + u_fired[unsure] - threshold) > 0
                    fired = fired[keep]
            s = candidates[fired]
            gate[s] = n + r + 1
            if n >= first:
                fired_log.append(s)
            if mlp is not None:
                window_np[window_q[np.concatenate([s, s1, s2])] + t * P] = True
            else:
                ring[t] = _dense_dae_at_on_pixels(dae, tuple(torch.from_numpy(a) for a in (s, s1, s2)), lay, n)
        if bounded:
            mlp.write_bounds(window, ring_lo, ring)
        elif mlp is not None:
            mlp(window, ring, k)
    return fired_log


def _iteration_keys(seeds: torch.Tensor, ids: torch.Tensor, start: int, count: int) -> list[torch.Tensor]:
    """Row keys ``[count, rows]`` of steps ``start ..`` for the threshold, mask-1 and mask-2 streams."""
    steps = torch.arange(start, start + count, device=seeds.device)[:, None]
    return [rng.row_keys(seeds[None], stream, ids[None], steps).reshape(count, -1)
            for stream in (Stream.THRESHOLD, Stream.MASK1, Stream.MASK2)]


def _dense_dae_at_on_pixels(dae: "_DaeCall | _HiddenSteps", entries: tuple[torch.Tensor, ...], lay: _OnPixels,
                            step: int) -> torch.Tensor:
    """Any DAE: call it on the dense ``[rows, N]`` window and read the reconstruction at the on-pixels."""
    window = torch.zeros(lay.rows * lay.n, dtype=torch.bool, device=lay.dense_q.device)
    for e in entries:
        window[lay.dense_q[e]] = True
    window = window.view(lay.rows, lay.n)
    y = dae(window, step) if isinstance(dae, _HiddenSteps) else dae(window)
    return y.reshape(-1)[lay.dense_q]


def hidden_noise(seeds: torch.Tensor, image_ids: torch.Tensor, step: int, n_hidden: int) -> torch.Tensor:
    """``[rows, H]`` U(0, 1) hidden-spike noise of global step ``step`` (stream ``HIDDEN_STREAM``)."""
    return rng.uniform(seeds, HIDDEN_STREAM, image_ids, step, n_hidden)


class _HiddenSteps:
    """A spiking-hidden DAE called once per step on dense ``[rows, N]`` windows (run-row order), carrying its
    hidden refractory state (zero at creation: one object per run, so the state is reset per image)."""

    def __init__(self, dae: "_DaeCall", seeds: torch.Tensor, ids: torch.Tensor, out: torch.Tensor | None,
                 first: int) -> None:
        self.dae, self.seeds, self.ids, self.out, self.first = dae, seeds, ids, out, first
        self.state = dae.initial_state(len(seeds))

    def __call__(self, window: torch.Tensor, step: int) -> torch.Tensor:
        noise = hidden_noise(self.seeds, self.ids, step, self.dae.n_hidden)
        y, spikes, self.state = self.dae.step(window, self.state, noise)
        if self.out is not None and step >= self.first:
            self.out[step - self.first] = spikes > 0
        return y


class _HiddenRows:
    """Hidden refractory state of the batched loop's compact rows (``_OnPixels.row_of`` order) for the
    spiking fast path: gates a whole iteration's membranes slot by slot (see ``_MlpFastPath``)."""

    def __init__(self, dae: "_DaeCall", seeds: torch.Tensor, ids: torch.Tensor, out: torch.Tensor | None,
                 first: int, row_of: torch.Tensor) -> None:
        self.refractory, self.out, self.first, self.row_of = dae.refractory, out, first, row_of
        self.seeds, self.ids = seeds[row_of], ids[row_of]
        self.counter = dae.initial_state(len(row_of)).refractory

    def __call__(self, u: torch.Tensor, c0: int, c1: int, k: int, delay: int) -> torch.Tensor:
        """Spikes (float, like ``u``) of compact rows ``c0:c1`` for the membranes ``u [(c1-c0)*D, H]`` of
        iteration ``k`` (row-major: entry ``(c - c0) * D + t`` is slot t of row c)."""
        H = u.shape[1]
        steps = torch.arange(k * delay, (k + 1) * delay, device=u.device)
        keys = rng.row_keys(self.seeds[c0:c1, None], HIDDEN_STREAM, self.ids[c0:c1, None], steps[None, :])
        flat_u = u.reshape(-1)
        pos = _flatnonzero(flat_u > 0)  # u <= 0 cannot fire: u + U - 1 < 0 since U < 1
        noise = rng.uniform_at(keys, torch.div(pos, H, rounding_mode="floor"), pos % H)
        raw = torch.zeros_like(flat_u)
        raw[pos] = ((torch.index_select(flat_u, 0, pos) + noise.to(u.dtype) - 1.0) > 0).to(u.dtype)
        raw = raw.view(c1 - c0, delay, H)
        state = HiddenState(self.counter[c0:c1])
        spikes = torch.empty_like(raw)
        for t in range(delay):
            spikes[:, t], state = refractory_gate(raw[:, t], state, self.refractory)
        self.counter[c0:c1] = state.refractory
        kept = k * delay - self.first  # step of slot 0 in the record
        if self.out is not None and kept + delay > 0:
            lo = max(0, -kept)
            self.out[kept + lo:kept + delay, self.row_of[c0:c1]] = spikes[:, lo:].transpose(0, 1) > 0
        return spikes.view(-1, H)


class _MlpFastPath:
    """An MLP DAE (``MLPDAE``: Linear layers, ReLU inside, code activation, sigmoid output) evaluated on the
    windows of a whole iteration at once, exploiting the sparse binary input and the on-pixel output."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor, str]], lay: _OnPixels, delay: int,
                 code: tuple[int, "_HiddenRows"] | None = None) -> None:
        self.lay, self.D = lay, delay
        self.code_at, self.code = code if code is not None else (-1, None)  # layer index of the spiking code
        # the layer after a spiking code sees binary spikes: a sparse sum of weight columns, like the first layer
        self.spike_w_t = layers[self.code_at + 1][0].t().contiguous() if code is not None else None
        (w_first, self.b_first, self.act_first) = layers[0]
        self.w_first_t = w_first.t().contiguous()  # [N, K]: row p = weight column of pixel p
        self.w_first = w_first
        self.middle = layers[1:-1]
        self.width = max(w.shape[0] for w, _, _ in layers[:-1])  # widest hidden layer
        w_last, b_last, _ = layers[-1]
        self.gather = lay.P <= _GATHER_MAX_FRACTION * lay.n
        if self.gather:  # per image: its on-pixels' decoder rows [B, K, P] (a transposed view) and biases
            pix = lay.pix[:: lay.n_seeds].reshape(-1)  # compact rows are image-major
            self.w_last_g = w_last.index_select(0, pix).view(lay.n_images, lay.P, -1).transpose(1, 2)
            self.b_last_g = b_last.index_select(0, pix).view(lay.n_images, 1, lay.P)
        else:
            self.w_last_t, self.b_last = w_last.t().contiguous(), b_last
        self.use_bounds = self._setup_bounded(layers) if _BOUNDED_FLOAT32 else False

    def _setup_bounded(self, layers: list[tuple[torch.Tensor, torch.Tensor, str]]) -> bool:
        """Prepare the float32 products with error bounds (see ``write_bounds``); False where they do not apply:
        more than one hidden layer, a spiking code, non-binary images, weights that are not float32 values,
        weights so large that a float32 sum could overflow, or a device whose float32 products may round
        more coarsely (TF32 / reduced matmul precision)."""
        lay = self.lay
        if self.code is not None or len(layers) != 2 or lay.x_q is not None:
            return False
        (w1, b1, _), (w2, b2, _) = layers
        if w1.dtype != torch.float64 or not _full_float32_products(w1.device):
            return False
        for t in (w1, b1, w2, b2):
            if not (bool(torch.isfinite(t).all()) and torch.equal(t.to(torch.float32).to(torch.float64), t)):
                return False
        # a priori magnitudes: every float32 partial sum stays far from overflow (the bounds below are relative)
        pre_max = float(b1.abs().max()) + lay.P * float(w1.abs().max())
        h_max = pre_max if self.act_first == "relu" else 1.0
        z_max = float(b2.abs().max()) + h_max * float(w2.abs().sum(dim=1).max())
        if not max(pre_max, z_max) < _BOUNDS_MAX_MAGNITUDE:
            return False
        f32 = torch.float32
        self.b_first32 = b1.to(f32)
        if self.gather:
            # [B, K, P] contiguous: the plain (NN) batched product is a little faster in float32
            self.w_last_g32, self.b_last_g32 = self.w_last_g.to(f32).contiguous(), self.b_last_g.to(f32)
        else:
            self.w_last_t32, self.b_last32 = self.w_last_t.to(f32), self.b_last.to(f32)
        self.w_last64, self.b_last64 = w2, b2  # [N, K], [N]: exact recomputation of single entries
        self.pix_table = None  # built on first use (CPU)
        width = w1.shape[0]
        # hidden layer: W1 = W_hi + W_lo with W_hi on a grid of 2^(24 - k) steps below max|W1| and at most
        # P <= 2^k - 1 pixels per window, so the float32 sum of a window's W_hi columns is exact; only the float32
        # sum of the tiny W_lo parts rounds (then two float32 additions: + W_lo sum, + bias). The error against the
        # float64 path's pre-activation is carried through the activation's Lipschitz constant (see write_bounds).
        k = max(1, math.ceil(math.log2(lay.P + 1)))
        top = float(w1.abs().max())
        unit = 2.0 ** (math.ceil(math.log2(top)) - (24 - k)) if top > 0 else 1.0
        w_hi = torch.round(w1 / unit) * unit
        w_lo = w1 - w_hi
        self.w_hi_t32, self.w_lo_t32 = w_hi.t().contiguous().to(f32), w_lo.t().contiguous().to(f32)
        for split, exact in ((self.w_hi_t32, w_hi), (self.w_lo_t32, w_lo)):
            if not torch.equal(split.to(w1.dtype).t(), exact):
                return False
        K = w1.shape[0]
        self.lipschitz = 1.0 if self.act_first == "relu" else 0.25
        self.g_act = 0.0 if self.act_first == "relu" else 2.0 ** -20  # float32 sigmoid: a few ulp, relative
        # per window of A pixels, |W_lo sum error|_2 <= gamma_(A+1) sqrt(K) A max|W_lo| and the float64 path's own
        # |pre64 - pre|_2 <= 2 gamma64_(A+3) (|b1|_2 + A max_p |W1[:, p]|_2)
        self.dh_lo = math.sqrt(K) * float(w_lo.abs().max())
        self.b1_norm = float(torch.linalg.vector_norm(b1))
        self.dh_64 = 2.0 * (self.b1_norm + lay.P * float(torch.linalg.vector_norm(w1, dim=0).max()))
        # output layer: the float32 product's error (+ the float64 one's) and the rounding of z -/+ e, both
        # relative to |b2_p| + |h|_2 |W2[p, :]|_2, which bounds |z| too
        self.g2 = _gamma(width + 2) + 2.0 ** -50 * (width + 2) + 2.0 ** -23
        pix = lay.pix  # [rows, P] compact rows
        self.wn_rows = torch.linalg.vector_norm(w2, dim=1)[pix].to(f32)  # [rows, P] |W2[p, :]|_2
        # plus an absolute term for float32 underflow: each of the <= K + 2 operations loses at most 2^-149
        self.c_rows = (_SAFETY * (self.g2 * b2.abs() + (width + 2) * _UNDERFLOW))[pix].to(f32)
        return True

    @classmethod
    def build(cls, dae: "_DaeCall", lay: _OnPixels, delay: int,
              hidden: "_HiddenRows | None" = None) -> "_MlpFastPath | None":
        if lay.rows == 0:
            return None
        if dae.stateful:
            layers = _spiking_layers(dae.module)
            return None if layers is None else cls(layers, lay, delay, (len(dae.module.encoder) - 1, hidden))
        layers = _mlp_layers(dae.module)
        return None if layers is None else cls(layers, lay, delay)

    def __call__(self, window: torch.Tensor, ring: torch.Tensor, k: int = 0) -> None:
        """Write the reconstructions of the iteration's windows (bool ``[rows, D, P]``, flat) into ``ring [D, Q]``.

        Runs over chunks of images whose hidden activations fit in cache (~2 MB): large fresh buffers cost
        more in memory traffic than the arithmetic on them.
        """
        lay, D, S = self.lay, self.D, self.lay.n_seeds
        bag, pixels, step, bounds = self._windows(window)
        ring_rows = ring.view(D, lay.rows, lay.P)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            b0, b1 = i * step, min((i + 1) * step, lay.n_images)
            if b0 >= b1:
                break
            first_bag = b0 * S * D
            h = self._first_layer(bag[lo:hi] - first_bag, pixels[lo:hi], (b1 - b0) * S * D)
            if self.code_at == 0:
                h = self.code(h, b0 * S, b1 * S, k, D)
            for i, (w, b, act) in enumerate(self.middle, start=1):
                if i == self.code_at + 1 and self.code is not None:
                    h = _ACTIVATIONS_[act](_binary_linear(h, w, b, self.spike_w_t))
                else:
                    h = _ACTIVATIONS_[act](torch.addmm(b, h, w.t()))
                if i == self.code_at:  # spiking code layer: membranes -> gated spikes, slot by slot
                    h = self.code(h, b0 * S, b1 * S, k, D)
            if self.gather:  # [b, S*D, K] x [b, K, P]: each image's decoder rows serve all its seeds and slots
                z = torch.baddbmm(self.b_last_g[b0:b1], h.view(b1 - b0, S * D, -1), self.w_last_g[b0:b1])
            else:
                pix = lay.pix[b0 * S:b1 * S]
                z = torch.mm(h, self.w_last_t).view(len(pix), D, lay.n)
                z = z.gather(2, pix[:, None, :].expand(-1, D, -1)).add_(self.b_last[pix][:, None, :])
            ring_rows[:, b0 * S:b1 * S].copy_(z.sigmoid_().view(-1, D, lay.P).transpose(0, 1))

    def _first_layer(self, bag: torch.Tensor, pixels: torch.Tensor, n_bags: int) -> torch.Tensor:
        if len(bag) > _SPARSE_MAX_DENSITY * n_bags * self.lay.n:  # dense window: a plain GEMM is faster
            a = torch.zeros(n_bags * self.lay.n, dtype=self.w_first.dtype, device=bag.device)
            a[bag * self.lay.n + pixels] = 1.0
            pre = torch.addmm(self.b_first, a.view(n_bags, -1), self.w_first.t())
        else:
            counts = torch.bincount(bag, minlength=n_bags)
            offsets = torch.cumsum(counts, 0) - counts
            pre = F.embedding_bag(pixels, self.w_first_t, offsets, mode="sum").add_(self.b_first)
        return _ACTIVATIONS_[self.act_first](pre)

    def _windows(self, window: torch.Tensor, chunk_bytes: int = 1 << 21, item: int = 8
                 ) -> tuple[torch.Tensor, torch.Tensor, int, list[int]]:
        """Active (bag, pixel) pairs of the iteration's windows and the chunk bounds (images per chunk)."""
        lay, D, S = self.lay, self.D, self.lay.n_seeds
        active = _flatnonzero(window)  # ascending, so grouped by bag = (compact row, slot)
        bag = torch.div(active, lay.P, rounding_mode="floor")  # c*D + t: h comes out as [rows, D, K]
        pixels = torch.index_select(lay.pix_q, 0, torch.div(bag, D, rounding_mode="floor") * lay.P + active % lay.P)
        step = max(1, chunk_bytes // (S * D * self.width * item))  # images per chunk
        bounds = torch.searchsorted(bag, torch.arange(0, lay.n_images + step, step, device=bag.device) * (S * D))
        return bag, pixels, step, bounds.tolist()

    def write_bounds(self, window: torch.Tensor, ring_lo: torch.Tensor, ring_hi: torch.Tensor) -> None:
        """Bounds of the reconstructions that ``__call__`` would write, from float32 products: ``ring_hi [D, Q]``
        gets an upper bound m_hi of m, ``ring_lo`` a lower bound z_lo of its logit (``lower_bound`` turns it into
        m_lo; only the few entries that fire under m_hi need it).

        ``__call__`` gives m = float32(sigmoid(z64)), z64 the float64 product. Here the weights are float32
        values, so only sums round, and every sum of n terms obeys |fl(sum) - sum| <= gamma_n sum|terms| in
        any order (gamma_n = n u / (1 - n u), u = 2^-24). Hidden layer: the W_hi part of the window's columns
        sums exactly (see ``_setup_bounded``), the W_lo part and two additions round; the difference to the
        float64 path's pre-activation goes through the activation's Lipschitz constant, plus the float32
        sigmoid's few-ulp error. Output layer: |z32 - z64| <= e with sum_i |h_i w_ip| <= |h|_2 |w_p|_2
        (Cauchy-Schwarz), per window and pixel. sigmoid is increasing, so m lies in [sigmoid(z32 - e),
        sigmoid(z32 + e)], each end widened by 2^-19 relative (> the float32 sigmoid's error and any rounding).
        A spike decision m + U > threshold is increasing in m: where it is the same at both ends it is the
        exact decision; the loop recomputes the others (1-2 per image with the authors' DAEs) with ``exact``.
        """
        lay, D, S = self.lay, self.D, self.lay.n_seeds
        if window.device.type == "cpu":  # numpy: the active window positions, their bags and pixels
            step = max(1, _BOUNDS_CHUNK_BYTES // (S * D * self.width * 4))
            active = np.flatnonzero(window.numpy())
            if self.pix_table is None:  # pixel of each window position [rows, D, P], flat
                self.pix_table = np.repeat(lay.pix.numpy(), D, axis=0).reshape(-1)
            bag_np = active // lay.P
            bag, pixels = torch.from_numpy(bag_np), torch.from_numpy(self.pix_table[active])
            bounds = np.searchsorted(bag_np, np.arange(0, lay.n_images + step, step) * (S * D)).tolist()
        else:
            bag, pixels, step, bounds = self._windows(window, _BOUNDS_CHUNK_BYTES, 4)
        lo_rows, hi_rows = ring_lo.view(D, lay.rows, lay.P), ring_hi.view(D, lay.rows, lay.P)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            b0, b1 = i * step, min((i + 1) * step, lay.n_images)
            if b0 >= b1:
                break
            n_bags, c0, c1 = (b1 - b0) * S * D, b0 * S, b1 * S
            bg, px = bag[lo:hi] - b0 * S * D, pixels[lo:hi]
            counts = torch.bincount(bg, minlength=n_bags)
            offsets = torch.cumsum(counts, 0) - counts
            pre = F.embedding_bag(px, self.w_hi_t32, offsets, mode="sum")  # exact
            pre += F.embedding_bag(px, self.w_lo_t32, offsets, mode="sum")
            pre += self.b_first32
            # two float32 roundings: |dpre_i| <= 2^-24 (|S_i| + |pre_i|) <= 2^-24 (2 |pre_i| + |b1_i|) (+ 2^-20)
            # float32 norms, widened by 2^-12 relative (> their K-term rounding)
            # norms accumulated in float64 (float32 squares of tiny activations would underflow to 0)
            pre_norm = torch.linalg.vector_norm(pre, dim=1, dtype=torch.float64).mul_(1.0 + 2.0 ** -12)
            h = _ACTIVATIONS_[self.act_first](pre)
            hn = torch.linalg.vector_norm(h, dim=1, dtype=torch.float64).mul_(1.0 + 2.0 ** -12)
            a_n = counts.to(torch.float64)
            g32 = (a_n + 1.0) * 2.0 ** -24 / (1.0 - (a_n + 1.0) * 2.0 ** -24)
            dpre = ((2.0 ** -24 + 2.0 ** -44) * (2.0 * pre_norm + self.b1_norm) + g32 * a_n * self.dh_lo
                    + (a_n + 3.0) * 2.0 ** -52 * self.dh_64 + (a_n + 3.0) * math.sqrt(self.width) * _UNDERFLOW)
            dh = self.lipschitz * dpre + (self.g_act + 2.0 ** -50) * hn
            a = (_SAFETY * (self.g2 * (hn + dh) + dh)).to(torch.float32).view(c1 - c0, D, 1)
            if self.gather:
                z = torch.baddbmm(self.b_last_g32[b0:b1], h.view(b1 - b0, S * D, -1), self.w_last_g32[b0:b1])
            else:
                pix = lay.pix[c0:c1]
                z = torch.mm(h, self.w_last_t32).view(c1 - c0, D, lay.n)
                z = z.gather(2, pix[:, None, :].expand(-1, D, -1)).add_(self.b_last32[pix][:, None, :])
            z = z.view(c1 - c0, D, lay.P)
            e = torch.addcmul(self.c_rows[c0:c1, None, :], a, self.wn_rows[c0:c1, None, :])
            # m in [sigmoid(z - e), sigmoid(z + e)]; the float32 sigmoid is widened by 2^-19 relative (its error
            # is a few ulp). m_hi may exceed 1 and m_lo stay below 1 at saturation: still valid bounds.
            hi = hi_rows[:, c0:c1]
            torch.sigmoid(torch.add(z, e), out=hi.transpose(0, 1))
            hi.mul_(1.0 + 2.0 ** -19).clamp_min_(2.0 ** -126)  # the float32 sigmoid flushes to 0 before m does
            torch.sub(z, e, out=lo_rows[:, c0:c1].transpose(0, 1))  # z_lo; see lower_bound

    @staticmethod
    def lower_bound(z_lo: np.ndarray) -> np.ndarray:
        """m_lo = sigmoid(z_lo) in float64, less 2^-19 relative (> its float64 error and the rounding to float32)."""
        with np.errstate(over="ignore"):  # exp(-z) = inf for z < -709: m_lo = 0
            return ((1.0 - 2.0 ** -19) / (1.0 + np.exp(-z_lo.astype(np.float64)))).astype(np.float32)

    def exact(self, window: torch.Tensor, q: torch.Tensor, t: int) -> torch.Tensor:
        """``__call__``'s float32 reconstruction at entries ``q`` of slot ``t`` for the iteration's windows
        ``window`` (bool ``[rows, D, P]``, flat), computed entry by entry in float64. Its summation order is not
        the float64 path's matrix product, so equality holds up to float64 rounding, as between the batched and
        dense paths: a decision can differ only if that last-bit difference moves m across a float32 rounding
        boundary and the uniform draw sits exactly at the threshold."""
        lay = self.lay
        c = torch.div(q, lay.P, rounding_mode="floor")
        win = window.view(lay.rows, self.D, lay.P)[c, t]  # [E, P]
        e_idx, j = win.nonzero(as_tuple=True)
        pixels = lay.pix[c[e_idx], j]
        counts = torch.bincount(e_idx, minlength=len(q))
        pre = F.embedding_bag(pixels, self.w_first_t, torch.cumsum(counts, 0) - counts, mode="sum").add_(self.b_first)
        h = _ACTIVATIONS_[self.act_first](pre)
        target = lay.pix_q[q]
        z = (h * self.w_last64[target]).sum(dim=1).add_(self.b_last64[target])
        return z.sigmoid_().to(torch.float32)


_ACTIVATIONS_ = {"relu": torch.relu_, "sigmoid": torch.sigmoid_}  # in place: no fresh large buffers


_BOUNDED_FLOAT32 = True  # MLP fast path: float32 products with error bounds (exact decisions, see write_bounds)
_BOUNDS_CHUNK_BYTES = 1 << 22  # float32 hidden activations per chunk of write_bounds
_SAFETY = 1.25  # widens every error bound (covers the rounding of the bound's own arithmetic)
_BOUNDS_MAX_MAGNITUDE = 2.0 ** 64  # larger possible sums (float32 overflows at 2^128) use the float64 path
_UNDERFLOW = 2.0 ** -149  # float32's smallest subnormal: the absolute error of one underflowing operation


def _full_float32_products(device: torch.device) -> bool:
    """Whether float32 matrix products on ``device`` round like IEEE float32 (the bounds assume it)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    return device.type == "cpu" or (device.type == "cuda" and not torch.backends.cuda.matmul.allow_tf32)


def _gamma(n: int) -> float:
    """Relative error bound of a float32 sum of n terms in any order: n u / (1 - n u), u = 2^-24."""
    u = 2.0 ** -24
    return n * u / (1.0 - n * u)


def _binary_linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """``h @ w.T + b`` for a 0/1 matrix ``h``: the sum of the selected weight columns when ``h`` is sparse."""
    active = _flatnonzero(h.reshape(-1) > 0)
    if len(active) > _SPARSE_MAX_DENSITY * h.numel():
        return torch.addmm(b, h, w.t())
    n_bags, width = h.shape
    counts = torch.bincount(torch.div(active, width, rounding_mode="floor"), minlength=n_bags)
    return F.embedding_bag(active % width, w_t, torch.cumsum(counts, 0) - counts, mode="sum").add_(b)


def _mlp_layers(module: Any) -> list[tuple[torch.Tensor, torch.Tensor, str]] | None:
    """``[(weight, bias, activation), ...]`` of an unmodified ``MLPDAE``, else None (use the module as is)."""
    if not isinstance(module, MLPDAE) or module.hidden_act not in _ACTIVATIONS_:
        return None
    if any(getattr(type(module), name) is not getattr(MLPDAE, name) for name in ("forward", "encode", "decode")):
        return None  # a subclass that changes the computation
    return _layer_list(module)


def _layer_list(module: MLPDAE) -> list[tuple[torch.Tensor, torch.Tensor, str]] | None:
    linears = list(module.encoder) + list(module.decoder)
    if any(type(layer) is not nn.Linear or layer.bias is None for layer in linears):
        return None
    if any(m._forward_hooks or m._forward_pre_hooks for m in module.modules()):
        return None
    n_enc, n_dec = len(module.encoder), len(module.decoder)
    acts = ["relu"] * (n_enc - 1) + [module.hidden_act] + ["relu"] * (n_dec - 1) + ["sigmoid"]
    return [(layer.weight, layer.bias, act) for layer, act in zip(linears, acts)]


def _spiking_layers(module: Any) -> list[tuple[torch.Tensor, torch.Tensor, str]] | None:
    """Layers of an unmodified ``SpikingDAE`` (its code layer gives the membrane u), else None."""
    if not isinstance(module, SpikingDAE) or module.hidden_act not in _ACTIVATIONS_:
        return None
    names = ("forward", "encode", "decode", "membrane")
    if any(getattr(type(module), name) is not getattr(SpikingDAE, name) for name in names):
        return None
    return _layer_list(module)


def _run_dense(dae: "_DaeCall", x: torch.Tensor, seeds: torch.Tensor, ids: torch.Tensor,
               params: DasbeParams, out: torch.Tensor, hidden: torch.Tensor | None = None) -> None:
    """Fill ``out`` (the last ``len(out)`` steps, ``[steps, rows, N]``) with the spikes of all rows at once,
    on dense ``[rows, N]`` state with one DAE call per step."""
    N, D = x.shape[1], params.delay
    ring = init_delay_line(seeds, ids, D, N)
    neuron, (q1, q2) = params.neuron(), params.mask_probabilities()
    state = StochasticState(torch.zeros_like(x))
    s1 = s2 = torch.zeros_like(x, dtype=torch.bool)
    first = params.n_steps - len(out)
    stepper = _HiddenSteps(dae, seeds, ids, hidden, first) if dae.stateful else None
    for n in range(params.n_steps):
        t = n % D
        noise = rng.uniform(seeds, Stream.THRESHOLD, ids, n, N)
        fired, state = stochastic_step(x * ring[t], state, neuron, noise)
        s = fired > 0
        window = s | s1 | s2
        # R[t] was read above: the reconstruction returns D steps later
        ring[t] = stepper(window, n) if stepper is not None else dae(window)
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
                   params: DasbeParams, out: torch.Tensor, hidden: torch.Tensor | None = None) -> None:
    """Slow literal loop, one image and one step at a time (the authors' structure, our RNG); a spiking-hidden
    DAE gets a fresh hidden state for every image."""
    keep = len(out) // params.delay
    for row in range(x.shape[0]):
        stepper = None
        if dae.stateful:
            stepper = _HiddenSteps(dae, seeds[row:row + 1], ids[row:row + 1],
                                   None if hidden is None else hidden[:, row:row + 1], params.n_steps - len(out))
        out[:, row] = _reference_one_image(dae, x[row], seeds[row:row + 1], ids[row:row + 1], params, keep, stepper)


def _reference_one_image(dae: "_DaeCall", x: torch.Tensor, seed: torch.Tensor, image_id: torch.Tensor,
                         params: DasbeParams, keep: int, stepper: "_HiddenSteps | None" = None) -> torch.Tensor:
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
            y = (stepper(a[None], n) if stepper is not None else dae(a[None]))[0]
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
        if isinstance(dae, nn.Module):
            require_finite_weights(dae.named_parameters(), f"the DAE ({type(dae).__name__})")
        tensors = _module_tensors(dae)
        self.dtype = dtype or (tensors[0].dtype if tensors else torch.float32)
        if any(t.dtype != self.dtype or t.device != device for t in tensors):
            self.module = copy.deepcopy(dae).to(device=device, dtype=self.dtype)
        self._was_training = getattr(self.module, "training", None)
        self.stateful = callable(getattr(self.module, "initial_state", None))
        self.n_hidden = int(getattr(self.module, "n_hidden", 0)) if self.stateful else 0
        self.refractory = int(getattr(self.module, "refractory", 0)) if self.stateful else None
        self.device = device

    def initial_state(self, rows: int) -> Any:
        """The spiking-hidden DAE's zero state for ``rows`` rows (hidden refractory counters all free)."""
        return self.module.initial_state(rows, self.device)

    def step(self, window: torch.Tensor, state: Any, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Spiking-hidden DAE: ``(float32 reconstruction, hidden spikes, new state)`` for one step."""
        y, spikes, state = self.module(window.to(self.dtype), state, noise)
        self._check(y, window)
        return y.to(torch.float32), spikes, state

    def _check(self, y: torch.Tensor, window: torch.Tensor) -> None:
        if tuple(y.shape) != tuple(window.shape):
            raise ValueError(f"the DAE must return a reconstruction of shape {tuple(window.shape)} "
                             f"(or a tuple starting with one), got {tuple(y.shape)}")

    def __enter__(self) -> "_DaeCall":
        if isinstance(self.module, nn.Module):
            self.module.eval()
        return self

    def __exit__(self, *exc: Any) -> None:
        if isinstance(self.module, nn.Module) and self._was_training is not None:
            self.module.train(self._was_training)

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        if self.stateful:
            raise ValueError(f"{type(self.module).__name__} has a spiking hidden layer: call it with its state "
                             "(the binding loops do; this is a stateless call)")
        out = self.module(window.to(self.dtype))
        y = out[0] if isinstance(out, (tuple, list)) else out
        self._check(y, window)
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
        raise ValueError("images must be finite and lie in [0, 1] (the datasets' images are binary 0/1)")
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


def seed_major_rows(x: torch.Tensor, seed: int | Sequence[int], image_ids: Any = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run rows for images ``x [B, N]`` under each seed: ``(x_rows, row_seeds, row_ids)``, seed-major
    (row ``s*B + b`` is seed ``s`` on image ``b``), so every row keys its own noise by (seed, image id)."""
    seeds, ids = _seed_list(seed), _image_ids(image_ids, x.shape[0])
    row_seeds = torch.tensor(seeds, dtype=torch.int64).repeat_interleave(x.shape[0])
    return x.repeat(len(seeds), 1), row_seeds, ids.repeat(len(seeds))


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

"""GUST: a spiking pixel layer in closed loop with an MLP autoencoder over T circular phase slots (spec gust.md §2).

The network (§2.1) is an encoder E: N -> 512 -> H (ReLU, sigmoid) and a decoder G: H -> 512 -> N (ReLU,
sigmoid); 1,214,624 parameters for N = 784, H = 400. The pixel neurons are ``StochasticParams.gust``
(threshold 1 on ``x * c + U``, absolute refractory counter ``r = max(0, r - 1 + tau_rfr * s)``).

Dynamics, in the spec's exact update order (§2.3), for cycle k and slot t (global step n = T k + t)::

    c_t     = G(h[:, t])                 # h[:, t] was written in cycle k-1 (U[0,1) init in cycle 0)
    keep    = Bernoulli(keep_p)
    prev    = S[:, t-1 mod T] * keep     # slot T-1 of the previous cycle when t = 0 (zeros in cycle 0)
    S[:, t] = neuron(x * c_t, ref)       # refractory state carries across slots and cycles
    h[:, t] = E(S[:, t] + prev)

Slot t's hidden state is read back only at slot t of the *next* cycle, so within a cycle the T decoder
calls depend on last cycle's h alone and the T encoder calls are needed only in the next cycle. We
therefore run G once per cycle on ``[B*T, H]``, step the cheap neurons slot by slot, and run E once on
``[B*T, N]``: the same arithmetic as the step-by-step loop with 2 large matrix products per cycle instead
of 2T small ones. ``gust_reference_loop`` is the literal step-by-step (optionally per-image) loop, kept
for tests and ``bench/gust_bench.py``. Training adds an exact sparse path (``sparse=True``): the encoder's
binary, very sparse input is gathered instead of multiplied, and before the last cycle the decoder's output
layer runs only at the input's on-pixels, since ``x * c`` (and its gradient) is 0 elsewhere.

Gradients (§2.4) come from ``stochastic_step``: rectangle surrogate for the threshold and a straight
gradient through the refractory gate and counter, so ``loss.backward()`` is full BPTT over all steps.

Random numbers: ``run_gust`` draws everything (initial h ~ U[0,1), threshold noise, keep masks) from the
counter-based ``workbench.rng`` streams keyed by (seed, image id, step), so a record does not depend on
the batch size or an image's position in the batch. Streams: ``INIT`` (initial h, step 0),
``THRESHOLD`` (neuron noise, step n), ``MASK1`` (the keep mask on the previous slot's spikes, step n) and
``DROPOUT`` (input corruption, see ``corrupt``). Training draws from seeded ``torch.Generator``s instead
(faster; batch-dependent draws are fine there).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch
from torch import nn

from workbench import rng
from workbench.checks import require_finite_weights, require_positive_int
from workbench.neurons.stochastic import StochasticParams, StochasticState, stochastic_step
from workbench.record import SpikeRecord
from workbench.rng import Stream

__all__ = ["GustParams", "GustNet", "GustRun", "run_gust", "gust_loss", "gust_loss_per_image", "load_gust",
           "gust_config", "gust_dynamics", "gust_reference_loop", "corrupt", "counter_draws", "generator_draws",
           "MODEL_NAME", "count_parameters", "GustTrace", "pack_gust", "gust_checkpoint",
           "gust_from_checkpoint"]

MODEL_NAME = "GustNet"


@dataclass(frozen=True)
class GustParams:
    """Sizes and constants of a GUST network (defaults: the paper's 28x28 Shapes network).

    Attributes:
        n_pixels: N, pixel neurons (any H*W; flattened row-major).
        hidden: H, hidden units per slot.
        slots: T, slots per cycle (the length of the top-down delay line).
        tau_rfr: refractory constant: tau_rfr - 1 silent steps after a spike, minimum ISI tau_rfr.
        keep_p: probability of keeping each previous-slot spike in the encoder input.
        enc_hidden, dec_hidden: widths of the encoder's and decoder's hidden layers.
        surrogate: surrogate of the threshold (rectangle = 1 where abs(v - 1) < 0.5).
    """

    n_pixels: int = 784
    hidden: int = 400
    slots: int = 10
    tau_rfr: int = 9
    keep_p: float = 0.5
    enc_hidden: int = 512
    dec_hidden: int = 512
    surrogate: str = "rectangle"

    def __post_init__(self) -> None:
        for name in ("n_pixels", "hidden", "slots", "tau_rfr", "enc_hidden", "dec_hidden"):
            object.__setattr__(self, name, require_positive_int(f"GustParams.{name}", getattr(self, name)))
        if not 0.0 <= float(self.keep_p) <= 1.0:
            raise ValueError(f"GustParams.keep_p must lie in [0, 1], got {self.keep_p!r}")
        if not isinstance(self.surrogate, str):
            raise ValueError(f"GustParams.surrogate must be a surrogate name (e.g. 'rectangle'), "
                             f"got {self.surrogate!r}")

    @property
    def neuron(self) -> StochasticParams:
        return StochasticParams.gust(self.tau_rfr, surrogate=self.surrogate)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GustParams":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GustParams field(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))


class GustNet(nn.Module):
    """Encoder E (N -> enc_hidden -> H, ReLU then sigmoid) and decoder G (H -> dec_hidden -> N, ReLU then
    sigmoid) with PyTorch's default Linear init; ``seed`` makes the init reproducible without touching the
    global generator."""

    def __init__(self, params: GustParams | None = None, seed: int | None = None) -> None:
        super().__init__()
        self.params = params if params is not None else GustParams()
        p = self.params
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            self.encoder = nn.Sequential(nn.Linear(p.n_pixels, p.enc_hidden), nn.ReLU(),
                                         nn.Linear(p.enc_hidden, p.hidden), nn.Sigmoid())
            self.decoder = nn.Sequential(nn.Linear(p.hidden, p.dec_hidden), nn.ReLU(),
                                         nn.Linear(p.dec_hidden, p.n_pixels), nn.Sigmoid())

    def config_kwargs(self) -> dict[str, Any]:
        return {"params": self.params.to_dict()}

    def extra_repr(self) -> str:
        return repr(self.params)


# --- random draws ----------------------------------------------------------------------------------

Draws = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
"""``draws(n) -> (threshold noise U[0,1) [B, N], keep mask {0,1} [B, N])`` for global step n."""


def counter_draws(seeds: torch.Tensor, ids: torch.Tensor, n_pixels: int, keep_p: float,
                  device: torch.device, dtype: torch.dtype = torch.float32) -> Draws:
    """Batch-invariant draws keyed by (seed, image id, step) from ``workbench.rng``."""
    seeds, ids = seeds.to(device), ids.to(device)

    def draws(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = rng.uniform(seeds, Stream.THRESHOLD, ids, n, n_pixels, device)
        keep = rng.uniform(seeds, Stream.MASK1, ids, n, n_pixels, device) < keep_p
        return noise.to(dtype), keep.to(dtype)

    return draws


def generator_draws(batch: int, n_pixels: int, keep_p: float, generator: torch.Generator,
                    device: torch.device, dtype: torch.dtype = torch.float32) -> Draws:
    """Draws from one seeded ``torch.Generator`` in step order (training: fast, batch-dependent)."""

    def draws(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand((2, batch, n_pixels), generator=generator, device=device, dtype=dtype)
        return u[0], (u[1] < keep_p).to(dtype)

    return draws


def initial_hidden(seeds: torch.Tensor, ids: torch.Tensor, params: GustParams, device: torch.device) -> torch.Tensor:
    """h ~ U[0,1) of shape [rows, T, H] from the INIT stream (step 0), keyed by (seed, image id)."""
    u = rng.uniform(seeds.to(device), Stream.INIT, ids.to(device), 0, params.slots * params.hidden, device)
    return u.reshape(-1, params.slots, params.hidden)


def corrupt(images: torch.Tensor, drop_p: float, seed: int, image_ids: torch.Tensor) -> torch.Tensor:
    """Training-time "salt and pepper" corruption (really pixel dropout, §4): keep a pixel iff U >= drop_p,
    with U from the counter-based DROPOUT stream keyed by (seed, image id), so the corrupted validation
    set is fixed for a seed and independent of the batching."""
    u = rng.uniform(seed, Stream.DROPOUT, image_ids.to(images.device), 0, images.shape[1], images.device)
    return images * (u >= drop_p).to(images.dtype)


# --- dynamics --------------------------------------------------------------------------------------


class Dynamics(NamedTuple):
    """Output of ``gust_dynamics``: spikes of every cycle (list of bool [B, T, N], if recorded), the last
    cycle's spikes [B, T, N] and predictions C [B, T, N], the hidden state h [B, T, H] (None when the last
    encoder call was skipped) and the refractory counters [B, N]. With ``trace=True`` also, per cycle,
    the predictions c_t (float32 [B, T, N]) and the refractory counters after each slot (uint8 [B, T, N])."""

    cycle_spikes: list[torch.Tensor]
    spikes: torch.Tensor
    prediction: torch.Tensor
    hidden: torch.Tensor | None
    refractory: torch.Tensor
    cycle_prediction: list[torch.Tensor] | None = None
    cycle_refractory: list[torch.Tensor] | None = None


def _mlp(module: nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is None or dtype == x.dtype and all(p.dtype == dtype for p in module.parameters()):
        return module(x)
    out = x.to(dtype)
    for layer in module:
        if isinstance(layer, nn.Linear):
            out = torch.nn.functional.linear(out, layer.weight.to(dtype), layer.bias.to(dtype))
        else:
            out = layer(out)
    return out.to(x.dtype)


class _SparseInputLinear(torch.autograd.Function):
    """``x @ weight_t + b`` for a mostly-zero ``x [R, N]`` (``weight_t [N, out]``): the forward and the
    weight gradient touch only the non-zero entries (spikes); the input gradient (BPTT through the spikes)
    stays dense."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        rows, cols = torch.nonzero(x, as_tuple=True)
        vals = x[rows, cols].unsqueeze(1)
        out = bias.expand(x.shape[0], weight_t.shape[1]).clone()
        out.index_add_(0, rows, weight_t[cols] * vals)
        ctx.save_for_backward(weight_t, rows, cols, vals)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight_t, rows, cols, vals = ctx.saved_tensors
        grad_x = grad @ weight_t.t() if ctx.needs_input_grad[0] else None
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(weight_t).index_add_(0, cols, grad[rows] * vals)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


class _SparsePlan(NamedTuple):
    """What the sparse path computes once per forward: the encoder's first weight transposed, and the
    decoder's output-layer rows/biases gathered at each image's on-pixels (``index [B, K]``, padded with
    the dummy column N, whose weights and bias are 0)."""

    enc_weight_t: torch.Tensor  # [N, enc_hidden]
    index: torch.Tensor  # [B, K]
    dec_weight: torch.Tensor  # [B, K, dec_hidden]
    dec_bias: torch.Tensor  # [B, K]
    n_pixels: int


def _sparse_plan(net: GustNet, x: torch.Tensor) -> _SparsePlan:
    on = x != 0
    B, N = x.shape
    K = max(int(on.sum(1).max()) if x.numel() else 0, 1)
    # a stable sort puts each image's on-pixels first, in index order; the rest become the dummy column N
    order = torch.sort((~on).to(torch.int8), dim=1, stable=True).indices[:, :K]
    index = torch.where(torch.gather(on, 1, order), order, torch.full_like(order, N))
    last = net.decoder[2]
    weight = torch.cat([last.weight, last.weight.new_zeros(1, last.weight.shape[1])])
    bias = torch.cat([last.bias, last.bias.new_zeros(1)])
    return _SparsePlan(net.encoder[0].weight.t().contiguous(), index, weight[index], bias[index], N)


def _encode_sparse(encoder: nn.Module, x: torch.Tensor, plan: _SparsePlan) -> torch.Tensor:
    out = _SparseInputLinear.apply(x, plan.enc_weight_t, encoder[0].bias)
    for layer in list(encoder)[1:]:
        out = layer(out)
    return out


def _decode_on_pixels(decoder: nn.Module, h: torch.Tensor, plan: _SparsePlan) -> torch.Tensor:
    """Decoder outputs ``[B, T, N]`` at the on-pixels only (0 elsewhere): where x = 0 the prediction is
    multiplied by 0 in the drive, so before the last cycle nothing else is ever read."""
    hidden = decoder[1](decoder[0](h))  # [B, T, D]
    B, T, _ = hidden.shape
    c_on = decoder[3](torch.baddbmm(plan.dec_bias.unsqueeze(1), hidden, plan.dec_weight.transpose(1, 2)))
    full = c_on.new_zeros(B, T, plan.n_pixels + 1)
    full = full.scatter(2, plan.index.unsqueeze(1).expand(B, T, -1), c_on)
    return full[:, :, :plan.n_pixels]


def _counter_dtype(tau_rfr: int) -> torch.dtype:
    """The smallest dtype holding the refractory counter (0..tau_rfr - 1): uint8 for the paper's 9."""
    return torch.uint8 if tau_rfr <= 256 else torch.int32


def gust_dynamics(net: GustNet, x: torch.Tensor, h0: torch.Tensor, cycles: int, draws: Draws, *,
                  record: bool = False, final_encode: bool = True,
                  mlp_dtype: torch.dtype | None = None, sparse: bool = False, trace: bool = False) -> Dynamics:
    """Run ``cycles`` cycles of §2.3 on inputs ``x [B, N]`` from hidden state ``h0 [B, T, H]``.

    One decoder call per cycle on ``[B*T, H]``, T neuron steps, one encoder call on ``[B*T, N]``.
    ``final_encode=False`` skips the last cycle's encoder call (its h is never read; training skips it).
    ``mlp_dtype`` runs the MLPs in another dtype (float64 rounded back: batch-invariant evaluation).
    ``sparse=True`` (training) computes the same values with less work: the encoder's first layer touches
    only the spikes, and before the last cycle the decoder's output layer runs only at the input's
    on-pixels (``x * c`` is 0 elsewhere, and so is its gradient). Only the last cycle's prediction is then
    complete (the only one returned). Requires the default MLP shapes and ``mlp_dtype=None``.
    ``trace=True`` (inspection only) also keeps every cycle's c_t and post-step refractory counters
    (``Dynamics.cycle_prediction`` / ``cycle_refractory``); it only copies values, so spikes are unchanged.
    """
    if sparse and mlp_dtype is not None:
        raise ValueError("sparse=True runs the MLPs in their own dtype; pass mlp_dtype=None")
    if sparse and trace:
        raise ValueError("trace=True needs the full prediction of every cycle, which sparse=True skips; "
                         "pass sparse=False to trace")
    p = net.params
    B, N = x.shape
    T, H = p.slots, p.hidden
    if h0.shape != (B, T, H):
        raise ValueError(f"h0 must be [B, T, H] = [{B}, {T}, {H}], got {tuple(h0.shape)}")
    neuron = p.neuron
    state = StochasticState(torch.zeros_like(x))
    h: torch.Tensor | None = h0
    last_slot = torch.zeros_like(x)  # S[:, T-1] of the previous cycle
    cycle_spikes: list[torch.Tensor] = []
    cycle_prediction: list[torch.Tensor] | None = [] if trace else None
    cycle_refractory: list[torch.Tensor] | None = [] if trace else None
    spikes = prediction = x
    plan = _sparse_plan(net, x) if sparse else None
    for k in range(cycles):
        assert h is not None
        if plan is not None and k < cycles - 1:
            prediction = _decode_on_pixels(net.decoder, h, plan)
        else:
            prediction = _mlp(net.decoder, h.reshape(B * T, H), mlp_dtype).reshape(B, T, N)
        slots, enc_in, slot_refractory = [], [], []
        for t in range(T):
            noise, keep = draws(k * T + t)
            prev = last_slot * keep
            s, state = stochastic_step(x * prediction[:, t], state, neuron, noise)
            slots.append(s)
            enc_in.append(s + prev)
            last_slot = s
            if trace:
                slot_refractory.append(state.refractory.detach().to(_counter_dtype(p.tau_rfr)))
        spikes = torch.stack(slots, 1)
        if record:
            cycle_spikes.append(spikes.detach().to(torch.bool))
        if cycle_prediction is not None and cycle_refractory is not None:
            cycle_prediction.append(prediction.detach().to(torch.float32, copy=True))
            cycle_refractory.append(torch.stack(slot_refractory, 1))
        if k < cycles - 1 or final_encode:
            enc_x = torch.stack(enc_in, 1).reshape(B * T, N)
            h = (_encode_sparse(net.encoder, enc_x, plan) if plan is not None
                 else _mlp(net.encoder, enc_x, mlp_dtype)).reshape(B, T, H)
        else:
            h = None
    return Dynamics(cycle_spikes, spikes, prediction, h, state.refractory, cycle_prediction, cycle_refractory)


def gust_reference_loop(net: GustNet, x: torch.Tensor, h0: torch.Tensor, cycles: int, draws: Draws,
                        mlp_dtype: torch.dtype | None = None) -> Dynamics:
    """The spec's loop verbatim, one step at a time (2T small MLP calls per cycle); the test oracle and
    the per-image baseline of ``bench/gust_bench.py``. Same draws give the same result as ``gust_dynamics``."""
    p = net.params
    B, N = x.shape
    T = p.slots
    h = h0.clone()
    neuron = p.neuron
    state = StochasticState(torch.zeros_like(x))
    S = torch.zeros(B, T, N, dtype=x.dtype, device=x.device)
    C = torch.zeros(B, T, N, dtype=x.dtype, device=x.device)
    cycle_spikes = []
    for k in range(cycles):
        S = S.clone()
        C = C.clone()
        h = h.clone()
        for t in range(T):
            c_t = _mlp(net.decoder, h[:, t].clone(), mlp_dtype)  # clones: later in-place writes keep autograd valid
            C[:, t] = c_t
            noise, keep = draws(k * T + t)
            prev = S[:, (t - 1) % T].clone() * keep
            s, state = stochastic_step(x * c_t, state, neuron, noise)
            S[:, t] = s
            h[:, t] = _mlp(net.encoder, s + prev, mlp_dtype)
        cycle_spikes.append(S.detach().to(torch.bool))
    return Dynamics(cycle_spikes, S, C, h, state.refractory)


# --- evaluation entry point ------------------------------------------------------------------------


@dataclass
class GustTrace:
    """What each pixel neuron saw, step by step, next to the run's SpikeRecord (``run_gust(trace=True)``).

    Attributes:
        record: the run's SpikeRecord (the same object as ``GustRun.record``: spikes, images, labels).
        c: float32 ``[steps, rows, N]``: the top-down prediction c_t = G(h[:, t]) at each step. The
            neuron's drive is ``x * c_t``, so an on-pixel with an open gate fires with probability c_t and
            an off-pixel (x = 0) never fires, whatever c_t is.
        refractory: ``[steps, rows, N]`` (uint8 for tau_rfr <= 256): the counter r *after* the step
            (§2.2: r = max(0, r - 1 + tau_rfr * s)); 0 before step 0. The gate at step n is open iff
            the counter after step n - 1 is 0; after a spike it reads tau_rfr - 1, then counts down.

    Memory: 5 bytes per (step, row, pixel), e.g. 300 steps x 784 pixels = 1.2 MB per image and seed;
    trace only the few images you inspect.
    """

    record: SpikeRecord
    c: torch.Tensor
    refractory: torch.Tensor

    def __post_init__(self) -> None:
        want = tuple(self.record.spikes.shape)
        for name in ("c", "refractory"):
            got = tuple(getattr(self, name).shape)
            if got != want:
                raise ValueError(f"GustTrace.{name} must match the record's spikes [steps, rows, N] = {list(want)}, "
                                 f"got {list(got)}")

    @property
    def gate_open(self) -> torch.Tensor:
        """bool ``[steps, rows, N]``: the refractory gate at each step (counter after the previous step is 0)."""
        before = torch.zeros_like(self.refractory)
        before[1:] = self.refractory[:-1]
        return before == 0

    @property
    def probability(self) -> torch.Tensor:
        """float32 ``[steps, rows, N]``: P(spike) at each step, ``x * c_t`` where the gate is open, else 0."""
        x = self.record.images
        if x is None:
            raise ValueError("the trace's record has no images; run run_gust with record=True")
        return (x.to(self.c.dtype).clamp(0, 1) * self.c).clamp(0, 1) * self.gate_open


@dataclass
class GustRun:
    """Result of ``run_gust``. Rows are seed-major: row ``s*B + b`` is seed ``s`` on image ``b``.

    Attributes:
        record: spikes of all cycles as a SpikeRecord ``[cycles*T, rows, N]`` with ``cycle = T`` (None if
            ``record=False``).
        prediction: the last cycle's top-down predictions C ``[rows, T, N]``.
        hidden: the final hidden state h ``[rows, T, H]``.
        spikes: the last cycle's spikes ``[rows, T, N]`` (float; carries gradients when ``grad=True``).
        refractory: the final refractory counters ``[rows, N]``.
        seeds, image_ids: the key of each row.
        trace: per-step c_t and refractory counters of every row (``trace=True``), else None.
    """

    record: SpikeRecord | None
    prediction: torch.Tensor
    hidden: torch.Tensor
    spikes: torch.Tensor
    refractory: torch.Tensor
    seeds: torch.Tensor
    image_ids: torch.Tensor
    trace: GustTrace | None = None


def run_gust(net: GustNet, images: Any, *, cycles: int = 30, seed: int | Sequence[int] = 0, image_ids: Any = None,
             image_shape: tuple[int, int] | None = None, labels: Any = None, record: bool = True,
             device: str | torch.device = "cpu", grad: bool = False,
             mlp_dtype: torch.dtype | None = torch.float64, trace: bool = False) -> GustRun:
    """Run GUST on ``images`` ([B, N] or [B, H, W], values in [0, 1]) for ``cycles`` cycles (§2.3).

    Every random draw comes from the counter-based streams keyed by (seed, image id, step), so an image's
    record is the same in any batch; ``image_ids`` (default 0..B-1) name the images (use dataset indices).
    A list of seeds runs every image under every seed (seed-major rows). ``grad=False`` runs under
    ``torch.inference_mode()``; ``grad=True`` keeps the graph (surrogate gradients through all steps).
    ``mlp_dtype`` (float64 by default) runs the MLPs in double precision rounded back to float32, so float32
    kernels that differ in the last bit between batch sizes cannot flip a spike; None keeps the net's dtype.
    ``trace=True`` also returns ``GustRun.trace`` (c_t and refractory counter of every pixel at every step,
    5 bytes each, on the CPU) for the neuron inspector; it needs ``record=True`` and changes no spike.
    """
    from workbench.binding.dasbe import _flat_images, _flat_labels, seed_major_rows

    p = net.params
    x, shape = _flat_images(images, image_shape)
    B, N = x.shape
    if N != p.n_pixels:
        raise ValueError(f"images have {N} pixels but the network has n_pixels={p.n_pixels}; "
                         f"resize the images or build GustNet(GustParams(n_pixels={N}))")
    cycles = require_positive_int("cycles", cycles)
    require_finite_weights(net.named_parameters(), "the GUST network")
    if trace and not record:
        raise ValueError("trace=True shares the run's SpikeRecord; pass record=True (the default)")
    device = torch.device(device)
    net_device = next(net.parameters()).device
    if net_device.type != device.type:
        raise ValueError(f"the network is on {net_device} but device={str(device)!r}; move it first "
                         f"(net.to({str(device)!r})) or pass device={str(net_device)!r}")
    rows, seeds, ids = seed_major_rows(x, seed, image_ids)
    repeats = len(rows) // max(B, 1)
    lab = _flat_labels(labels, B, N, repeats, torch.device("cpu"))
    rows = rows.to(device)
    ctx = torch.enable_grad() if grad else torch.inference_mode()
    with ctx:
        h0 = initial_hidden(seeds, ids, p, device)
        draws = counter_draws(seeds, ids, N, p.keep_p, device)
        dyn = gust_dynamics(net, rows, h0, cycles, draws, record=record, mlp_dtype=mlp_dtype, trace=trace)
    rec = None
    if record:
        spikes = torch.stack(dyn.cycle_spikes, 0)  # [cycles, rows, T, N]
        spikes = spikes.permute(0, 2, 1, 3).reshape(cycles * p.slots, len(rows), N).cpu()
        rec = SpikeRecord(spikes, image_shape=shape, cycle=p.slots, labels=lab, images=rows.detach().cpu(),
                          meta={"model": "gust", "params": p.to_dict(), "cycles": cycles,
                                "seeds": seeds.tolist(), "image_ids": ids.tolist()})
    tr = None
    if trace:
        assert rec is not None and dyn.cycle_prediction is not None and dyn.cycle_refractory is not None

        def time_first(per_cycle: list[torch.Tensor]) -> torch.Tensor:  # cycles x [rows, T, N] -> [steps, rows, N]
            return torch.stack(per_cycle, 0).permute(0, 2, 1, 3).reshape(cycles * p.slots, len(rows), N).cpu()

        tr = GustTrace(rec, time_first(dyn.cycle_prediction), time_first(dyn.cycle_refractory))
    assert dyn.hidden is not None
    return GustRun(rec, dyn.prediction, dyn.hidden, dyn.spikes, dyn.refractory, seeds, ids, tr)


# --- objective (§2.5) ------------------------------------------------------------------------------


def gust_loss_per_image(prediction: torch.Tensor, clean: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Receptive-field loss of each image ``[B]``: squared distance between the normalised clean image
    and the normalised time-averaged prediction of the last cycle (``prediction [B, T, N]``)."""
    if prediction.dim() != 3 or clean.dim() != 2 or prediction.shape[0] != clean.shape[0] \
            or prediction.shape[2] != clean.shape[1]:
        raise ValueError(f"prediction must be [B, T, N] and clean [B, N]; got {tuple(prediction.shape)} "
                         f"and {tuple(clean.shape)}")
    r = prediction.mean(1)
    r_hat = r / (r.sum(1, keepdim=True) + eps)
    clean = clean.to(r.dtype)
    x_hat = clean / (clean.sum(1, keepdim=True) + eps)
    return ((x_hat - r_hat) ** 2).sum(1)


def gust_loss(prediction: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The receptive-field sum (§2.5), summed over the batch (the reference's reduction)."""
    return gust_loss_per_image(prediction, clean).sum()


# --- checkpoints -----------------------------------------------------------------------------------


def gust_config(net: GustNet, **more: Any) -> dict[str, Any]:
    """The checkpoint config ``load_gust`` reads."""
    return {"model": MODEL_NAME, "params": net.params.to_dict(), **more}


def gust_checkpoint(path: str | os.PathLike):
    """The ``Checkpoint`` of a GUST net (a ``.pt`` file, or a run folder: its ``best.pt``); other models are
    refused with a clear error."""
    from workbench.checkpoints import CheckpointError, load_checkpoint

    path = Path(path)
    ckpt = load_checkpoint(path / "best.pt" if path.is_dir() else path)
    if ckpt.config.get("model") != MODEL_NAME or "params" not in ckpt.config:
        raise CheckpointError(f"{ckpt.path} holds a {ckpt.config.get('model')!r} model, not a GUST network "
                              f"(config model {MODEL_NAME!r}); train one with `hnnwb gust train`")
    return ckpt


def load_gust(path: str | os.PathLike, device: str | torch.device = "cpu") -> GustNet:
    """Load a GustNet from one of our checkpoints (a ``.pt`` file, or a run folder: its ``best.pt``)."""
    return gust_from_checkpoint(gust_checkpoint(path), device)


def gust_from_checkpoint(ckpt, device: str | torch.device = "cpu") -> GustNet:
    """The GustNet of a loaded ``gust_checkpoint`` (float16-packed weights come back as float32), in eval mode."""
    from workbench.checkpoints import CheckpointError

    path = ckpt.path
    net = GustNet(GustParams.from_dict(ckpt.config["params"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}  # packed files
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored GustParams: {exc}") from None
    return net.to(device).eval()


PACK_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def pack_gust(source: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "float16") -> Path:
    """A compact, weights-only copy of a GUST checkpoint for shipping: ``out_dir/best.pt`` with the weights
    stored as ``dtype`` (float16 halves the 4.9 MB file; ``load_gust`` reads them back as float32) and the
    run's ``history.json`` beside it when the source has one. Returns the new ``best.pt``.

    The rounding changes the weights by at most 2^-11 relative (float16), so a packed net is a slightly
    different net: evaluate the packed file itself for the numbers you report with it.
    """
    from workbench.checkpoints import CheckpointError, save_checkpoint
    from workbench.fileio import atomic_path

    if dtype not in PACK_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(PACK_DTYPES)}")
    ckpt = gust_checkpoint(source)
    ckpt_path = ckpt.path
    half = {k: v.to(PACK_DTYPES[dtype]) if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}
    if not all(torch.isfinite(v).all() for v in half.values() if v.is_floating_point()):
        raise CheckpointError(f"{ckpt_path}: weights overflow {dtype}; pack with dtype='float32' or 'bfloat16'")
    out_dir = Path(out_dir)
    extra = {**ckpt.extra, "stored_dtype": dtype, "packed_from": str(ckpt_path)}
    best = save_checkpoint(out_dir / "best.pt", half, ckpt.config, extra=extra)
    history = ckpt_path.parent / "history.json"
    if history.exists() and history.resolve() != (out_dir / "history.json").resolve():
        with atomic_path(out_dir / "history.json") as tmp:
            tmp.write_text(compact_history(history.read_text()))
    return best


def compact_history(text: str, digits: int = 6) -> str:
    """A run's ``history.json`` for shipping: one line, the per-iteration training loss rounded to ``digits``
    significant digits (a long run logs ~10^5 of them; indented at full precision that is ~27 bytes each). The
    loss is a noisy one-batch estimate, so six digits change nothing a curve can show. Everything else is kept
    exactly."""
    history = json.loads(text)
    if isinstance(history.get("train_loss"), list):
        history["train_loss"] = [float(f"{v:.{digits}g}") if isinstance(v, float) else v
                                 for v in history["train_loss"]]
    return json.dumps(history, separators=(",", ":")) + "\n"


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


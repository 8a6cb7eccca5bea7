"""SNN-IIR speed: one training step of our layers vs snnTorch, Norse and an authors'-style per-step loop.

    python bench/iir_bench.py                              # both cases, CPU, 1 thread
    python bench/iir_bench.py --case mlp1 --repeats 9 --out bench_iir.json
    python bench/iir_bench.py --case layer --neurons 4096 --T 500 --batch 16 --device cuda

Cases (spec §7, §9.4):

* ``mlp1``: 784-500-500-10 at T = 25, batch 64: forward, cross-entropy on output spike counts, backward
  and an Adam step.
* ``layer``: one Linear + IIR layer at the Open Neuromorphic benchmark shape (batch 16, T = 500, N -> N
  neurons; published with 16k neurons; default here 1024 on CPU, since 4096 is 16x the matmul work),
  forward + backward of the summed spikes.

Constructions, built with the same sizes, T, batch, loss and optimiser:

* ``ours``: ``IIRDense`` (impulse-response convolution for the filter, one GEMM for the Linear, the one-pass
  autograd Function for the neuron's reset recursion);
* ``ours_loop``: the same layers with ``impl="loop"`` (per-step recursion, plain autograd);
* ``authors``: the authors' structure: for each time step, for each layer, filter step -> Linear on that
  step -> neuron step (spec §5 defect 7);
* ``snntorch``: Linear + ``snn.Synaptic(alpha=ds, beta=dm, threshold=1, reset_mechanism="subtract")`` called
  step by step (its documented usage);
* ``norse``: Linear over the sequence, then ``norse.torch.LIF`` with tau_syn_inv = 1 - ds, tau_mem_inv = 1 - dm,
  v_th = 1, dt = 1 (hard reset).

Runs are interleaved (round-robin), with ``--warmup`` (3) untimed rounds and the median of ``--repeats``
(>= 7) timed rounds per construction, all in this process with the same thread count. Missing optional
libraries are reported as absent. The ratio is ours / other: <= 1.05 counts as "no slower".
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from workbench.models.snn_layers import IIRDense
from workbench.neurons.iir import DualExpIIRParams, IIRNeuronParams, dual_exp_iir_step, iir_neuron_step
from workbench.runtime import configure_threads

DM, DS = math.exp(-1 / 4), math.exp(-1 / 1)


class OursStack(nn.Module):
    def __init__(self, sizes, impl="auto"):
        super().__init__()
        self.layers = nn.ModuleList(IIRDense(a, b, impl=impl) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class AuthorsStack(nn.Module):
    """Per time step, per layer: dual-exp IIR step -> Linear -> neuron step (autograd through everything)."""

    def __init__(self, sizes):
        super().__init__()
        p = DualExpIIRParams(4, 1)
        self.coeffs = nn.ParameterList()
        for n in sizes[:-1]:
            for c in p.coefficients(n):
                self.coeffs.append(nn.Parameter(c))
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.neuron = IIRNeuronParams()

    def forward(self, x):
        n_layers = len(self.linears)
        filt, neur = [None] * n_layers, [None] * n_layers
        out = []
        for t in range(x.shape[0]):
            h = x[t]
            for i, lin in enumerate(self.linears):
                coeffs = tuple(self.coeffs[3 * i + k] for k in range(3))
                psi, filt[i] = _iir(h, filt[i], coeffs)
                h, neur[i] = iir_neuron_step(lin(psi), neur[i], self.neuron)
            out.append(h)
        return torch.stack(out)


def _iir(x, state, coeffs):
    from workbench.neurons.iir import IIRCoefficients

    return dual_exp_iir_step(x, state, IIRCoefficients(*coeffs))


class SnnTorchStack(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        import snntorch as snn

        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.cells = nn.ModuleList(snn.Synaptic(alpha=DS, beta=DM, threshold=1.0, reset_mechanism="subtract")
                                   for _ in self.linears)

    def forward(self, x):
        states = [(None, None)] * len(self.linears)
        out = []
        for t in range(x.shape[0]):
            h = x[t]
            for i, (lin, cell) in enumerate(zip(self.linears, self.cells)):
                cur = lin(h)
                syn, mem = states[i]
                if syn is None:
                    syn, mem = torch.zeros_like(cur), torch.zeros_like(cur)
                h, syn, mem = cell(cur, syn, mem)
                states[i] = (syn, mem)
            out.append(h)
        return torch.stack(out)


class NorseStack(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        from norse.torch import LIF, LIFParameters

        p = LIFParameters(tau_syn_inv=torch.tensor(1 - DS), tau_mem_inv=torch.tensor(1 - DM),
                          v_th=torch.tensor(1.0), v_reset=torch.tensor(0.0))
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.cells = nn.ModuleList(LIF(p, dt=1.0) for _ in self.linears)

    def forward(self, x):
        for lin, cell in zip(self.linears, self.cells):
            x, _ = cell(lin(x))
        return x


BUILDERS: dict[str, Callable] = {
    "ours": lambda s: OursStack(s),
    "ours_loop": lambda s: OursStack(s, impl="loop"),
    "authors": AuthorsStack,
    "snntorch": SnnTorchStack,
    "norse": NorseStack,
}


def _make_step(name, sizes, T, batch, mode, device, seed=0):
    torch.manual_seed(seed)
    model = BUILDERS[name](sizes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4) if mode == "train" else None
    g = torch.Generator().manual_seed(seed)
    if mode == "train":
        x = torch.rand(batch, sizes[0], generator=g).to(device).unsqueeze(0).expand(T, batch, sizes[0])
    else:
        x = (torch.rand(T, batch, sizes[0], generator=g) < 0.2).float().to(device)
    labels = torch.randint(0, sizes[-1], (batch,), generator=g).to(device)

    def step():
        out = model(x)
        loss = F.cross_entropy(out.sum(0), labels) if mode == "train" else out.sum()
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        else:
            model.zero_grad(set_to_none=True)
        loss.backward()
        if opt is not None:
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def run_case(case, names, *, T, batch, neurons, warmup, repeats, device):
    sizes = (784, 500, 500, 10) if case == "mlp1" else (neurons, neurons)
    mode = "train" if case == "mlp1" else "layer"
    steps, absent = {}, {}
    for name in names:
        try:
            steps[name] = _make_step(name, sizes, T, batch, mode, device)
        except ImportError as exc:
            absent[name] = str(exc)
    times = {name: [] for name in steps}
    for round_ in range(warmup + repeats):
        for name, step in steps.items():
            clock = time.perf_counter()
            step()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - clock)
    medians = {name: statistics.median(v) for name, v in times.items()}
    ratios = {f"ours/{name}": medians["ours"] / m for name, m in medians.items() if name != "ours"} if "ours" in medians else {}
    fastest_other = min((m for n, m in medians.items() if n not in ("ours", "ours_loop")), default=None)
    return {"case": case, "sizes": list(sizes), "T": T, "batch": batch, "median_s": medians,
            "all_s": {n: [round(t, 5) for t in v] for n, v in times.items()}, "ratios": ratios,
            "ours_vs_fastest_other": None if fastest_other is None else medians["ours"] / fastest_other,
            "absent": absent}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=["mlp1", "layer", "both"], default="both")
    ap.add_argument("--impls", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    ap.add_argument("--T", type=int, default=None, help="time steps (default 25 for mlp1, 500 for layer)")
    ap.add_argument("--batch", type=int, default=None, help="batch (default 64 for mlp1, 16 for layer)")
    ap.add_argument("--neurons", type=int, default=1024, help="layer case: N -> N neurons (published: 16k)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    threads = configure_threads(args.threads)
    device = torch.device(args.device)
    cases = ["mlp1", "layer"] if args.case == "both" else [args.case]
    results = []
    for case in cases:
        T = args.T or (25 if case == "mlp1" else 500)
        batch = args.batch or (64 if case == "mlp1" else 16)
        res = run_case(case, args.impls, T=T, batch=batch, neurons=args.neurons, warmup=args.warmup,
                       repeats=args.repeats, device=device)
        results.append(res)
        print(f"[{case}] sizes {res['sizes']} T {T} batch {batch}: " +
              ", ".join(f"{n} {1000 * m:.1f} ms" for n, m in res["median_s"].items()) +
              f" | ratios {', '.join(f'{k} {v:.2f}' for k, v in res['ratios'].items())}" +
              (f" | absent {list(res['absent'])}" if res["absent"] else ""), flush=True)
    meta = {"threads": threads, "device": str(device), "torch": torch.__version__, "cpu": platform.processor(),
            "loadavg_end": os.getloadavg(), "warmup": args.warmup, "repeats": args.repeats}
    if args.out:
        from workbench.fileio import write_json

        write_json(args.out, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

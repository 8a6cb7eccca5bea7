"""SNN-IIR spatio-temporal associative memory (specs/snn_iir.md §4.2, §4.4).

300 → 500 → 200 → 500 → 300: every stage is ``IIRDense`` (input-side ``DualExpIIR(8, 2)``, trainable and
unnormalised → Linear with bias → IIR neuron τm = 8, membrane filter off), then the fixed normalised
two-state read-out filter τ 8/2. Output neuron i reproduces input neuron i, 4 steps later.

Loss = MSE between the filtered output spikes and the identically filtered, delayed target, averaged
over steps, batch and neurons (a van-Rossum-style distance). 506,000 trainable parameters.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from workbench.checks import check_sequence, require_choice
from workbench.models.snn_layers import IIRDense, ReadoutFilter, max_pole_modulus
from workbench.neurons.iir import PARAMETRISATIONS

__all__ = ["AssocSNN", "assoc_loss"]

SIZES = (300, 500, 200, 500, 300)


class AssocSNN(nn.Module):
    """Feed-forward IIR-SNN autoencoder over spike rasters ``[T, B, sizes[0]]``.

    ``forward(x)`` returns output spikes ``[T, B, sizes[-1]]``; ``record=True`` also returns the list of
    every layer's spikes (input excluded). ``readout(spikes)`` applies the fixed read-out filter.
    """

    def __init__(self, sizes: Sequence[int] = SIZES, *, tau_m: float = 8.0, tau_s: float = 2.0,
                 parametrisation: str = "free", readout_tau_m: float = 8.0, readout_tau_s: float = 2.0,
                 impl: str = "auto") -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list >= 2 positive layer widths, got {sizes}")
        if sizes[0] != sizes[-1]:
            raise ValueError(f"an associative memory maps a pattern to itself: sizes[0] ({sizes[0]}) must equal "
                             f"sizes[-1] ({sizes[-1]})")
        require_choice("parametrisation", parametrisation, PARAMETRISATIONS)
        self._config = dict(sizes=list(sizes), tau_m=float(tau_m), tau_s=float(tau_s), parametrisation=parametrisation,
                            readout_tau_m=float(readout_tau_m), readout_tau_s=float(readout_tau_s), impl=impl)
        self.sizes = sizes
        self.layers = nn.ModuleList(
            IIRDense(a, b, psp="dual_exp", tau_m=tau_m, tau_s=tau_s, psp_trainable=True,
                     parametrisation=parametrisation, normalised=False, membrane_filter=False, impl=impl)
            for a, b in zip(sizes[:-1], sizes[1:]))
        self.output_filter = ReadoutFilter(sizes[-1], readout_tau_m, readout_tau_s)

    def config_kwargs(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready) to rebuild this model from a checkpoint."""
        return dict(self._config)

    def forward(self, x: torch.Tensor, record: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        check_sequence(x, "x", f"[T, B, {self.sizes[0]}]")
        if x.dim() != 3 or x.shape[2] != self.sizes[0]:
            raise ValueError(f"AssocSNN expects spikes [T, B, {self.sizes[0]}], got shape {tuple(x.shape)}")
        h = x.to(torch.float32)
        spikes = []
        for layer in self.layers:
            h = layer(h)
            spikes.append(h)
        return (h, spikes) if record else h

    def readout(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.output_filter(spikes.to(torch.float32))

    def loss(self, cues: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(filtered MSE, output spikes) for cues and targets ``[T, B, N]``."""
        out = self(cues)
        return assoc_loss(self.readout(out), self.readout(targets)), out

    def max_pole_modulus(self) -> float:
        return max_pole_modulus(self)


def assoc_loss(filtered_out: torch.Tensor, filtered_target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the filtered output and the filtered target (over T, B and N)."""
    if filtered_out.shape != filtered_target.shape:
        raise ValueError(f"output {tuple(filtered_out.shape)} and target {tuple(filtered_target.shape)} "
                         "differ in shape")
    return (filtered_out - filtered_target).pow(2).mean()

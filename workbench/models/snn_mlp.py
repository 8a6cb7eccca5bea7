"""SNN-IIR MNIST classifiers 784-500-500-10 (specs/snn_iir.md §3.1-§3.3).

Each stage is input filter → Linear → IIR neuron (τm = 4, membrane filter off). ``mlp1`` filters with a
trainable unnormalised ``DualExpIIR(4, 1)``; ``mlp2`` with a trainable ``LowPass(τ = 4)``. Dropout
p = 0.3 acts on the *spike* tensors after layers 1 and 2 (inverted: kept spikes become 1/0.7 in
training). Logits are the output spike counts over T; prediction = argmax with ties to the lowest index.
The ``*_poisson`` models take Bernoulli-rate input spikes instead of the repeated analog image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from workbench.checks import require_choice
from workbench.models.snn_layers import IIRDense, LayerRecord, max_pole_modulus
from workbench.neurons.encoders import bernoulli_encode, direct_encode

INPUTS = ("analog", "bernoulli")


@dataclass(frozen=True)
class MLPSpec:
    psp: str
    input: str


MODELS: dict[str, MLPSpec] = {
    "mlp1": MLPSpec("dual_exp", "analog"),
    "mlp2": MLPSpec("low_pass", "analog"),
    "mlp1_poisson": MLPSpec("dual_exp", "bernoulli"),
    "mlp2_poisson": MLPSpec("low_pass", "bernoulli"),
}


class SNNMLP(nn.Module):
    """Spiking MLP over ``x [T, B, 784]`` → output spikes ``[T, B, 10]``.

    ``variant``: "mlp1" (dual-exponential IIR PSP) or "mlp2" (first-order low-pass); ``input``:
    "analog" or "bernoulli" (used by ``encode``). Extra layer options (``parametrisation``, ``normalised``,
    ``membrane_filter``, ``impl``) go to every ``IIRDense``.
    """

    def __init__(self, variant: str = "mlp1", input: str = "analog", *, sizes: Sequence[int] = (784, 500, 500, 10),
                 T: int = 25, dropout: float = 0.3, tau_m: float = 4.0, tau_s: float = 1.0,
                 parametrisation: str = "free", normalised: bool = False, membrane_filter: bool = False,
                 impl: str = "auto") -> None:
        super().__init__()
        variant = variant.replace("_", "")
        require_choice("variant", variant, ("mlp1", "mlp2"))
        require_choice("input", input, INPUTS)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.variant, self.input, self.T, self.dropout = variant, input, int(T), float(dropout)
        self.sizes = tuple(int(s) for s in sizes)
        psp = MODELS[variant].psp
        self._kwargs = dict(variant=variant, input=input, sizes=list(self.sizes), T=self.T, dropout=self.dropout,
                            tau_m=tau_m, tau_s=tau_s, parametrisation=parametrisation, normalised=normalised,
                            membrane_filter=membrane_filter, impl=impl)
        self.layers = nn.ModuleList(
            IIRDense(a, b, psp=psp, tau_m=tau_m, tau_s=tau_s, parametrisation=parametrisation,
                     normalised=normalised, membrane_filter=membrane_filter, impl=impl)
            for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def config_kwargs(self) -> dict[str, Any]:
        return dict(self._kwargs)

    def encode(self, images: torch.Tensor, *, seed: int = 0, image_ids: torch.Tensor | None = None,
               step_offset: int = 0) -> torch.Tensor:
        """``images [B, 784]`` in [0, 1] → input sequence ``[T, B, 784]`` for this model's input kind."""
        if self.input == "analog":
            return direct_encode(images, self.T)
        return bernoulli_encode(images, self.T, seed=seed, image_ids=image_ids, step_offset=step_offset)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None,
                record: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor], list[LayerRecord]]:
        """Output spikes ``[T, B, 10]``; with ``record`` also every layer's spikes and ``LayerRecord``.

        In training mode, dropout masks come from ``generator`` (global RNG when None)."""
        spikes, records = [], []
        h = x
        for i, layer in enumerate(self.layers):
            out = layer(h, record=record)
            if record:
                out, rec = out
                records.append(rec)
            spikes.append(out)
            h = out
            if i < len(self.layers) - 1 and self.training and self.dropout > 0:
                keep = torch.rand(h.shape, generator=generator, device=h.device) >= self.dropout
                h = h * keep / (1.0 - self.dropout)
        return (h, spikes, records) if record else h

    def max_pole_modulus(self) -> float:
        return max_pole_modulus(self)


def spike_counts(output_spikes: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, classes]``: output spike counts over T."""
    return output_spikes.sum(0)


def predict(counts: torch.Tensor) -> torch.Tensor:
    """argmax with ties to the lowest index (torch.argmax's documented first-maximum rule)."""
    return torch.argmax(counts, dim=1)


def tie_mask(counts: torch.Tensor) -> torch.Tensor:
    """True where the maximum count is shared by more than one class."""
    return (counts == counts.max(dim=1, keepdim=True).values).sum(1) > 1


def build_model(name: str, **overrides: Any) -> SNNMLP:
    """``SNNMLP`` for a CLI model name in ``MODELS`` (mlp1, mlp2, mlp1_poisson, mlp2_poisson)."""
    require_choice("model", name, tuple(MODELS))
    spec = MODELS[name]
    return SNNMLP(name.split("_")[0], spec.input, **overrides)

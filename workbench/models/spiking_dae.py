"""Spiking-hidden DAEs: bcdae (Multi-MNIST) and CLRNET (Fig 4), spec §2.5 and §5.

Both are an ``MLPDAE`` whose code layer spikes, and whose decoder runs on the spikes:

* the encoder gives a "membrane" ``u`` (bcdae: ReLU code, 2304 -> 1000 -> 500; CLRNET: sigmoid code,
  784 -> 600 -> 400 -> 350 -> 1600, so ``u`` is a firing probability);
* a hidden unit spikes when ``u + U > 1`` with ``U ~ U(0, 1)`` (for CLRNET that is Bernoulli(u)); the
  backward pass uses the rectangle surrogate ``1[|u + U - 1| < 0.5]``;
* in the binding loop, a hidden refractory counter gates the spikes exactly like the pixel neuron's
  (decrement on every call, set to ``r_a`` after a spike, a unit may fire only while the counter is < 0).

The counter is explicit state: ``forward(a, state, noise) -> (recon, spikes, new_state)`` is a pure step,
so the caller keeps one state per image and resets it per image (the reference kept it in the module and
never reset it; spec §8). ``train_forward(a, noise)`` is the training pass: every sample is independent,
so it has no refractoriness (a counter carried from one random batch to the next would mean nothing).
Noise is always passed in, so a caller can use the batch-invariant counter RNG (spec §2.6).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch.nn import functional as F

from workbench.checks import check_noise
from workbench.models.dae import MLPDAE
from workbench.neurons.surrogate import surrogate

BCDAE_SIZES = (2304, 1000, 500, 1000, 2304)
CLRNET_SIZES = (784, 600, 400, 350, 1600, 350, 400, 600, 784)
SPIKE = surrogate("rectangle")  # forward 1[x > 0], backward 1[|x| < 0.5] (spec §2.5)


class HiddenState(NamedTuple):
    """Hidden refractory counter ``[B, H]`` (int32): a unit may fire when ``counter - 1 < 0``."""

    refractory: torch.Tensor


def hidden_spikes(u: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``1[u + U > 1]`` as floats, with the rectangle surrogate gradient."""
    return SPIKE(u + noise - 1.0)


def refractory_gate(raw: torch.Tensor, state: HiddenState, refractory: int) -> tuple[torch.Tensor, HiddenState]:
    """Apply the hidden refractory counter to candidate spikes ``raw``: decrement, block while >= 0, reset.

    After a spike a unit stays silent for ``refractory`` calls (minimum interval ``refractory + 1``).
    The counter is clamped at -1, which changes nothing but keeps it from drifting.
    """
    counter = (state.refractory - 1).clamp_min(-1)
    spikes = raw * (counter < 0).to(raw.dtype)
    counter = torch.where(spikes.detach() > 0, torch.full_like(counter, refractory), counter)
    return spikes, HiddenState(counter)


class SpikingDAE(MLPDAE):
    """DAE with a spiking code layer (bcdae and CLRNET; use ``bcdae()`` / ``clrnet()`` for the presets).

    ``sizes`` and ``hidden_act`` are as for ``MLPDAE`` (``hidden_act`` gives the membrane ``u``);
    ``refractory`` is r_a, the hidden refractory period used by ``forward``.
    """

    def __init__(self, sizes: Sequence[int] = BCDAE_SIZES, hidden_act: str = "relu", refractory: int = 12,
                 seed: int | None = None) -> None:
        super().__init__(sizes, hidden_act=hidden_act, seed=seed)
        if int(refractory) < 0:
            raise ValueError(f"refractory must be >= 0, got {refractory}")
        self.refractory = int(refractory)

    @property
    def n_hidden(self) -> int:
        return self.sizes[len(self.sizes) // 2]

    def config_kwargs(self) -> dict:
        return {**super().config_kwargs(), "refractory": self.refractory}

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> HiddenState:
        """All units free to fire (counter 0, as the spec's state init)."""
        device = device if device is not None else self.encoder[0].weight.device
        return HiddenState(torch.zeros(batch, self.n_hidden, dtype=torch.int32, device=device))

    def membrane(self, a: torch.Tensor) -> torch.Tensor:
        return self.encode(a)

    def forward(self, a: torch.Tensor, state: HiddenState | None = None,
                noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, HiddenState]:
        """One binding-loop step: ``(reconstruction, hidden spikes, new state)``.

        ``noise`` is ``U(0, 1)`` of shape ``[B, n_hidden]``; ``state=None`` starts from ``initial_state``.
        """
        if noise is None:
            raise ValueError(f"{type(self).__name__} spikes stochastically: pass noise=U(0,1) of shape "
                             f"[B, {self.n_hidden}] (and the HiddenState returned by the previous call)")
        u = self.membrane(a)
        check_noise(noise, u.shape)
        state = state if state is not None else self.initial_state(u.shape[0], u.device)
        if tuple(state.refractory.shape) != tuple(u.shape):
            raise ValueError(f"state.refractory must be {tuple(u.shape)}, got {tuple(state.refractory.shape)}; "
                             "use initial_state(batch)")
        spikes, state = refractory_gate(hidden_spikes(u, noise), state, self.refractory)
        return self.decode(spikes), spikes, state

    def train_forward(self, a: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass without refractoriness: ``(reconstruction, spikes, membrane u)``."""
        u = self.membrane(a)
        check_noise(noise, u.shape)
        spikes = hidden_spikes(u, noise)
        return self.decode(spikes), spikes, u


def bcdae(refractory: int = 12, seed: int | None = None) -> SpikingDAE:
    """Multi-MNIST bcdae: 2304 -> 1000 ReLU -> 500 ReLU (membrane) -> spikes -> 1000 ReLU -> 2304 sigmoid."""
    return SpikingDAE(BCDAE_SIZES, hidden_act="relu", refractory=refractory, seed=seed)


def clrnet(refractory: int = 9, seed: int | None = None) -> SpikingDAE:
    """CLRNET: 784 -> 600 -> 400 -> 350 -> 1600 sigmoid, Bernoulli spikes, symmetric decoder on the spikes."""
    return SpikingDAE(CLRNET_SIZES, hidden_act="sigmoid", refractory=refractory, seed=seed)


# --- losses (spec §5) ----------------------------------------------------------------------------


def contractive_penalty(model: MLPDAE, a: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norm of the last encoder layer's Jacobian, summed over the batch.

    For ``u = act(W z + b)``: ``sum_j act'(W z + b)_j^2 * sum_i W_ji^2``, with the activation's true
    derivative (ReLU: the step ``1[pre > 0]``; sigmoid: ``s (1 - s)``).
    """
    z = a
    for layer in model.encoder[:-1]:
        z = torch.relu(layer(z))
    last = model.encoder[-1]
    pre = last(z)
    if model.hidden_act == "relu":
        slope = (pre > 0).to(pre.dtype)
    else:
        s = torch.sigmoid(pre)
        slope = s * (1 - s)
    return (slope.pow(2) * last.weight.pow(2).sum(dim=1)).sum()


def bcdae_loss(model: SpikingDAE, noisy: torch.Tensor, clean: torch.Tensor, noise: torch.Tensor,
               contractive: float = 1e-4) -> torch.Tensor:
    """bcdae training loss: BCE (summed over batch and pixels) + ``contractive`` * Jacobian penalty."""
    recon, _, _ = model.train_forward(noisy, noise)
    bce = F.binary_cross_entropy(recon, clean, reduction="sum")
    return bce + contractive * contractive_penalty(model, noisy)


def bcdae_val_loss(model: SpikingDAE, clean: torch.Tensor, noise: torch.Tensor, activity: float = 1e-3) -> torch.Tensor:
    """bcdae validation loss on clean input: BCE (mean) + ``activity`` * mean |u|."""
    recon, _, u = model.train_forward(clean, noise)
    return F.binary_cross_entropy(recon, clean) + activity * u.abs().mean()


def clr_loss(model: SpikingDAE, noisy: Sequence[torch.Tensor], clean: Sequence[torch.Tensor], noise: torch.Tensor,
             tau: float = 0.5) -> torch.Tensor:
    """CLRNET loss over one batch per class: sum over classes of BCE (mean) + the "batch NT-Xent" term.

    The contrastive term is, as in the reference, an MSE (summed) between ``cos(s_i, s_j) / tau`` of the
    hidden spike vectors and a target of 1 for same-class pairs (diagonal included) and 0 otherwise.
    ``noise`` is ``U(0, 1)`` for the concatenated batch ``[sum of class batch sizes, n_hidden]``.
    """
    if len(noisy) != len(clean) or not noisy:
        raise ValueError(f"need one noisy and one clean batch per class, got {len(noisy)} and {len(clean)}")
    x = torch.cat(list(noisy))
    recon, spikes, _ = model.train_forward(x, noise)
    sizes = [len(c) for c in clean]
    bce = sum(F.binary_cross_entropy(r, c) for r, c in zip(torch.split(recon, sizes), clean))
    unit = F.normalize(spikes, dim=1, eps=1e-8)
    similarity = unit @ unit.T / tau
    classes = torch.repeat_interleave(torch.arange(len(sizes), device=x.device), torch.tensor(sizes, device=x.device))
    target = (classes[:, None] == classes[None, :]).to(similarity.dtype)
    return bce + F.mse_loss(similarity, target, reduction="sum")

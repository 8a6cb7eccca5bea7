"""The data behind notebook 01 (neuron dynamics): response curves and statistics of each neuron model.

Every function runs the real library models and returns plain numpy data; views are drawn elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from workbench.neurons.explore import simulate_neuron
from workbench.neurons.iir import DualExpIIR, DualExpIIRParams, DualExpTwoState, LowPass, LowPassParams, TwoStateParams
from workbench.neurons.stochastic import StochasticNeuron, StochasticParams, spike_probability


def rate_curve(
    model: str,
    amplitudes: Sequence[float],
    params: Mapping[str, float] | None = None,
    *,
    T: int = 200,
    seed: int = 0,
    input_kind: str = "constant",
) -> np.ndarray:
    """Mean spikes per step of one neuron for each input amplitude (an f-I curve)."""
    return np.array([
        simulate_neuron(model, params, input_kind=input_kind, T=T, seed=seed, amplitude=float(a)).spikes.mean()
        for a in amplitudes
    ])


@dataclass
class FiringProbability:
    drive: np.ndarray  # drives tested
    empirical: np.ndarray  # fraction of (neuron, step) samples that fired
    theory: np.ndarray  # spike_probability(drive)
    stderr: np.ndarray  # binomial standard error of ``empirical``
    samples: int


def stochastic_firing_probability(
    drives: Sequence[float], params: StochasticParams, *, samples: int = 20000, seed: int = 0
) -> FiringProbability:
    """Empirical P(spike) of fresh (non-refractory) stochastic neurons against the closed form.

    Each sample is one step of an independent neuron started from a zero refractory counter, so the
    measured rate is the threshold's probability alone, not diluted by refractoriness.
    """
    drive = torch.tensor(drives, dtype=torch.float64)
    batch = drive[None, None, :].expand(1, samples, len(drives))
    generator = torch.Generator().manual_seed(seed)
    spikes = StochasticNeuron(params)(batch, generator=generator)
    empirical = spikes[0].double().mean(dim=0).numpy()
    theory = spike_probability(drive, params).numpy()
    stderr = np.sqrt(np.clip(theory * (1 - theory), 1e-12, None) / samples)
    return FiringProbability(drive.numpy(), empirical, theory, stderr, samples)


def inter_spike_intervals(spikes: np.ndarray) -> np.ndarray:
    """Intervals (in steps) between consecutive spikes of every neuron; spikes is ``[T, ...]``."""
    flat = np.asarray(spikes, dtype=bool).reshape(spikes.shape[0], -1)
    return np.concatenate([np.diff(np.flatnonzero(flat[:, n])) for n in range(flat.shape[1])] or [np.array([])])


def stochastic_isi(
    drive: float, params: StochasticParams, *, T: int = 400, neurons: int = 500, seed: int = 0
) -> np.ndarray:
    """Inter-spike intervals of ``neurons`` stochastic neurons under a constant drive."""
    batch = torch.full((T, 1, neurons), float(drive))
    spikes = StochasticNeuron(params)(batch, generator=torch.Generator().manual_seed(seed))
    return inter_spike_intervals(spikes[:, 0].numpy())


def filter_impulse_responses(tau_m: float = 4.0, tau_s: float = 1.0, T: int = 30) -> dict[str, np.ndarray]:
    """Impulse responses of the SNN-IIR synapse filters at their initial constants."""
    with torch.no_grad():
        return {
            "dual-exp IIR": DualExpIIR(1, DualExpIIRParams(tau_m, tau_s)).impulse_response(T).flatten().numpy(),
            "dual-exp IIR (normalised)": DualExpIIR(1, DualExpIIRParams(tau_m, tau_s, normalise=True))
            .impulse_response(T).flatten().numpy(),
            "two-state (normalised)": DualExpTwoState(1, TwoStateParams(tau_m, tau_s)).impulse_response(T).flatten().numpy(),
            "first-order low-pass": LowPass(1, LowPassParams(tau_m)).impulse_response(T).flatten().numpy(),
        }


def filter_summary(responses: Mapping[str, np.ndarray]) -> list[dict[str, float]]:
    """Peak value, peak step and DC gain (sum of the response) of each filter, for a table."""
    return [
        {"filter": name, "peak": float(h.max()), "peak_step": int(h.argmax()), "dc_gain": float(h.sum())}
        for name, h in responses.items()
    ]

"""Stochastic pixel neuron: firing probability, refractoriness (DASBE and GUST), batching, gradients."""

import math

import pytest
import torch

from workbench.neurons.stochastic import (
    StochasticNeuron,
    StochasticParams,
    StochasticState,
    spike_probability,
    stochastic_step,
)

PRESETS = {"dasbe": StochasticParams.dasbe(9), "gust": StochasticParams.gust(9)}


def spike_times(spikes: torch.Tensor) -> list[int]:
    return spikes.reshape(spikes.shape[0], -1)[:, 0].nonzero().flatten().tolist()


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("drive", [0.1, 0.5, 0.9])
def test_firing_probability_equals_drive(preset, drive):
    params = PRESETS[preset]
    n = 100_000
    g = torch.Generator().manual_seed(1234)
    d = torch.full((1, n), drive)
    s, _ = stochastic_step(d, None, params, torch.rand(d.shape, generator=g))
    p = float(spike_probability(torch.tensor(drive), params))
    assert p == pytest.approx(drive - params.offset)
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(float(s.mean()) - p) < 3 * sigma


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_zero_drive_never_fires(preset):
    g = torch.Generator().manual_seed(0)
    spikes = StochasticNeuron(PRESETS[preset])(torch.zeros(200, 4, 100), generator=g)
    assert spikes.sum() == 0


@pytest.mark.parametrize("r", [0, 1, 6, 9, 12])
def test_dasbe_fires_every_r_plus_one_steps(r):
    # dasbe §2.3: with r = 9 and drive 1 the neuron fires at 0, 10, 20, ... (r silent steps).
    T = 50
    spikes = StochasticNeuron(StochasticParams.dasbe(r))(torch.ones(T, 1, 1), noise=torch.full((T, 1, 1), 0.5))
    assert spike_times(spikes) == list(range(0, T, r + 1))


def test_gust_refractory_counts_down_eight_silent_steps():
    # gust §2.2: after a spike r = 8, then 7, ..., 0; fires at 0, 9, 18, 27 with c = 1.
    T = 30
    spikes, rec = StochasticNeuron(StochasticParams.gust(9))(
        torch.ones(T, 1, 1), noise=torch.full((T, 1, 1), 0.5), record=True
    )
    assert spike_times(spikes) == [0, 9, 18, 27]
    assert rec["refractory"][:10].flatten().tolist() == [8, 7, 6, 5, 4, 3, 2, 1, 0, 8]
    torch.testing.assert_close(rec["membrane"], torch.full((T, 1, 1), 1.5))


def dasbe_reference(drive, noise, r, offset=1e-5):
    """Literal DASBE order: ref -= 1; s = (m + U > 1 + offset) & (ref < 0); ref = where(s, r, ref)."""
    ref = torch.zeros(drive.shape[1:])
    out = []
    for t in range(drive.shape[0]):
        ref = ref - 1
        s = ((drive[t] + noise[t]) > 1 + offset) & (ref < 0)
        ref = torch.where(s, torch.full_like(ref, r), ref)
        out.append(s)
    return torch.stack(out).float()


def gust_reference(drive, noise, tau_rfr):
    """Literal GUST: s = [x c + xi > 1] [r < 1]; r = max(0, r - 1 + tau_rfr s)."""
    ref = torch.zeros(drive.shape[1:])
    out = []
    for t in range(drive.shape[0]):
        s = ((drive[t] + noise[t]) > 1).float() * (ref < 1).float()
        ref = torch.clamp(ref - 1 + tau_rfr * s, min=0)
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("r", [2, 9])
def test_presets_equal_literal_reference_rules(r):
    g = torch.Generator().manual_seed(r)
    drive = torch.rand(80, 3, 50, generator=g)
    noise = torch.rand(drive.shape, generator=g)
    dasbe = StochasticNeuron(StochasticParams.dasbe(r))(drive, noise=noise)
    gust = StochasticNeuron(StochasticParams.gust(r + 1))(drive, noise=noise)
    assert torch.equal(dasbe, dasbe_reference(drive, noise, r))
    assert torch.equal(gust, gust_reference(drive, noise, r + 1))
    assert dasbe.sum() > 100  # the comparison is not vacuous


def test_minimum_isi_holds_under_noise():
    g = torch.Generator().manual_seed(5)
    spikes = StochasticNeuron(StochasticParams.gust(9))(torch.full((300, 1, 64), 0.8), generator=g)
    for n in range(64):
        times = spikes[:, 0, n].nonzero().flatten()
        assert len(times) > 5
        assert int(times.diff().min()) >= 9


def test_batch_equals_per_element_loop():
    g = torch.Generator().manual_seed(3)
    drive = torch.rand(40, 3, 4, generator=g)
    noise = torch.rand(drive.shape, generator=g)
    neuron = StochasticNeuron(StochasticParams.dasbe(4))
    batched = neuron(drive, noise=noise)
    for b in range(3):
        for n in range(4):
            single = neuron(drive[:, b : b + 1, n : n + 1], noise=noise[:, b : b + 1, n : n + 1])
            assert torch.equal(batched[:, b : b + 1, n : n + 1], single)


def test_inference_fast_path_equals_autograd_path():
    g = torch.Generator().manual_seed(11)
    drive = torch.rand(60, 2, 30, generator=g)
    noise = torch.rand(drive.shape, generator=g)
    neuron = StochasticNeuron(StochasticParams.gust(4))
    with torch.no_grad():
        fast = neuron(drive, noise=noise)
    slow = neuron(drive.clone().requires_grad_(), noise=noise)
    assert slow.requires_grad and torch.equal(fast, slow.detach()) and fast.sum() > 50


def test_same_generator_seed_is_deterministic():
    drive = torch.full((50, 2, 10), 0.5)
    neuron = StochasticNeuron(StochasticParams.gust())
    a = neuron(drive, generator=torch.Generator().manual_seed(7))
    b = neuron(drive, generator=torch.Generator().manual_seed(7))
    c = neuron(drive, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gust_threshold_gradient_is_rectangle():
    v = torch.tensor([[0.4, 0.6, 1.0, 1.4, 1.6]], requires_grad=True)
    s, _ = stochastic_step(v, None, StochasticParams.gust(), torch.zeros(1, 5))
    s.sum().backward()
    assert v.grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0]]


def test_closed_gate_blocks_spikes_and_their_gradient():
    drive = torch.full((1, 3), 1.2, requires_grad=True)
    closed = StochasticState(torch.full((1, 3), 3.0))
    s, _ = stochastic_step(drive, closed, StochasticParams.gust(), torch.zeros(1, 3))
    s.sum().backward()
    assert s.sum() == 0 and drive.grad.abs().sum() == 0


def test_gradient_flows_through_gate_and_refractory_state():
    # gust §2.4: d gate / d ref = -1 only where ref == 0; max(0, .) passes gradient where its input > 0.
    drive = torch.tensor([[1.2, 0.5, 1.2]], requires_grad=True)
    ref = torch.tensor([[0.0, 0.0, 2.0]], requires_grad=True)
    s, state = stochastic_step(drive, StochasticState(ref), StochasticParams.gust(9), torch.zeros(1, 3))
    assert s.tolist() == [[1.0, 0.0, 0.0]]
    assert state.refractory.tolist() == [[8.0, 0.0, 1.0]]
    d_ref, d_drive = torch.autograd.grad(state.refractory.sum(), (ref, drive))
    assert d_ref.tolist() == [[1.0 - 9.0, 0.0, 1.0]]
    assert d_drive.tolist() == [[9.0, 0.0, 0.0]]


def test_bptt_through_a_sequence_reaches_early_drive():
    g = torch.Generator().manual_seed(0)
    drive = torch.full((30, 2, 20), 0.7, requires_grad=True)
    spikes = StochasticNeuron(StochasticParams.gust())(drive, generator=g)
    spikes.sum().backward()
    assert torch.isfinite(drive.grad).all()
    assert drive.grad[0].abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"refractory": -1}, ">= 0"),
        ({"refractory": 2.5}, "integer"),
        ({"threshold": math.nan}, "finite"),
        ({"surrogate": "box"}, "rectangle"),
    ],
)
def test_params_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StochasticParams(**kwargs)


def test_presets_and_input_validation():
    assert StochasticParams.gust(9).refractory == 8
    assert StochasticParams.dasbe(9).refractory == 9
    assert StochasticParams.dasbe(9).effective_threshold == pytest.approx(1 + 1e-5)
    with pytest.raises(ValueError, match="tau_rfr"):
        StochasticParams.gust(0)
    neuron = StochasticNeuron()
    with pytest.raises(ValueError, match=r"\[T, B, N\]"):
        neuron(torch.ones(5, 3))
    with pytest.raises(ValueError, match="shape"):
        neuron(torch.ones(5, 2, 3), noise=torch.ones(5, 2, 4))
    with pytest.raises(ValueError, match="either"):
        neuron(torch.ones(5, 2, 3), noise=torch.ones(5, 2, 3), generator=torch.Generator())

"""LIF neuron: analytic oracles, resets, gradients, batching."""

import math

import pytest
import torch

from workbench.neurons.lif import LIF, LIFParams, lif_fire, lif_step
from workbench.neurons.surrogate import surrogate


def constant(x: float, T: int, shape=(1, 1)) -> torch.Tensor:
    return torch.full((T, *shape), x, dtype=torch.float64)


@pytest.mark.parametrize("tau_syn, v_leak", [(0.0, 0.0), (5.0, 0.0), (3.0, 0.2)])
def test_subthreshold_input_converges_to_steady_state(tau_syn, v_leak):
    p = LIFParams(tau_mem=8.0, tau_syn=tau_syn, v_th=50.0, v_leak=v_leak)
    x = 0.1
    _, rec = LIF(p)(constant(x, 400), record=True)
    steady = v_leak + x / (1.0 - p.ds)  # the synapse's DC gain is 1 / (1 - ds)
    assert float(rec["v"][-1]) == pytest.approx(steady, abs=1e-9)


def first_spike_no_synapse(x: float, v_th: float, dm: float) -> int:
    """v[t] = x (1 - dm^(t+1)) from rest: the first t with v[t] > v_th, in closed form."""
    return math.ceil(math.log(1.0 - v_th / x) / math.log(dm)) - 1


@pytest.mark.parametrize("x, tau_mem, dt", [(1.5, 10.0, 1.0), (1.1, 5.0, 0.5), (3.0, 20.0, 1.0), (1.02, 4.0, 2.0)])
def test_first_spike_time_matches_closed_form(x, tau_mem, dt):
    p = LIFParams(tau_mem=tau_mem, tau_syn=0.0, dt=dt)
    spikes = LIF(p)(constant(x, 200))
    assert int(spikes[:, 0, 0].nonzero()[0]) == first_spike_no_synapse(x, p.v_th, p.dm)


def test_first_spike_time_with_synapse_matches_closed_form():
    p = LIFParams(tau_mem=10.0, tau_syn=4.0)
    dm, ds, x = p.dm, p.ds, 0.35
    # v[t] = (1 - dm) sum_k dm^(t-k) i[k] with i[k] = x (1 - ds^(k+1)) / (1 - ds), summed in closed form.
    def v(t):
        geometric = (1 - dm ** (t + 1)) / (1 - dm)
        cross = ds * (dm ** (t + 1) - ds ** (t + 1)) / (dm - ds)
        return (1 - dm) * x / (1 - ds) * (geometric - cross)

    expected = next(t for t in range(200) if v(t) > p.v_th)
    spikes, rec = LIF(p)(constant(x, 200), record=True)
    assert int(spikes[:, 0, 0].nonzero()[0]) == expected
    analytic = torch.tensor([v(t) for t in range(expected)], dtype=torch.float64)
    torch.testing.assert_close(rec["v"][:expected, 0, 0], analytic)


def test_hard_reset_is_periodic():
    x, T = 1.5, 200
    p = LIFParams(tau_mem=10.0, tau_syn=0.0, reset="hard")
    period = first_spike_no_synapse(x, p.v_th, p.dm) + 1  # after a hard reset to 0 the run restarts from rest
    spikes, rec = LIF(p)(constant(x, T), record=True)
    assert spikes[:, 0, 0].nonzero().flatten().tolist() == list(range(period - 1, T, period))
    assert float(rec["v_reset"][period - 1]) == 0.0


def test_subtract_reset_obeys_superposition():
    # Subtractive reset is linear: v_pre[t] = x (1 - dm^(t+1)) - (v_th - v_reset) sum_{t_k < t} dm^(t - t_k).
    x, T = 1.7, 120
    p = LIFParams(tau_mem=10.0, tau_syn=0.0, reset="subtract", v_reset=-0.5)
    spikes, rec = LIF(p)(constant(x, T), record=True)
    times = spikes[:, 0, 0].nonzero().flatten().tolist()
    assert len(times) > 5
    for t in range(T):
        expected = x * (1 - p.dm ** (t + 1)) - (p.v_th - p.v_reset) * sum(p.dm ** (t - k) for k in times if k < t)
        assert float(rec["v"][t]) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("tau_mem, x", [(2.0, 1.5), (3.0, 2.0), (10.0, 3.0), (10.0, 1.2)])
def test_subtract_reset_keeps_the_overshoot(tau_mem, x):
    # Hard reset: exactly floor(T / period) spikes. Subtract keeps the overshoot above threshold, so it
    # fires at least as often, and strictly more when the per-step input is large against tau_mem.
    T = 300
    counts = {
        reset: int(LIF(LIFParams(tau_mem=tau_mem, tau_syn=0.0, reset=reset))(constant(x, T)).sum())
        for reset in ("hard", "subtract")
    }
    period = first_spike_no_synapse(x, 1.0, math.exp(-1.0 / tau_mem)) + 1
    assert counts["hard"] == T // period
    assert counts["subtract"] >= counts["hard"]
    if x >= 1.5:
        assert counts["subtract"] > counts["hard"]


def test_threshold_is_strict():
    z, _ = lif_fire(torch.tensor([1.0, 1.0 + 1e-6]), LIFParams())
    assert z.tolist() == [0.0, 1.0]


def test_single_step_gradient_is_surrogate_times_leak():
    p = LIFParams(tau_mem=5.0, tau_syn=0.0, surrogate=surrogate("gaussian", sigma=0.5))
    x = torch.tensor([0.5, 5.0, 10.0], dtype=torch.float64, requires_grad=True)
    z, _ = lif_step(x, None, p)
    z.sum().backward()
    v = (1 - p.dm) * x.detach()
    torch.testing.assert_close(x.grad, p.surrogate.grad(v - p.v_th) * (1 - p.dm))


@pytest.mark.parametrize("reset", ["subtract", "hard"])
def test_gradcheck_with_smooth_spike_function(reset):
    # Forward the smooth counterpart so the whole unrolled neuron is differentiable and gradcheck applies:
    # this checks the BPTT wiring through the synapse, the leak and the reset.
    smooth = surrogate("gaussian", sigma=0.5).smooth
    p = LIFParams(tau_mem=6.0, tau_syn=3.0, reset=reset, v_reset=-0.2, surrogate=smooth)
    x = (torch.rand(8, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda inp: LIF(p)(inp), (x,))


def test_surrogate_gradient_reaches_early_inputs():
    x = torch.full((30, 1, 4), 0.4, requires_grad=True)
    LIF(LIFParams(surrogate="arctan"))(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0].abs().sum() > 0


def test_batch_equals_per_neuron_loop():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(30, 3, 4, generator=g, dtype=torch.float64) * 1.5
    p = LIFParams(tau_mem=5.0, tau_syn=2.0, reset="hard")
    batched, rec = LIF(p)(x, record=True)
    for b in range(3):
        for n in range(4):
            state = None
            for t in range(30):
                z, state = lif_step(x[t, b, n], state, p)
                assert float(z) == float(batched[t, b, n])
                assert float(state.v) == float(rec["v_reset"][t, b, n])
    assert batched.sum() > 0


def test_state_is_rebuilt_on_every_call():
    neuron = LIF()
    x = torch.full((20, 2, 3), 0.5)
    assert torch.equal(neuron(x), neuron(x))


def test_record_shapes():
    z, rec = LIF()(torch.ones(7, 2, 3, 4), record=True)
    assert z.shape == (7, 2, 3, 4)
    assert {k: tuple(v.shape) for k, v in rec.items()} == {k: (7, 2, 3, 4) for k in ("v", "v_reset", "i")}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tau_mem": math.nan}, "tau_mem must be finite"),
        ({"tau_mem": -1.0}, "tau_mem must be > 0"),
        ({"tau_syn": -1.0}, "tau_syn"),
        ({"dt": 0.0}, "dt"),
        ({"reset": "soft"}, "reset"),
        ({"v_reset": 1.0}, "below v_th"),
    ],
)
def test_params_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LIFParams(**kwargs)


def test_input_validation():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        LIF()(torch.ones(5, 3))
    with pytest.raises(ValueError, match="floating"):
        LIF()(torch.ones(5, 3, 2, dtype=torch.int64))

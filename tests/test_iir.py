"""SNN-IIR filters and neuron: every oracle of specs/snn_iir.md §2.1-§2.6, vectorised vs loop agreement."""

import math
import warnings

import pytest
import torch

from workbench.neurons.iir import (
    DualExpIIR,
    DualExpIIRParams,
    DualExpTwoState,
    IIRCoefficients,
    IIRNeuron,
    IIRNeuronParams,
    LowPass,
    LowPassParams,
    TwoStateParams,
    causal_conv,
    iir_pole_moduli,
)

TOL = 1e-4
IMPLS = ("conv", "loop")


def spike_string(spikes: torch.Tensor) -> str:
    return "".join(str(int(v)) for v in spikes.reshape(-1))


def response(filt, T: int, impulse: bool = True) -> torch.Tensor:
    """Impulse (x = [1, 0, 0, ...]) or step (x = 1) response of a single-channel filter, float32."""
    x = torch.zeros(T, 1, 1) if impulse else torch.ones(T, 1, 1)
    x[0] = 1.0
    with torch.no_grad():
        return filt(x)[:, 0, 0]


# ---------------------------------------------------------------------------------------------------
# §2.6 coefficient table
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "taus, row",
    [
        ((4.0, 1.0), (0.778801, 0.367879, 1.146680, -0.286505, 0.410921, 2.116535, 1.848)),
        ((8.0, 2.0), (0.882497, 0.606531, 1.489028, -0.535261, 0.275966, 2.116535, 3.697)),
    ],
)
def test_coefficient_table(taus, row):
    p = DualExpIIRParams(*taus)
    c = p.coefficients(1, dtype=torch.float64)
    values = (p.dm, p.ds, float(c.alpha_1), float(c.alpha_2), float(c.beta_1), p.v0)
    assert values == pytest.approx(row[:6], abs=1e-6)
    assert p.continuous_peak_time == pytest.approx(row[6], abs=1e-3)
    normalised = DualExpIIRParams(*taus, normalise=True).coefficients(1)
    assert float(normalised.beta_1) == pytest.approx(row[4] * row[5], abs=1e-5)


# ---------------------------------------------------------------------------------------------------
# §2.6 filter table: impulse responses, peaks, DC gains, step responses, sum of h^2
# ---------------------------------------------------------------------------------------------------

STEP_TIMES = [0, 1, 2, 4, 9, 24, 49]
IIR41_STEP = [0.4109, 0.8821, 1.3047, 1.9340, 2.6499, 2.9320, 2.9388]
FILTER_TABLE = {
    "iir_4_1": dict(
        make=lambda impl: DualExpIIR(1, DualExpIIRParams(4, 1), impl=impl),
        h=[0.4109, 0.4712, 0.4226, 0.3496, 0.2798, 0.2207, 0.1729, 0.1350],
        peak=(0.47120, 1), dc=2.93883, step=IIR41_STEP, energy=0.8949,
    ),
    "iir_8_2": dict(
        make=lambda impl: DualExpIIR(1, DualExpIIRParams(8, 2), impl=impl),
        h=[0.2760, 0.4109, 0.4642, 0.4712, 0.4532, 0.4226, 0.3867, 0.3496],
        peak=(0.47120, 3), dc=5.96892, step=[0.2760, 0.6869, 1.1510, 2.0754, 3.8275, 5.6389, 5.9544], energy=1.7993,
    ),
    "iir_4_1_normalised": dict(
        make=lambda impl: DualExpIIR(1, DualExpIIRParams(4, 1, normalise=True), impl=impl),
        h=[0.8697, 0.9973, 0.8944, 0.7399, 0.5921, 0.4670, 0.3659, 0.2857],
        peak=(0.99730, 1), dc=6.22015, step=[2.116535 * v for v in IIR41_STEP], energy=4.0089,
    ),
    "two_state_4_1": dict(
        make=lambda impl: DualExpTwoState(1, TwoStateParams(4, 1), impl=impl),
        h=[0, 0.8697, 0.9973, 0.8944, 0.7399, 0.5921, 0.4670, 0.3659],
        peak=(0.99730, 2), dc=6.22015, step=[0, 0.8697, 1.8670, 3.5013, 5.4349, 6.2017, 6.2201], energy=4.0089,
    ),
    "two_state_8_2": dict(
        make=lambda impl: DualExpTwoState(1, TwoStateParams(8, 2), impl=impl),
        h=[0, 0.5841, 0.8697, 0.9824, 0.9973, 0.9592, 0.8944, 0.8184],
        peak=(0.99730, 4), dc=12.63343, step=[0, 0.5841, 1.4538, 3.4335, 7.5090, 11.8420, 12.5987], energy=8.0603,
    ),
    "low_pass_4": dict(
        make=lambda impl: LowPass(1, LowPassParams(4), impl=impl),
        h=[1, 0.7788, 0.6065, 0.4724, 0.3679, 0.2865, 0.2231, 0.1738],
        peak=(1.0, 0), dc=4.52081, step=[1, 1.7788, 2.3853, 3.2256, 4.1497, 4.5121, 4.5208], energy=None,
    ),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", sorted(FILTER_TABLE))
def test_filter_oracles(name, impl):
    row = FILTER_TABLE[name]
    filt = row["make"](impl)
    h = response(filt, 400)
    torch.testing.assert_close(h[:8], torch.tensor(row["h"], dtype=torch.float32), rtol=0, atol=TOL)
    peak, k = row["peak"]
    assert float(h.max()) == pytest.approx(peak, abs=TOL) and int(h.argmax()) == k
    assert float(h.sum()) == pytest.approx(row["dc"], abs=TOL)
    if row["energy"] is not None:
        assert float((h**2).sum()) == pytest.approx(row["energy"], abs=TOL)
    step = response(filt, 50, impulse=False)
    torch.testing.assert_close(step[STEP_TIMES], torch.tensor(row["step"], dtype=torch.float32), rtol=0, atol=TOL)
    torch.testing.assert_close(filt.impulse_response(8).detach()[:, 0], h[:8], rtol=0, atol=1e-6)


def test_two_state_lags_iir_by_one_step():
    # IIR[t] = TwoState[t+1] / v0 for the same input.
    x = torch.rand(40, 3, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        iir = DualExpIIR(5, DualExpIIRParams(4, 1))(x)
        two = DualExpTwoState(5, TwoStateParams(4, 1))(x)
    torch.testing.assert_close(iir[:-1], two[1:] / DualExpIIRParams(4, 1).v0, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# §2.2 neuron oracles
# ---------------------------------------------------------------------------------------------------

NEURON_TABLE = [
    (0.9, False, "0" * 30),
    (1.0, False, "0" * 30),
    (1.01, False, "1" + "0" * 19 + "1" + "0" * 9),
    (1.5, False, "100010000010000100000100001000"),
    (2.0, False, "101001000100100010001001000100"),
    (3.0, False, "111010101010101010101010101010"),
    (5.0, False, "111111111011110111101111011110"),
    (0.3, True, "000001000000000000000010000000"),
    (0.5, True, "001000000000100000000010000000"),
    (1.0, True, "011000000100001000010000010000"),
]


@pytest.mark.parametrize("current, membrane_filter, expected", NEURON_TABLE)
def test_neuron_spike_strings(current, membrane_filter, expected):
    neuron = IIRNeuron(IIRNeuronParams(tau_m=4.0, membrane_filter=membrane_filter))
    spikes = neuron(torch.full((30, 1, 1), current))
    assert spike_string(spikes) == expected
    assert int(spikes.sum()) == expected.count("1")


@pytest.mark.parametrize("current, count", [(1.5, 5), (2.0, 8), (3.0, 14)])
def test_neuron_counts_at_T25(current, count):
    assert int(IIRNeuron()(torch.full((25, 1, 1), current)).sum()) == count


def test_membrane_filter_trace():
    _, rec = IIRNeuron(IIRNeuronParams(membrane_filter=True))(torch.full((6, 1, 1), 0.3), record=True)
    expected = torch.tensor([0.3, 0.5336, 0.7156, 0.8573, 0.9677, 1.0536])
    torch.testing.assert_close(rec["v"][:, 0, 0], expected, rtol=0, atol=TOL)


def test_reset_is_a_decaying_self_inhibition_with_gradient():
    # A spike at t0 subtracts reset_v * dm^(j-1) from v[t0 + j]; the gradient flows through it (not detached).
    # The rectangle surrogate is zero far below threshold, so only the path through s[0] contributes.
    params = IIRNeuronParams(tau_m=4.0, reset_v=0.7, surrogate="rectangle")
    current = torch.tensor([1.2, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64).reshape(5, 1, 1).requires_grad_()
    _, rec = IIRNeuron(params)(current, record=True)
    dm = params.dm
    expected_v = torch.tensor([-0.7 * dm**j for j in range(4)], dtype=torch.float64)
    torch.testing.assert_close(rec["v"][1:, 0, 0], expected_v)
    (grad,) = torch.autograd.grad(rec["v"][3].sum(), current)
    assert grad.flatten().tolist() == pytest.approx([-0.7 * dm**2, 0, 0, 1, 0], abs=1e-15)


# ---------------------------------------------------------------------------------------------------
# §2.6 composition oracles
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_analog_pixel_compositions(impl):
    x = torch.ones(25, 1, 1)
    neuron = IIRNeuron()
    with torch.no_grad():
        via_iir = neuron(DualExpIIR(1, DualExpIIRParams(4, 1), impl=impl)(x))
        via_low_pass = neuron(LowPass(1, LowPassParams(4), impl=impl)(x))
    assert spike_string(via_iir) == "0010101010100101010101001" and int(via_iir.sum()) == 11
    assert spike_string(via_low_pass) == "0111011101101110110111011" and int(via_low_pass.sum()) == 18


@pytest.mark.parametrize("weight, times", [(2.0, []), (2.2, [1]), (3.0, [0]), (5.0, [0, 1])])
def test_single_input_spike_compositions(weight, times):
    x = torch.zeros(25, 1, 1)
    x[0] = 1.0
    with torch.no_grad():
        psp = DualExpIIR(1, DualExpIIRParams(4, 1))(x)
        spikes = IIRNeuron()(weight * psp)
    assert spikes.flatten().nonzero().flatten().tolist() == times
    assert float(psp.max()) * 2.0 == pytest.approx(0.9424, abs=TOL)  # the w = 2 peak PSP
    assert 1.0 / float(psp.max()) == pytest.approx(2.1222, abs=TOL)  # any spike needs w > 2.1222


# ---------------------------------------------------------------------------------------------------
# Poles and parametrisations
# ---------------------------------------------------------------------------------------------------


def test_pole_modulus_real_complex_and_unstable():
    coeffs = IIRCoefficients(torch.tensor([1.146680, 1.0, 2.1]), torch.tensor([-0.286505, -0.8, -1.0]), torch.ones(3))
    moduli = iir_pole_moduli(coeffs)
    expected = [0.778801, math.sqrt(0.8), (2.1 + math.sqrt(0.41)) / 2]
    assert moduli.tolist() == pytest.approx(expected, abs=1e-5)
    assert DualExpIIR(4, DualExpIIRParams(8, 2)).max_pole_modulus() == pytest.approx(0.882497, abs=1e-6)


def test_unstable_filter_falls_back_to_the_recursion():
    filt = DualExpIIR(2, DualExpIIRParams(4, 1), trainable=False)
    filt.alpha_1.fill_(2.1)
    filt.alpha_2.fill_(-1.0)
    x = torch.rand(30, 2, 2, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="pole modulus"):
        auto = filt(x)
    filt.impl = "loop"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(auto, filt(x))


def test_stable_parametrisation_starts_equal_and_keeps_real_poles_inside_the_unit_circle():
    x = torch.rand(20, 2, 3, generator=torch.Generator().manual_seed(1))
    for normalise in (False, True):
        params = dict(tau_m=4, tau_s=1, normalise=normalise)
        free = DualExpIIR(3, DualExpIIRParams(**params, parametrisation="free"))
        stable = DualExpIIR(3, DualExpIIRParams(**params, parametrisation="stable"))
        torch.testing.assert_close(stable(x), free(x), rtol=1e-5, atol=1e-6)
    assert sorted(n for n, _ in stable.named_parameters()) == ["gain", "theta_m", "theta_s"]
    with torch.no_grad():
        stable.theta_m.copy_(torch.tensor([8.0, -3.0, 0.5]))
        stable.theta_s.copy_(torch.tensor([9.0, 2.0, 0.5001]))
    assert stable.max_pole_modulus() < 1.0
    c = stable.coefficients()
    assert bool((c.alpha_1**2 + 4 * c.alpha_2 >= 0).all())  # real poles


# ---------------------------------------------------------------------------------------------------
# Vectorised vs loop: outputs and parameter gradients (§2.6 gradient oracle)
# ---------------------------------------------------------------------------------------------------


def make_filter(kind: str, impl: str, channels: int) -> torch.nn.Module:
    if kind == "iir_free":
        return DualExpIIR(channels, DualExpIIRParams(4, 1), impl=impl)
    if kind == "iir_stable":
        return DualExpIIR(channels, DualExpIIRParams(8, 2, normalise=True, parametrisation="stable"), impl=impl)
    if kind == "two_state":
        return DualExpTwoState(channels, TwoStateParams(8, 2), trainable=True, impl=impl)
    return LowPass(channels, LowPassParams(4), impl=impl)


def layer_gradients(kind, impl, dtype, membrane_filter, seed=0):
    """filter -> Linear -> IIRNeuron with random W, b, perturbed coefficients and spiky input."""
    g = torch.Generator().manual_seed(seed)
    c_in, c_out, T, B = 6, 5, 25, 4
    filt = make_filter(kind, impl, c_in).to(dtype)
    with torch.no_grad():
        for p in filt.parameters():
            p.mul_(1 + 0.05 * torch.randn(p.shape, generator=g, dtype=dtype))
    linear = torch.nn.Linear(c_in, c_out).to(dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(c_out, c_in, generator=g, dtype=dtype) * 1.5)
        linear.bias.copy_(torch.randn(c_out, generator=g, dtype=dtype) * 0.3)
    x = (torch.rand(T, B, c_in, generator=g, dtype=dtype) < 0.3).to(dtype)
    readout = torch.randn(T, B, c_out, generator=g, dtype=dtype)
    neuron = IIRNeuron(IIRNeuronParams(membrane_filter=membrane_filter))
    psp = filt(x)
    spikes, rec = neuron(linear(psp), record=True)
    loss = (spikes * readout).sum() + 0.1 * (rec["v"] ** 2).sum()
    params = list(filt.parameters()) + list(linear.parameters())
    grads = torch.autograd.grad(loss, params)
    return psp.detach(), spikes.detach(), grads


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


@pytest.mark.parametrize("kind", ["iir_free", "iir_stable", "two_state", "low_pass"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("membrane_filter", [False, True])
def test_vectorised_matches_loop_in_outputs_and_gradients(kind, dtype, membrane_filter):
    psp_v, spikes_v, grads_v = layer_gradients(kind, "conv", dtype, membrane_filter)
    psp_l, spikes_l, grads_l = layer_gradients(kind, "loop", dtype, membrane_filter)
    assert torch.equal(spikes_v, spikes_l) and spikes_l.sum() > 10
    assert relative_error(psp_v, psp_l) < 1e-6
    for gv, gl in zip(grads_v, grads_l):
        assert gl.abs().sum() > 0
        assert relative_error(gv, gl) < 1e-5


def test_causal_conv_matches_direct_sum():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 2, 3, dtype=torch.float64, generator=g)
    h = torch.randn(12, 3, dtype=torch.float64, generator=g)
    direct = torch.stack([sum(h[k] * x[t - k] for k in range(t + 1)) for t in range(12)])
    torch.testing.assert_close(causal_conv(x, h), direct)


def test_per_synapse_two_state_broadcasts_its_input():
    decays = DualExpTwoState((3, 2), TwoStateParams(4, 1), trainable=True)
    x = torch.rand(15, 2, 3, generator=torch.Generator().manual_seed(3))
    out = decays(x[..., None])
    assert out.shape == (15, 2, 3, 2)
    single = DualExpTwoState(3, TwoStateParams(4, 1))(x)
    torch.testing.assert_close(out[..., 1], single)


# ---------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DualExpIIRParams(tau_m=2.0, tau_s=2.0), "differ"),
        (lambda: DualExpIIRParams(tau_m=-4.0), "tau_m must be > 0"),
        (lambda: DualExpIIRParams(tau_s=math.nan), "finite"),
        (lambda: DualExpIIRParams(parametrisation="bounded"), "parametrisation"),
        (lambda: LowPassParams(tau=0.0), "tau"),
        (lambda: IIRNeuronParams(tau_m=math.inf), "finite"),
        (lambda: DualExpIIR(3, impl="fft"), "impl"),
        (lambda: LowPass(0), "channels"),
    ],
)
def test_params_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_input_shape_validation():
    with pytest.raises(ValueError, match=r"expects input \[T, B, 5\]"):
        DualExpIIR(5)(torch.ones(10, 2, 4))
    with pytest.raises(ValueError, match="at least 3 dims"):
        LowPass(5)(torch.ones(10, 5))
    with pytest.raises(ValueError, match="current"):
        IIRNeuron()(torch.ones(10, 5))


def test_state_is_zero_on_every_call():
    filt = DualExpIIR(2)
    x = torch.rand(10, 1, 2)
    assert torch.equal(filt(x), filt(x))

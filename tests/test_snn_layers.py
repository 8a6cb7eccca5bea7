"""SNN-IIR layers: fast neuron vs plain autograd, composition oracles (spec §2.6), variants, cross-checks."""

import math

import pytest
import torch

from workbench.models.snn_layers import (IIRAvgPool2d, IIRConv2d, IIRDense, IIRSynapseDense, LayerRecord,
                                         ReadoutFilter, max_pole_modulus)
from workbench.neurons.iir import DualExpIIRParams, TwoStateParams, dual_exp_iir_run, two_state_run


def _pair(**kw):
    torch.manual_seed(0)
    fast = IIRDense(12, 7, **kw)
    loop = IIRDense(12, 7, impl="loop", **kw)
    with torch.no_grad():
        fast.linear.weight.mul_(6.0)
    loop.load_state_dict(fast.state_dict())
    return fast, loop


@pytest.mark.parametrize("kw", [dict(), dict(membrane_filter=True), dict(psp="low_pass"),
                                dict(parametrisation="stable", normalised=True), dict(psp="none", reset_v=0.7)])
def test_fast_neuron_matches_plain_autograd_in_outputs_and_gradients(kw):
    fast, loop = _pair(**kw)
    x = (torch.rand(20, 5, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    s_fast, s_loop = fast(x), loop(x)
    assert torch.equal(s_fast, s_loop)
    assert 0.05 < float(s_fast.detach().mean()) < 0.95  # spiky enough for the reset path to matter
    w = torch.randn(s_fast.shape, generator=torch.Generator().manual_seed(2))
    (s_fast * w).sum().backward()
    (s_loop * w).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), loop.parameters()):
        scale = float(q.grad.abs().max())
        assert scale > 0, name
        assert float((p.grad - q.grad).abs().max()) <= 1e-5 * scale, name


def _scalar_layer(psp: str) -> IIRDense:
    layer = IIRDense(1, 1, psp=psp)
    with torch.no_grad():
        layer.linear.weight.fill_(1.0)
        layer.linear.bias.zero_()
    return layer


def _train(spikes: torch.Tensor) -> str:
    return "".join(str(int(v)) for v in spikes.flatten().tolist())


@pytest.mark.parametrize("psp, expected", [("dual_exp", "0010101010100101010101001"),
                                           ("low_pass", "0111011101101110110111011")])
def test_constant_pixel_composition_oracle(psp, expected):
    out = _scalar_layer(psp)(torch.ones(25, 1, 1))
    assert _train(out) == expected


@pytest.mark.parametrize("w, expected", [(2.0, ""), (2.2, "1"), (3.0, "0"), (5.0, "01")])
def test_single_input_spike_oracle(w, expected):
    layer = _scalar_layer("dual_exp")
    with torch.no_grad():
        layer.linear.weight.fill_(w)
    x = torch.zeros(25, 1, 1)
    x[0] = 1.0
    spikes, rec = layer(x, record=True)
    assert "".join(str(t) for t in torch.nonzero(spikes.flatten()).flatten().tolist()) == expected
    if w == 2.0:
        assert float(rec.psp.detach().max()) * w == pytest.approx(0.9424, abs=1e-4)


def test_record_shapes_and_reset_trace():
    layer = IIRDense(6, 4)
    x = torch.rand(9, 3, 6)
    spikes, rec = layer(x, record=True)
    assert isinstance(rec, LayerRecord)
    assert rec.psp.shape == (9, 3, 6) and rec.v.shape == rec.r.shape == spikes.shape == (9, 3, 4)
    assert torch.equal(spikes, layer(x))
    dm = math.exp(-1 / 4)
    assert torch.allclose(rec.r[1:], dm * rec.r[:-1] + spikes[1:])


def test_input_shape_errors_name_the_shape():
    with pytest.raises(ValueError, match=r"\[T, B, 6\]"):
        IIRDense(6, 4)(torch.rand(9, 3, 5))
    with pytest.raises(ValueError, match="psp"):
        IIRDense(6, 4, psp="alpha")


def test_readout_filter_is_fixed_normalised_two_state():
    f = ReadoutFilter(3)
    assert list(f.parameters()) == []
    x = torch.zeros(8, 1, 3)
    x[0] = 1.0
    h = f(x)[:, 0, 0]
    expected = torch.tensor([0, .5841, .8697, .9824, .9973, .9592, .8944, .8184])
    assert torch.allclose(h, expected, atol=1e-4)


def test_max_pole_modulus_and_unstable_detection():
    net = torch.nn.Sequential(IIRDense(5, 4), IIRDense(4, 3, psp="low_pass"))
    assert max_pole_modulus(net) == pytest.approx(math.exp(-1 / 4), abs=1e-6)
    assert net[0].max_pole_modulus() == pytest.approx(math.exp(-1 / 4), abs=1e-6)
    with torch.no_grad():
        net[0].psp.alpha_1[2] = 2.1  # z² - 2.1 z + 0.2865: a root > 1
    assert max_pole_modulus(net) > 1.0
    assert max_pole_modulus(torch.nn.Linear(2, 2)) == 0.0


def test_conv_with_1x1_kernel_equals_dense_per_pixel():
    torch.manual_seed(3)
    conv = IIRConv2d(3, 4, 1)
    dense = IIRDense(3, 4)
    with torch.no_grad():
        conv.conv.weight.mul_(5.0)
        dense.linear.weight.copy_(conv.conv.weight[:, :, 0, 0])
        dense.linear.bias.copy_(conv.conv.bias)
    x = (torch.rand(10, 2, 3, 5, 5) < 0.5).float()
    out = conv(x)
    assert out.shape == (10, 2, 4, 5, 5)
    ref = dense(x.permute(0, 1, 3, 4, 2).reshape(10, 50, 3)).reshape(10, 2, 5, 5, 4).permute(0, 1, 4, 2, 3)
    assert out.sum() > 0 and torch.equal(out, ref)


def test_conv_passes_dilation_and_pool_averages_filtered_input():
    assert IIRConv2d(1, 1, 3, dilation=2).conv.dilation == (2, 2)
    pool = IIRAvgPool2d(2, 2, scale=4.0, psp="none")
    x = torch.ones(6, 1, 2, 4, 4)
    x[:, :, :, 0, 0] = 0.0  # one pixel of the first pool window silent: current 3.0 there, 4.0 elsewhere
    spikes, rec = pool(x, record=True)
    assert spikes.shape == (6, 1, 2, 2, 2)
    assert torch.allclose(rec.v[0, 0, :, 0, 0], torch.tensor([3.0, 3.0]))
    assert torch.allclose(rec.v[0, 0, :, 1, 1], torch.tensor([4.0, 4.0]))


def test_per_synapse_layer_matches_explicit_sum():
    torch.manual_seed(4)
    layer = IIRSynapseDense(3, 2, trainable=True)
    with torch.no_grad():
        layer.psp.decay_m.uniform_(0.6, 0.9)  # distinct decays per synapse
    x = (torch.rand(12, 2, 3) < 0.5).float()
    spikes, rec = layer(x, record=True)
    coeffs = TwoStateParams(4, 1).coefficients((3, 2))
    coeffs = coeffs._replace(decay_m=layer.psp.decay_m.detach())
    psi = two_state_run(x.unsqueeze(-1), coeffs, impl="loop")
    current = (psi * layer.weight.detach()).sum(2) + layer.bias.detach()
    assert torch.allclose(rec.v, current - torch.cat([torch.zeros_like(rec.r[:1]), rec.r[:-1]]), atol=1e-5)
    spikes.sum().backward()
    assert layer.psp.decay_m.grad is not None and layer.weight.grad.abs().sum() > 0


def _iir(x, tau_m=4.0, tau_s=1.0):
    return dual_exp_iir_run(x, DualExpIIRParams(tau_m, tau_s).coefficients((), torch.float64), impl="loop")


def test_snntorch_synaptic_matches_dual_exp_psp():
    snn = pytest.importorskip("snntorch")
    p = DualExpIIRParams(4, 1)
    x = torch.rand(40, 3, dtype=torch.float64)
    lif = snn.Synaptic(alpha=p.ds, beta=p.dm, threshold=1e9, reset_mechanism="none")
    syn = mem = torch.zeros(3, dtype=torch.float64)
    mems = []
    for t in range(40):
        _, syn, mem = lif(x[t], syn, mem)
        mems.append(mem)
    ours = _iir(x)
    assert torch.allclose(torch.stack(mems) * (p.dm - p.ds), ours, atol=1e-5)


def test_norse_leaky_integrator_matches_dual_exp_psp():
    pytest.importorskip("norse")
    from norse.torch.functional.leaky_integrator import LIParameters, LIState, li_feed_forward_step

    p = DualExpIIRParams(4, 1)
    x = torch.rand(40, 3, dtype=torch.float64)
    params = LIParameters(tau_syn_inv=torch.tensor(1 - p.ds, dtype=torch.float64),
                          tau_mem_inv=torch.tensor(1 - p.dm, dtype=torch.float64),
                          v_leak=torch.tensor(0.0, dtype=torch.float64))
    state = LIState(v=torch.zeros(3, dtype=torch.float64), i=torch.zeros(3, dtype=torch.float64))
    vs = []
    for t in range(40):
        v, state = li_feed_forward_step(x[t], state, params, dt=1.0)
        vs.append(v)
    assert torch.allclose(torch.stack(vs) * (p.dm - p.ds) / (1 - p.dm), _iir(x), atol=1e-5)


def test_one_pass_filter_function_passes_gradcheck_and_matches_both_implementations():
    from workbench.models.snn_layers import iir2_fast

    g = torch.Generator().manual_seed(5)
    x = torch.rand(9, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    coeffs = [torch.tensor(v, dtype=torch.float64).repeat(3).requires_grad_() for v in (1.1, -0.3, 0.4)]
    assert torch.autograd.gradcheck(iir2_fast, (x, *coeffs))
    c = DualExpIIRParams(4, 1).coefficients(3, torch.float64)
    for impl in ("loop", "conv"):
        assert torch.allclose(iir2_fast(x, *c), dual_exp_iir_run(x, c, impl=impl), atol=1e-10)
    unstable = c._replace(alpha_1=torch.full((3,), 2.1, dtype=torch.float64))  # a pole above 1
    assert torch.allclose(iir2_fast(x, *unstable), dual_exp_iir_run(x, unstable, impl="loop"), atol=1e-9)


def test_auto_and_conv_layers_agree():
    torch.manual_seed(6)
    auto, conv = IIRDense(8, 5, psp="low_pass"), IIRDense(8, 5, psp="low_pass", impl="conv")
    conv.load_state_dict(auto.state_dict())
    x = torch.rand(15, 3, 8)
    _, rec_a = auto(x, record=True)
    _, rec_c = conv(x, record=True)
    assert torch.allclose(rec_a.psp, rec_c.psp, atol=1e-5)


def test_time_constant_input_shortcut_is_exact_in_values_and_gradients():
    torch.manual_seed(7)
    a, b = IIRDense(6, 4), IIRDense(6, 4)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        a.linear.weight.mul_(4.0)
        b.linear.weight.mul_(4.0)
    img = torch.rand(3, 6)
    view = img.unsqueeze(0).expand(20, 3, 6)  # stride 0 in time: the shortcut
    _, rec_view = a(view, record=True)
    _, rec_full = b(view.contiguous(), record=True)
    assert view.stride(0) == 0 and torch.allclose(rec_view.psp, rec_full.psp, atol=1e-6)
    w = torch.randn(20, 3, 4)
    (a(view) * w).sum().backward()
    (b(view.contiguous()) * w).sum().backward()
    for p, q in zip(a.parameters(), b.parameters()):
        assert float((p.grad - q.grad).abs().max()) <= 1e-5 * float(q.grad.abs().max())

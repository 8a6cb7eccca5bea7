"""Surrogate spike functions: strict Heaviside forward, backward = derivative of the smooth counterpart."""

import math

import pytest
import torch

from workbench.neurons.surrogate import SURROGATES, SpikeFunction, _autograd_class, resolve_spike_fn, surrogate

NAMES = sorted(SURROGATES)


def backward_grad(fn: SpikeFunction, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    fn(x).sum().backward()
    return x.grad


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_strict_heaviside(name):
    fn = surrogate(name)
    x = torch.tensor([-1.0, -1e-12, 0.0, 1e-12, 1.0], dtype=torch.float64)
    out = fn(x)
    assert out.dtype == torch.float64
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_finite_differences_of_smooth_counterpart(name):
    fn = surrogate(name)
    x = torch.linspace(-2.0, 2.0, 801, dtype=torch.float64)
    if name == "rectangle":  # the rectangle's counterpart has kinks at +-width/2: skip those points
        x = x[((x.abs() - 0.5).abs() > 1e-3)]
    h = 1e-7
    finite_diff = (fn.smooth(x + h) - fn.smooth(x - h)) / (2 * h)
    torch.testing.assert_close(backward_grad(fn, x), finite_diff, rtol=0, atol=1e-5)
    torch.testing.assert_close(fn.grad(x), backward_grad(fn, x), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_non_default_parameter_is_used(name):
    kind = SURROGATES[name]
    fn = surrogate(name, **{kind.param: kind.default * 2.5})
    x = torch.linspace(-1.0, 1.0, 41, dtype=torch.float64) + 0.013
    finite_diff = (fn.smooth(x + 1e-7) - fn.smooth(x - 1e-7)) / 2e-7
    torch.testing.assert_close(backward_grad(fn, x), finite_diff, rtol=0, atol=1e-5)


def test_snn_iir_gaussian_oracles():
    # snn_iir §2.1: g(v) with threshold 1 and sigma 0.4.
    fn = surrogate("gaussian", sigma=0.4)
    v = torch.tensor([1.0, 0.5, 1.5, 0.0, 2.0, -1.0], dtype=torch.float64)
    expected = torch.tensor([0.997356, 0.456623, 0.456623, 0.043821, 0.043821, 3.7168e-6], dtype=torch.float64)
    torch.testing.assert_close(backward_grad(fn, v - 1.0), expected, rtol=1e-4, atol=1e-6)
    assert surrogate("gaussian") == fn  # sigma 0.4 is the default


def test_rectangle_matches_dasbe_and_gust():
    # gust §2.4: gradient 1 at v in {0.6, 1.0, 1.4}, 0 at 0.4 and 1.6 (threshold 1).
    v = torch.tensor([0.6, 1.0, 1.4, 0.4, 1.6])
    assert backward_grad(surrogate("rectangle"), v - 1.0).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_rectangle_has_unit_area():
    fn = surrogate("rectangle", width=0.25)
    x = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    assert abs(float(torch.trapezoid(fn.grad(x), x)) - 1.0) < 1e-3
    assert float(fn.grad(torch.tensor(0.0))) == pytest.approx(4.0)


def test_gradient_scales_upstream_gradient():
    fn = surrogate("arctan")
    x = torch.tensor([0.1, -0.3], requires_grad=True)
    (fn(x) * torch.tensor([2.0, -3.0])).sum().backward()
    torch.testing.assert_close(x.grad, fn.grad(x.detach()) * torch.tensor([2.0, -3.0]))


def test_autograd_classes_are_cached():
    assert _autograd_class("gaussian") is _autograd_class("gaussian")
    x = torch.zeros(3, requires_grad=True)
    a = surrogate("gaussian", sigma=0.3)(x)
    b = surrogate("gaussian", sigma=0.7)(x)
    assert type(a.grad_fn) is type(b.grad_fn)
    assert type(a.grad_fn) is not type(surrogate("arctan")(x).grad_fn)


def test_spike_function_is_hashable_value_object():
    assert hash(surrogate("fast_sigmoid")) == hash(SpikeFunction("fast_sigmoid", 25.0))
    assert "sigma=0.4" in repr(surrogate("gaussian"))
    assert resolve_spike_fn("arctan") == surrogate("arctan")
    smooth = surrogate("gaussian").smooth
    assert resolve_spike_fn(smooth) is smooth


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: surrogate("heaviside"), "rectangle"),
        (lambda: surrogate("gaussian", width=1.0), "sigma"),
        (lambda: surrogate("gaussian", sigma=-0.1), "> 0"),
        (lambda: surrogate("rectangle", width=math.nan), "finite"),
        (lambda: resolve_spike_fn(3.0), "callable"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()

"""PCNN baseline: kernel, conv vs dense coupling, one-step formula, inhibition, batching, determinism."""

import math

import pytest
import torch

from workbench.neurons.pcnn import (
    PCNN,
    PCNNParams,
    PCNNState,
    coupling_kernel,
    dense_coupling,
    linking_input,
    pcnn_step,
)


def test_kernel_values():
    w = coupling_kernel()
    assert w.shape == (9, 9)
    assert float(w[4, 4]) == 0.0
    assert float(w[4, 5]) == pytest.approx(math.exp(-1))
    assert float(w[3, 3]) == pytest.approx(math.exp(-math.sqrt(2)))
    assert float(w[0, 0]) == pytest.approx(math.exp(-math.sqrt(32)))
    assert float(w[4, 0]) == pytest.approx(math.exp(-4))
    assert bool((w.flatten()[torch.arange(81) != 40] > 0).all())
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.t())
    assert coupling_kernel(radius=2).shape == (5, 5)


@pytest.mark.parametrize("height, width", [(7, 9), (12, 12)])
def test_conv_equals_dense_coupling(height, width):
    # 7x9 is smaller than the kernel (zero padding everywhere); 12x12 has pairs beyond the radius.
    y = (torch.rand(2, height, width, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    dense = dense_coupling(height, width)
    assert float(dense[0, 0, 5, 5]) == 0.0 and float(dense[0, 0, 4, 4]) == pytest.approx(math.exp(-math.sqrt(32)))
    expected = torch.einsum("bij,ijkl->bkl", y, dense)
    torch.testing.assert_close(linking_input(y), expected)


def test_step_matches_the_written_formula():
    g = torch.Generator().manual_seed(1)
    p = PCNNParams()
    images = (torch.rand(2, 8, 8, generator=g) < 0.5).double()
    y_prev = (torch.rand(2, 8, 8, generator=g) < 0.2).double()
    y_prev[1] = 0  # image 1 had no spike: no global inhibition there
    linking = torch.rand(2, 8, 8, generator=g, dtype=torch.float64)
    theta = torch.rand(2, 8, 8, generator=g, dtype=torch.float64) * 3
    state = PCNNState(y_prev, linking, theta, torch.zeros_like(theta))
    noise = torch.rand(2, 8, 8, generator=g, dtype=torch.float64)
    y, new = pcnn_step(images, state, p, noise)

    feeding = images * (noise < 0.8)
    linking = state.linking * math.exp(-1 / 2) + torch.einsum("bij,ijkl->bkl", y_prev, dense_coupling(8, 8))
    inhibition = torch.tensor([3.5, 0.0], dtype=torch.float64)[:, None, None]
    u = feeding * (1 + 3 * linking) - inhibition
    theta = state.theta * math.exp(-1 / 6) + 10 * y_prev
    torch.testing.assert_close(new.linking, linking)
    torch.testing.assert_close(new.u, u)
    torch.testing.assert_close(new.theta, theta)
    assert torch.equal(y, (u - theta) >= 0) and y.dtype == torch.bool


def test_uniform_image_first_volley_and_background():
    # Without dropout and with L = 0, every on-pixel fires when 2 exp(-(t+1)/6) <= 1, i.e. first at t = 4.
    image = torch.zeros(1, 12, 12)
    image[0, 3:9, 2:10] = 1.0
    model = PCNN(PCNNParams(keep_prob=1.0))
    spikes, rec = model(image, T=40, generator=torch.Generator().manual_seed(0), record=True)
    on = image.reshape(-1) > 0
    assert spikes[:4].sum() == 0
    assert bool(spikes[4, 0, on].all())
    assert spikes[:, 0, ~on].sum() == 0  # background (x = 0) never fires: U <= 0 < theta
    assert set(rec) == {"U", "theta", "linking"} and rec["U"].shape == (40, 1, 144)


def test_global_inhibition_hits_every_pixel_of_that_image_only():
    p = PCNNParams()
    images = torch.ones(2, 12, 12)
    y_prev = torch.zeros(2, 12, 12)
    y_prev[0, 0, 0] = 1.0
    zeros = torch.zeros(2, 12, 12)
    state = PCNNState(y_prev, zeros, torch.full((2, 12, 12), 0.1), zeros)
    _, new = pcnn_step(images, state, p, zeros)  # noise 0 < keep_prob: nothing dropped
    assert float(new.u[0, 11, 11]) == pytest.approx(1.0 - 3.5)  # far from the spike: inhibition only
    assert float(new.u[0, 0, 1]) == pytest.approx(1.0 + 3.0 * math.exp(-1) - 3.5)
    assert torch.equal(new.u[1], torch.ones(12, 12))
    # inhibition is min(sum y, 1) * w_I: two spikes inhibit no more than one
    y_prev[0, 11, 0] = 1.0
    _, two = pcnn_step(images, PCNNState(y_prev, zeros, state.theta, zeros), p, zeros)
    assert float(two.u[0, 11, 11]) == pytest.approx(1.0 - 3.5)


def test_batch_equals_per_image_loop():
    g = torch.Generator().manual_seed(2)
    images = (torch.rand(3, 10, 10, generator=g) < 0.4).float()
    noise = torch.rand(60, 3, 10, 10, generator=g)
    model = PCNN()
    batched = model(images, T=60, noise=noise)
    assert batched.shape == (60, 3, 100) and batched.dtype == torch.bool and batched.sum() > 0
    for b in range(3):
        assert torch.equal(batched[:, b : b + 1], model(images[b : b + 1], T=60, noise=noise[:, b : b + 1]))


def test_determinism_given_a_seed():
    images = (torch.rand(2, 10, 10, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    run = lambda seed: PCNN()(images, T=50, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_flat_images_and_inference_mode():
    images = (torch.rand(2, 6, 7, generator=torch.Generator().manual_seed(4)) < 0.5).float()
    noise = torch.rand(20, 2, 42, generator=torch.Generator().manual_seed(5))
    a = PCNN()(images, T=20, noise=noise)
    b = PCNN()(images.reshape(2, 42), T=20, image_shape=(6, 7), noise=noise)
    assert torch.equal(a, b)
    assert a.is_inference() and not a.requires_grad


def test_shapes_preset():
    p = PCNNParams.shapes()
    assert (p.v_theta, p.tau_theta, p.beta, p.w_i) == (6.0, 8.0, 3.0, 3.5)
    assert PCNNParams().v_theta == 10.0 and PCNNParams().tau_theta == 6.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: PCNNParams(keep_prob=1.5), "keep_prob"),
        (lambda: PCNNParams(tau_l=0.0), "tau_l"),
        (lambda: PCNNParams(radius=0), "radius"),
        (lambda: PCNN()(torch.ones(5), T=3), r"\[B, H, W\]"),
        (lambda: PCNN()(torch.ones(2, 12), T=3), "image_shape"),
        (lambda: PCNN()(torch.ones(2, 12), T=3, image_shape=(3, 3)), "9 pixels"),
        (lambda: PCNN()(torch.ones(2, 3, 4), T=3, noise=torch.rand(3, 2, 5)), "noise"),
    ],
)
def test_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()

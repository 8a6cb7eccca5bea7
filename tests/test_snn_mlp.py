"""SNN-IIR MNIST classifier model and input encoders (spec §3.1-§3.3)."""

import pytest
import torch

from workbench.models.snn_mlp import MODELS, SNNMLP, build_model, predict, spike_counts, tie_mask
from workbench.neurons.encoders import BernoulliEncoder, DirectEncoder, bernoulli_encode, direct_encode


@pytest.mark.parametrize("name, count", [("mlp1", 653_362), ("mlp2", 649_794), ("mlp1_poisson", 653_362)])
def test_trainable_parameter_counts_match_the_spec(name, count):
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count
    assert model.input == MODELS[name].input


def test_dropout_acts_on_spikes_and_only_in_training():
    torch.manual_seed(0)
    model = SNNMLP("mlp1", sizes=(20, 30, 30, 4), T=10)
    with torch.no_grad():
        for layer in model.layers:
            layer.linear.weight.mul_(8.0)
    x = direct_encode(torch.rand(6, 20), 10)
    model.eval()
    out_eval, spikes, _ = model(x, record=True)
    assert set(torch.unique(spikes[0]).tolist()) <= {0.0, 1.0}
    model.train()
    a = model(x, generator=torch.Generator().manual_seed(5))
    b = model(x, generator=torch.Generator().manual_seed(5))
    c = model(x, generator=torch.Generator().manual_seed(6))
    assert a.sum() > 0 and torch.equal(a, b) and not torch.equal(a, c)
    hidden = []
    model.layers[1].register_forward_hook(lambda m, inp, out: hidden.append(inp[0]))
    model(x, generator=torch.Generator().manual_seed(5))
    values = set(torch.unique(hidden[0]).tolist())
    assert len(values) == 2 and 0.0 in values and max(values) == pytest.approx(1 / 0.7)


def test_readout_ties_go_to_the_lowest_index():
    counts = torch.tensor([[1.0, 3, 3, 0], [2, 2, 2, 2], [0, 0, 0, 5]])
    assert predict(counts).tolist() == [1, 0, 3]
    assert tie_mask(counts).tolist() == [True, True, False]
    assert torch.equal(spike_counts(torch.ones(25, 2, 10)), torch.full((2, 10), 25.0))


def test_direct_encoding_repeats_the_analog_image():
    images = torch.rand(3, 5)
    x = DirectEncoder(T=7)(images)
    assert x.shape == (7, 3, 5) and torch.equal(x[4], images)
    with pytest.raises(ValueError, match="255"):
        direct_encode(images * 255, 7)


def test_bernoulli_encoding_rate_and_batch_invariance():
    images = torch.tensor([[0.0, 0.25, 1.0], [0.5, 0.5, 0.5]]).repeat(1, 400)
    x = bernoulli_encode(images, 50, seed=3, image_ids=torch.tensor([10, 11]))
    assert set(torch.unique(x).tolist()) == {0.0, 1.0}
    rates = x.mean(0)[0].reshape(400, 3).mean(0)
    assert torch.allclose(rates, torch.tensor([0.0, 0.25, 1.0]), atol=0.02)
    alone = bernoulli_encode(images[1:], 50, seed=3, image_ids=torch.tensor([11]))
    assert torch.equal(alone[:, 0], x[:, 1])  # same image id, other batch position: same spikes
    other = BernoulliEncoder(T=50, seed=4)(images, torch.tensor([10, 11]))
    assert not torch.equal(other, x)
    shifted = bernoulli_encode(images, 50, seed=3, image_ids=torch.tensor([10, 11]), step_offset=50)
    assert not torch.equal(shifted, x)


def test_bad_model_name_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="mlp1"):
        build_model("mlp3")

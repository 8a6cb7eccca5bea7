"""MLP DAE: layer structure, state-dict loading (ours and the authors'), training recipe."""

from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.data.bars import single_bars
from workbench.models.dae import DASBE_LR_STEPS, MLPDAE, _apply_lr_steps, train_dae

AUTHORS_BARS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "dasbe" / "bars_dae.pt"


def all_single_bars() -> torch.Tensor:
    """The 40 distinct single-bar images (20 rows, then 20 columns), flattened."""
    x = torch.zeros(40, 20, 20)
    for i in range(20):
        x[i, i, :] = 1
        x[20 + i, :, i] = 1
    return x.reshape(40, 400)


def test_forward_shapes_and_ranges():
    dae = MLPDAE((400, 256, 400), seed=0)
    y, h = dae(torch.rand(5, 400))
    assert y.shape == (5, 400) and h.shape == (5, 256)
    assert bool(((y > 0) & (y < 1)).all()) and bool(((h > 0) & (h < 1)).all())  # sigmoid code and output


def test_deep_dae_uses_relu_inside_and_sigmoid_code():
    dae = MLPDAE((784, 512, 400, 512, 784), seed=0)
    assert [l.out_features for l in dae.encoder] == [512, 400]
    assert [l.out_features for l in dae.decoder] == [512, 784]
    x = torch.rand(3, 784)
    inner = torch.relu(dae.encoder[0](x))
    assert torch.allclose(dae.encode(x), torch.sigmoid(dae.encoder[1](inner)))
    relu_code = MLPDAE((784, 512, 400, 512, 784), hidden_act="relu", seed=0)
    assert float(relu_code(x)[1].detach().min()) >= 0


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = MLPDAE(seed=4), MLPDAE(seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_bad_sizes_and_activation():
    with pytest.raises(ValueError, match="odd length"):
        MLPDAE((400, 256))
    with pytest.raises(ValueError, match="hidden_act"):
        MLPDAE(hidden_act="tanh")


def test_from_state_dict_plain_layout_matches_formula():
    torch.manual_seed(0)
    sd = {"encoder.weight": torch.randn(16, 30), "encoder.bias": torch.randn(16),
          "decoder.weight": torch.randn(30, 16), "decoder.bias": torch.randn(30)}
    dae = MLPDAE.from_state_dict(sd)
    assert dae.sizes == (30, 16, 30)
    x = torch.rand(4, 30)
    h = torch.sigmoid(x @ sd["encoder.weight"].T + sd["encoder.bias"])
    expected = torch.sigmoid(h @ sd["decoder.weight"].T + sd["decoder.bias"])
    assert torch.allclose(dae(x)[0], expected, atol=1e-6)


def test_from_state_dict_round_trip_of_our_layout():
    dae = MLPDAE((50, 30, 10, 30, 50), seed=1)
    again = MLPDAE.from_state_dict(dae.state_dict())
    assert again.sizes == dae.sizes
    x = torch.rand(2, 50)
    assert torch.equal(again(x)[0], dae(x)[0])


def test_from_state_dict_errors_name_the_problem():
    good = MLPDAE((20, 8, 20), seed=0).state_dict()
    with pytest.raises(ValueError, match="unknown state dict key 'encoder.0.scale'"):
        MLPDAE.from_state_dict({**good, "encoder.0.scale": torch.ones(1)})
    with pytest.raises(ValueError, match="layer 1 expects"):
        MLPDAE.from_state_dict({**good, "decoder.0.weight": torch.zeros(20, 9)})
    with pytest.raises(ValueError, match="shape"):
        MLPDAE.from_state_dict({**good, "decoder.0.bias": torch.zeros(19)})
    bad = dict(good)
    bad["encoder.0.weight"] = good["encoder.0.weight"].clone()
    bad["encoder.0.weight"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        MLPDAE.from_state_dict(bad)
    with pytest.raises(ValueError, match="not a tensor"):
        MLPDAE.from_state_dict({**good, "encoder.0.bias": [0.0] * 8})


def test_training_learns_single_bars_and_keeps_the_best_state():
    images, _ = single_bars(200, seed=0)
    x = torch.as_tensor(images.reshape(200, -1), dtype=torch.float32)
    dae = MLPDAE(seed=0)
    history = train_dae(dae, x, epochs=40, batch_size=32, seed=0, progress=False)
    assert history.epochs == 40 and len(history.val_loss) == 40
    assert history.val_loss[history.best_epoch] == history.best_val_loss == min(history.val_loss)
    assert history.train_loss[-1] < history.train_loss[0] / 3
    with torch.no_grad():  # the model holds the best weights: recompute its validation score
        val = x[180:]
        score = float(torch.nn.functional.binary_cross_entropy(dae(val)[0], val))
        recon = dae(all_single_bars())[0]
    assert score == pytest.approx(history.best_val_loss, rel=1e-5)
    assert ((recon > 0.5) == (all_single_bars() > 0.5)).float().mean() > 0.98


def test_training_is_deterministic_given_the_seed():
    x = torch.as_tensor(single_bars(40, seed=2)[0].reshape(40, -1), dtype=torch.float32)
    runs = []
    for _ in range(2):
        dae = MLPDAE((400, 32, 400), seed=0)
        runs.append((train_dae(dae, x, epochs=3, batch_size=8, seed=5, progress=False).train_loss, dae))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(p, q) for p, q in zip(runs[0][1].parameters(), runs[1][1].parameters()))


def test_early_stopping_after_patience_epochs_without_improvement():
    x = torch.as_tensor(single_bars(40, seed=3)[0].reshape(40, -1), dtype=torch.float32)
    history = train_dae(MLPDAE((400, 16, 400), seed=0), x, epochs=50, lr=0.0, patience=3, progress=False)
    assert history.stopped_early and history.best_epoch == 0 and history.epochs == 5  # epochs 1..4 fail


def test_lr_steps_follow_the_spec_schedule():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=0.01)
    rates = []
    for epoch in range(200):
        rates.append(opt.param_groups[0]["lr"])
        _apply_lr_steps(opt, epoch, DASBE_LR_STEPS)
    assert rates[60] == 0.01 and rates[61] == 0.005 and rates[101] == 0.0025
    assert rates[151] == pytest.approx(6.25e-4) and rates[171] == pytest.approx(6.25e-5)


def test_training_input_checks():
    with pytest.raises(ValueError, match=r"\[n, N\]"):
        train_dae(MLPDAE(seed=0), torch.zeros(10, 20, 20), epochs=1, progress=False)
    with pytest.raises(ValueError, match="val_fraction"):
        train_dae(MLPDAE(seed=0), torch.zeros(3, 400), epochs=1, val_fraction=0.1, progress=False)


@pytest.mark.skipif(not AUTHORS_BARS.exists(), reason="../shared/reference/dasbe not present")
def test_authors_bars_weights_reconstruct_single_bars():
    dae = MLPDAE.from_state_dict(torch.load(AUTHORS_BARS, weights_only=True))
    assert dae.sizes == (400, 256, 400)
    x = all_single_bars()
    with torch.no_grad():
        clean = dae(x)[0]
        keep = torch.as_tensor(np.random.RandomState(0).rand(40, 400) >= 0.7, dtype=torch.float32)
        dropped = dae(x * keep)[0]
    assert ((clean > 0.5) == (x > 0.5)).float().mean() > 0.995
    assert float(torch.nn.functional.binary_cross_entropy(clean, x)) < 0.02
    assert ((dropped > 0.5) == (x > 0.5)).float().mean() > 0.99  # completes a bar from 30 % of its pixels

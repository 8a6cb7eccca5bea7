"""MLP DAE: layer structure, state-dict loading (ours and the authors'), training recipe."""

import json
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


# --- the generic epoch loop -----------------------------------------------------------------------


def test_on_epoch_callback_sees_every_epoch_and_history_round_trips():
    from workbench.models.dae import TrainHistory

    x = torch.as_tensor(single_bars(40, seed=4)[0].reshape(40, -1), dtype=torch.float32)
    seen = []
    history = train_dae(MLPDAE((400, 16, 400), seed=0), x, epochs=4, batch_size=8, progress=False,
                        on_epoch=lambda end: seen.append((end.epoch, end.val_loss, end.improved,
                                                          end.optimiser.param_groups[0]["lr"])))
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert [s[1] for s in seen] == history.val_loss and seen[0][2]
    assert history.lr == [0.01] * 4
    again = TrainHistory.from_dict(json.loads(json.dumps(history.to_dict())))
    assert again == history


def test_fit_epochs_applies_the_rate_step_before_the_callback_and_resumes():
    from workbench.models.dae import TrainHistory, fit_epochs

    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    vals = iter([3.0, 2.0, 2.5, 2.5, 2.5, 2.5])
    rates = []
    history = fit_epochs(model, opt, lambda e: 0.0, lambda: next(vals), epochs=3, patience=10,
                         lr_steps=((1, 0.5),), progress=False,
                         on_epoch=lambda end: rates.append(end.optimiser.param_groups[0]["lr"]))
    assert rates == [1.0, 0.5, 0.5] and history.lr == [1.0, 1.0, 0.5] and history.best_epoch == 1
    resumed = fit_epochs(model, opt, lambda e: 0.0, lambda: next(vals), epochs=5, patience=1,
                         lr_steps=((1, 0.5),), progress=False, history=TrainHistory.from_dict(history.to_dict()))
    assert resumed.epochs == 4 and resumed.stopped_early  # epoch 3 is 2 > patience epochs after the best


# --- spiking-hidden DAEs (bcdae, CLRNET) ------------------------------------------------------------

from workbench.models.spiking_dae import (HiddenState, SpikingDAE, bcdae, bcdae_loss, clr_loss,  # noqa: E402
                                          clrnet, contractive_penalty, hidden_spikes)
from workbench.models.rbae import RBAE, corrupt_sequences, next_frame_mse, tbptt_step  # noqa: E402


def tiny_spiking(act="relu", refractory=3, seed=0):
    return SpikingDAE((30, 20, 10, 20, 30), hidden_act=act, refractory=refractory, seed=seed)


def test_spiking_dae_shapes_and_spike_rule():
    model = tiny_spiking()
    a = (torch.rand(6, 30) < 0.3).float()
    noise = torch.rand(6, 10)
    recon, spikes, state = model(a, None, noise)
    assert recon.shape == (6, 30) and spikes.shape == (6, 10) and state.refractory.shape == (6, 10)
    assert state.refractory.dtype == torch.int32
    u = model.membrane(a)
    assert torch.equal(spikes, (u + noise > 1).float())  # fresh state: nothing is refractory yet
    assert torch.allclose(recon, model.decode(spikes))
    recon_t, spikes_t, u_t = model.train_forward(a, noise)
    assert torch.equal(spikes_t, spikes) and torch.equal(u_t, u)
    with pytest.raises(ValueError, match="noise"):
        model(a)
    with pytest.raises(ValueError, match="shape"):
        model(a, None, torch.rand(6, 9))


def test_presets_of_the_spiking_nets_have_the_spec_sizes():
    b, c = bcdae(seed=0), clrnet(seed=0)
    assert b.sizes == (2304, 1000, 500, 1000, 2304) and b.hidden_act == "relu" and b.refractory == 12
    assert c.sizes == (784, 600, 400, 350, 1600, 350, 400, 600, 784) and c.hidden_act == "sigmoid"
    assert c.n_hidden == 1600 and b.n_hidden == 500


def test_hidden_refractory_state_is_explicit_and_per_row():
    model = tiny_spiking(refractory=3)
    with torch.no_grad():
        model.encoder[-1].bias.fill_(50.0)  # u >> 1: every free unit fires
    a = torch.zeros(2, 30)
    state = model.initial_state(2)
    fired = []
    for step in range(9):
        old, before = state, state.refractory.clone()
        _, s, state = model(a, old, torch.rand(2, 10))
        assert torch.equal(old.refractory, before)  # the step never edits its input state
        fired.append(bool(s[0, 0]))
    assert fired == [True, False, False, False, True, False, False, False, True]  # r = 3 silent calls
    # Rows are independent: a fresh row next to a refractory one fires at once.
    state = HiddenState(torch.stack([state.refractory[0], torch.zeros(10, dtype=torch.int32)]))
    _, s, _ = model(a, state, torch.rand(2, 10))
    assert s[1].all() and not s[0].any()
    # Without a counter (training mode) the same unit fires every call.
    assert all(bool(model.train_forward(a, torch.rand(2, 10))[1].all()) for _ in range(3))


def test_surrogate_gradient_is_the_rectangle_around_threshold():
    u = torch.tensor([0.2, 0.6, 0.9, 1.2, 1.6], requires_grad=True)
    noise = torch.full((5,), 0.2)
    s = hidden_spikes(u, noise)
    s.sum().backward()
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert u.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # |u + U - 1| < 0.5


@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_contractive_penalty_is_the_jacobian_norm_of_the_last_encoder_layer(act):
    model = tiny_spiking(act=act).double()
    a = torch.rand(3, 30, dtype=torch.float64)
    z = torch.relu(model.encoder[0](a))
    layer = model.encoder[-1]
    f = (lambda v: torch.relu(layer(v))) if act == "relu" else (lambda v: torch.sigmoid(layer(v)))
    expected = sum(float(torch.autograd.functional.jacobian(f, z[i]).pow(2).sum()) for i in range(3))
    assert float(contractive_penalty(model, a).detach()) == pytest.approx(expected, rel=1e-9)


def _adam_steps(model, loss_fn, steps: int, lr: float = 1e-2) -> float:
    """Run ``steps`` Adam updates on ``loss_fn()`` and return the loss of the last step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_bcdae_loss_gradients_reach_every_layer_and_adam_reduces_it():
    torch.manual_seed(0)
    model = tiny_spiking(seed=1)
    clean = (torch.rand(16, 30) < 0.3).float()
    noisy, noise = clean * (torch.rand(16, 30) >= 0.3).float(), torch.rand(16, 10)
    loss = bcdae_loss(model, noisy, clean, noise)
    loss.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.parameters())
    assert _adam_steps(model, lambda: bcdae_loss(model, noisy, clean, noise), 100) < 0.7 * float(loss.detach())


def test_clr_loss_matches_its_definition_and_training_reduces_it():
    torch.manual_seed(0)
    model = tiny_spiking(act="sigmoid", seed=2)
    clean = [(torch.rand(4, 30) < p).float() for p in (0.2, 0.5)]
    noise = torch.rand(8, 10)
    loss = clr_loss(model, clean, clean, noise)
    recon, s, _ = model.train_forward(torch.cat(clean), noise)
    bce = sum(torch.nn.functional.binary_cross_entropy(r, c) for r, c in zip(recon.split(4), clean))
    unit = s / s.norm(dim=1, keepdim=True).clamp_min(1e-8)
    target = torch.block_diag(torch.ones(4, 4), torch.ones(4, 4))
    expected = bce + ((unit @ unit.T / 0.5 - target) ** 2).sum()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert _adam_steps(model, lambda: clr_loss(model, clean, clean, noise), 30) < 0.7 * float(loss.detach())


# --- rbae ---------------------------------------------------------------------------------------------


def test_rbae_step_follows_the_recurrence():
    model = RBAE((30, 20, 8), seed=0)
    assert [l.out_features for l in model.encoder] == [20, 8] and [l.out_features for l in model.decoder] == [20, 30]
    x0, x1 = torch.rand(2, 30), torch.rand(2, 30)
    y0, h0 = model.step(x0)
    assert torch.allclose(h0, model.encode(x0)) and torch.allclose(y0, model.decode(torch.sigmoid(h0 + model.bias)))
    y1, h1 = model.step(x1, h0)
    assert torch.allclose(y1, model.decode(torch.sigmoid(h0 @ model.recurrent + model.encode(x1) + model.bias)))
    ys, last = model(torch.stack([x0, x1]))
    assert ys.shape == (2, 2, 30) and torch.allclose(ys[1], y1) and torch.allclose(last, h1)
    big = RBAE(seed=0)
    assert big.recurrent.shape == (300, 300) and 0.95 < float(big.recurrent.detach().std()) < 1.05
    with pytest.raises(ValueError, match="h_prev"):
        model.step(x0, torch.zeros(2, 7))


def test_rbae_corruption_blanks_frames_drops_pixels_and_adds_salt():
    frames = torch.ones(50, 3, 400)
    g = torch.Generator().manual_seed(0)
    blanked = corrupt_sequences(frames, g, pixel_dropout=0.0, salt=0.0)
    assert ((blanked.sum(dim=2) == 0).sum(dim=0) == 11).all()  # floor(0.2 * 50) + 1 frames per sequence
    noisy = corrupt_sequences(frames, torch.Generator().manual_seed(1), drop_fraction=0.0)
    kept = noisy[noisy.sum(dim=2) > 0]
    assert set(noisy.unique().tolist()) <= {0.0, 1.0}
    assert 0.49 < float(kept.mean()) < 0.56  # (1 - 0.5) + 0.5 * 0.05 salt
    salt = corrupt_sequences(torch.zeros(10, 3, 400), torch.Generator().manual_seed(2))
    assert 0.04 < float(salt.mean()) < 0.06
    again = corrupt_sequences(frames, torch.Generator().manual_seed(1), drop_fraction=0.0)
    assert torch.equal(noisy, again)


def test_rbae_truncated_bptt_learns_to_predict_the_next_frame():
    torch.manual_seed(0)
    T, B, N = 25, 4, 16
    clean = torch.zeros(T, B, N)
    for t in range(T):  # a pixel walking to the right, one step per frame
        clean[t, :, t % N] = 1
    model = RBAE((N, 24, 12), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(next_frame_mse(model, clean))
    losses = [tbptt_step(model, clean, clean, opt, window=10) for _ in range(150)]
    assert float(next_frame_mse(model, clean)) < 0.5 * first and losses[-1] < losses[0]
    assert model.recurrent.grad is not None and float(model.recurrent.grad.abs().sum()) > 0

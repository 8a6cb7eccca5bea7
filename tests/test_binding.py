"""DASBE binding loop: spec §2.3 properties, delay line, determinism, batch invariance, reference path."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from workbench import rng
from workbench.binding import dasbe
from workbench.binding.dasbe import DasbeParams, init_delay_line, run_binding
from workbench.data.bars import generate_bars
from workbench.models.dae import MLPDAE
from workbench.rng import Stream


class ConstantDAE(nn.Module):
    """Reconstructs every window as the same constant, so R = value from iteration 1 on."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.full_like(a, self.value)


class PatternDAE(nn.Module):
    """Call n returns 2 * P_n for a fixed random binary pattern P_n, and records the window it was given."""

    def __init__(self, steps: int, rows: int, n: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.patterns = torch.rand(steps, rows, n, generator=gen) < 0.3
        self.windows: list[torch.Tensor] = []

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.windows.append(a.clone())
        return 2.0 * self.patterns[len(self.windows) - 1].to(a.dtype), None


@pytest.fixture(scope="module")
def bars():
    return generate_bars(4, np.random.RandomState(0))


@pytest.fixture(scope="module")
def random_dae():
    return MLPDAE((400, 64, 400), seed=0)


def spike_times(spikes: torch.Tensor, row: int, pixel: int) -> np.ndarray:
    return torch.nonzero(spikes[:, row, pixel])[:, 0].numpy()


def test_params_presets_and_validation():
    assert (DasbeParams.bars().delay, DasbeParams.bars().refractory) == (54, 6)
    assert (DasbeParams.corners().delay, DasbeParams.corners().refractory) == (28, 8)
    assert DasbeParams.bars(n_iter=7).n_steps == 7 * 54
    assert DasbeParams().mask_probabilities() == (0.5, 0.5)
    with pytest.raises(ValueError, match="retention"):
        DasbeParams(retention=(0.5, 0.5, 0.25))
    with pytest.raises(ValueError, match="retention"):
        DasbeParams(retention=(1.0, 0.2, 0.5))
    with pytest.raises(ValueError, match="delay"):
        DasbeParams(delay=0)


def test_delay_line_init_is_normalised_and_batch_invariant():
    seeds, ids = torch.tensor([3, 3, 3]), torch.tensor([0, 1, 2])
    ring = init_delay_line(seeds, ids, 54, 400)
    assert ring.shape == (54, 3, 400) and float(ring.min()) >= 0
    assert torch.allclose(ring.sum(dim=0), torch.ones(3, 400), atol=1e-5)
    alone = init_delay_line(seeds[1:2], ids[1:2], 54, 400)
    assert torch.equal(ring[:, 1:2], alone)


def test_background_never_fires_and_record_layout(bars, random_dae):
    images, labels = bars
    rec = run_binding(random_dae, images, DasbeParams.bars(n_iter=3), seed=1, labels=labels)
    assert rec.spikes.shape == (3 * 54, 4, 400) and rec.spikes.dtype == torch.bool
    assert rec.cycle == 54 and rec.image_shape == (20, 20)
    assert torch.equal(rec.labels, torch.as_tensor(labels.reshape(4, -1), dtype=torch.int64))
    background = torch.as_tensor(images.reshape(4, -1) == 0)
    assert not bool(rec.spikes[:, background].any())
    assert int(rec.spikes.sum()) > 1000
    assert rec.meta["D"] == 54 and rec.meta["r"] == 6 and rec.meta["image_ids"] == [0, 1, 2, 3]


def test_refractory_spacing_is_at_least_r_plus_one(bars, random_dae):
    rec = run_binding(random_dae, bars[0][:2], DasbeParams.bars(n_iter=4), seed=2)
    t, b, n = torch.nonzero(rec.spikes, as_tuple=True)
    order = np.lexsort((t.numpy(), n.numpy(), b.numpy()))
    t, key = t.numpy()[order], (b * 400 + n).numpy()[order]
    same = key[1:] == key[:-1]
    assert same.any() and (np.diff(t)[same] >= 7).all()


def test_constant_feedback_fires_every_r_plus_one_steps():
    # R = 1 from iteration 1 on; with threshold offset 0 a spike fails only when U == 0 (p = 2**-24).
    image = torch.zeros(1, 400)
    image[0, 50:80] = 1
    params = DasbeParams(delay=20, refractory=9, n_iter=6, threshold_offset=0.0)
    rec = run_binding(ConstantDAE(1.0), image, params, seed=0)
    for pixel in range(50, 80):
        late = spike_times(rec.spikes, 0, pixel)
        late = late[late >= 20]
        assert late[0] < 20 + 10 and (np.diff(late) == 10).all()


def test_initial_cycle_gives_about_one_spike_per_pixel():
    image = torch.ones(8, 400)
    rec = run_binding(ConstantDAE(0.0), image, DasbeParams.bars(n_iter=2), seed=5)
    first = rec.spikes[:54].double().sum(dim=0).mean().item()
    assert 0.8 < first < 1.05
    assert not bool(rec.spikes[54:].any())  # DAE output 0: nothing fires once the init has passed


def test_spike_probability_is_drive_minus_offset():
    image = torch.ones(4, 400)
    rec = run_binding(ConstantDAE(0.3), image, DasbeParams(delay=10, refractory=0, n_iter=30), seed=9)
    rate = rec.spikes[10:].double().mean().item()
    assert rate == pytest.approx(0.3 - 1e-5, abs=0.005)


def test_delay_line_returns_the_dae_output_exactly_d_steps_later():
    D, n_iter, rows = 10, 12, 2
    dae = PatternDAE(D * n_iter, rows, 400)
    params = DasbeParams(delay=D, refractory=0, n_iter=n_iter)
    rec = run_binding(dae, torch.ones(rows, 400), params, seed=4)
    steps = D * n_iter
    assert len(dae.windows) == steps  # one DAE call per step for the whole batch
    assert torch.equal(rec.spikes[D:], dae.patterns[: steps - D])  # R(n) = DAE(a(n - D))


def test_window_is_a_stochastic_or_of_the_last_three_steps():
    D, n_iter = 10, 30
    dae = PatternDAE(D * n_iter, 2, 400)
    rec = run_binding(dae, torch.ones(2, 400), DasbeParams(delay=D, refractory=0, n_iter=n_iter), seed=4)
    s, a = rec.spikes, torch.stack(dae.windows).bool()
    prev1, prev2 = torch.roll(s, 1, 0), torch.roll(s, 2, 0)
    prev1[:1], prev2[:2] = False, False
    assert bool((a >= s).all()) and bool((a <= (s | prev1 | prev2)).all())
    only1 = (~s & prev1 & ~prev2)[D + 2:]
    only2 = (~s & ~prev1 & prev2)[D + 2:]
    assert a[D + 2:][only1].double().mean().item() == pytest.approx(0.5, abs=0.02)
    assert a[D + 2:][only2].double().mean().item() == pytest.approx(0.25, abs=0.02)


def test_full_retention_window_is_the_plain_or():
    D, n_iter = 10, 4
    dae = PatternDAE(D * n_iter, 1, 400)
    params = DasbeParams(delay=D, refractory=0, n_iter=n_iter, retention=(1.0, 1.0, 1.0))
    rec = run_binding(dae, torch.ones(1, 400), params, seed=0)
    s = rec.spikes
    expected = s | torch.roll(s, 1, 0) | torch.roll(s, 2, 0)
    expected[0], expected[1] = s[0], s[1] | s[0]
    assert torch.equal(torch.stack(dae.windows).bool(), expected)


def test_determinism_and_batch_invariance(bars, random_dae):
    images = bars[0]
    params = DasbeParams.bars(n_iter=3)
    full = run_binding(random_dae, images, params, seed=7)
    again = run_binding(random_dae, images, params, seed=7)
    assert torch.equal(full.spikes, again.spikes)
    subset = run_binding(random_dae, images[[3, 1]], params, seed=7, image_ids=[3, 1])
    assert torch.equal(subset.spikes, full.spikes[:, [3, 1]])
    alone = run_binding(random_dae, images[2:3], params, seed=7, image_ids=[2])
    assert torch.equal(alone.spikes[:, 0], full.spikes[:, 2])
    other_seed = run_binding(random_dae, images, params, seed=8)
    assert not torch.equal(other_seed.spikes, full.spikes)


def test_several_seeds_are_extra_rows(bars, random_dae):
    images, labels = bars
    params = DasbeParams.bars(n_iter=2)
    both = run_binding(random_dae, images[:2], params, seed=[1, 2], labels=labels[:2])
    assert both.B == 4 and both.meta["seeds"] == [1, 1, 2, 2] and both.meta["image_ids"] == [0, 1, 0, 1]
    assert torch.equal(both.labels[2:], both.labels[:2])
    for i, s in enumerate((1, 2)):
        single = run_binding(random_dae, images[:2], params, seed=s)
        assert torch.equal(both.spikes[:, 2 * i:2 * i + 2], single.spikes)


def test_batched_equals_the_literal_reference_path(bars, random_dae):
    params = DasbeParams.bars(n_iter=3)
    fast = run_binding(random_dae, bars[0][:3], params, seed=11)
    slow = run_binding(random_dae, bars[0][:3], params, seed=11, impl="reference")
    assert int(fast.spikes.sum()) > 500
    assert torch.equal(fast.spikes, slow.spikes)


def test_record_keeps_the_last_iterations(bars, random_dae):
    params = DasbeParams.bars(n_iter=3)
    full = run_binding(random_dae, bars[0][:2], params, seed=3)
    assert not full.spikes.is_inference()  # callers may edit the record in place
    for spec in ("last:2", 2):
        tail = run_binding(random_dae, bars[0][:2], params, seed=3, record=spec)
        assert torch.equal(tail.spikes, full.spikes[54:]) and tail.meta["first_step"] == 54
    assert run_binding(random_dae, bars[0][:1], params, seed=3, record="last:9").T == 3 * 54


def test_sparse_mask_matches_the_dense_formula():
    gen = torch.Generator().manual_seed(1)
    spikes = torch.rand(5, 300, generator=gen) < 0.05
    seeds, ids = torch.full((5,), 3), torch.arange(5)
    dense = spikes & (rng.uniform(seeds, Stream.MASK1, ids, 17, 300) < 0.5)
    assert torch.equal(dasbe._decay(spikes, 0.5, seeds, ids, 17, Stream.MASK1), dense)


def test_callers_dae_is_left_untouched(bars):
    dae = MLPDAE((400, 32, 400), seed=0).train()
    run_binding(dae, bars[0][:1], DasbeParams.bars(n_iter=1), seed=0)
    assert dae.training and next(dae.parameters()).dtype == torch.float32
    native = run_binding(dae, bars[0][:1], DasbeParams.bars(n_iter=1), seed=0, dae_dtype=None)
    assert native.meta["dae_dtype"] == "native" and dae.training


def test_input_errors(random_dae):
    params = DasbeParams.bars(n_iter=1)
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        run_binding(random_dae, torch.ones(400), params)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run_binding(random_dae, 2 * torch.ones(1, 400), params)
    with pytest.raises(ValueError, match="record"):
        run_binding(random_dae, torch.ones(1, 400), params, record="last:x")
    with pytest.raises(ValueError, match="impl"):
        run_binding(random_dae, torch.ones(1, 400), params, impl="fast")
    with pytest.raises(ValueError, match="image_ids"):
        run_binding(random_dae, torch.ones(2, 400), params, image_ids=[1])
    with pytest.raises(ValueError, match="labels"):
        run_binding(random_dae, torch.ones(2, 400), params, labels=np.zeros((2, 10)))
    with pytest.raises(ValueError, match="reconstruction of shape"):
        run_binding(lambda a: a[:, :10], torch.ones(1, 400), params)


# --- the fast batched path (on-pixel state, MLP DAE once per iteration) vs the dense path ------------------

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "dasbe"


def _authors_scenes(name: str, n: int):
    path = REFERENCE / f"{name}_dae.pt"
    if not path.exists():
        pytest.skip(f"authors' weights not found at {path}")
    dae = MLPDAE.from_state_dict(torch.load(path, weights_only=True))
    if name == "bars":
        images, _ = generate_bars(n, np.random.RandomState(471958))
        return dae, torch.as_tensor(images.reshape(n, -1)).float(), DasbeParams.bars(n_iter=5)
    corners = pytest.importorskip("workbench.data.corners")
    images = corners.generate_corners(n, np.random.RandomState(corners.CORNERS_SEED)).images
    return dae, torch.as_tensor(images.reshape(n, -1)).float(), DasbeParams.corners(n_iter=8)


@pytest.mark.parametrize("name", ["bars", "corners"])
def test_fast_path_gives_the_dense_paths_spikes_with_the_authors_weights(name):
    dae, x, params = _authors_scenes(name, 4)
    fast = run_binding(dae, x, params, seed=[111, 222])
    dense = run_binding(dae, x, params, seed=[111, 222], impl="dense")
    assert fast.meta["dae_path"] == "mlp" and dense.meta["dae_path"] == "module"
    assert int(fast.spikes.sum()) > 2000
    assert torch.equal(fast.spikes, dense.spikes)  # bit-identical, every step
    # batch invariance of the fast path: other batch composition (other padding P, one seed)
    part = run_binding(dae, x[[2, 0]], params, seed=222, image_ids=[2, 0])
    assert torch.equal(part.spikes, fast.spikes[:, [6, 4]])


@pytest.mark.parametrize("sparse_max, gather_max", [(0.1, 0.6), (0.0, 0.0), (1.0, 1.0)])
def test_fast_path_branches_agree_with_dense_for_a_deep_relu_mlp(monkeypatch, bars, sparse_max, gather_max):
    # Dense vs sparse first layer, gathered vs dense output layer; grey levels exercise m = x * R.
    monkeypatch.setattr(dasbe, "_SPARSE_MAX_DENSITY", sparse_max)
    monkeypatch.setattr(dasbe, "_GATHER_MAX_FRACTION", gather_max)
    dae = MLPDAE((400, 48, 24, 48, 400), hidden_act="relu", seed=1)
    with torch.no_grad():
        dae.decoder[-1].bias += 1.5  # enough drive to keep the pixels firing
    x = torch.as_tensor(bars[0][:3], dtype=torch.float32).reshape(3, -1)
    x[1] *= 0.75
    params = DasbeParams.bars(n_iter=4)
    fast = run_binding(dae, x, params, seed=[3, 4])
    dense = run_binding(dae, x, params, seed=[3, 4], impl="dense")
    assert fast.meta["dae_path"] == "mlp" and int(fast.spikes[54:].sum()) > 1000
    assert torch.equal(fast.spikes, dense.spikes)


def test_fast_path_recognises_only_unmodified_mlp_daes():
    dae = MLPDAE((400, 16, 400), seed=0)
    layers = dasbe._mlp_layers(dae)
    assert [act for _, _, act in layers] == ["sigmoid", "sigmoid"] and layers[0][0] is dae.encoder[0].weight

    class Noisy(MLPDAE):
        def forward(self, x):
            return super().forward(x + 0.1)

    assert dasbe._mlp_layers(Noisy((400, 16, 400))) is None
    hooked = MLPDAE((400, 16, 400), seed=0)
    hooked.decoder[0].register_forward_hook(lambda *args: None)
    assert dasbe._mlp_layers(hooked) is None
    assert dasbe._mlp_layers(ConstantDAE(1.0)) is None
    rec = run_binding(Noisy((400, 16, 400), seed=0), torch.ones(1, 400), DasbeParams.bars(n_iter=1))
    assert rec.meta["dae_path"] == "module"


def test_on_pixel_init_equals_the_dense_init():
    x = (torch.rand(6, 400, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    seeds, ids = torch.tensor([5, 5, 5, 6, 6, 6]), torch.tensor([10, 11, 12, 10, 11, 12])
    lay = dasbe._OnPixels(x, n_images=3)
    ring = lay.init_ring(seeds, ids, 54).view(54, 6, lay.P)
    dense = init_delay_line(seeds, ids, 54, 400)  # [D, rows, N]
    expected = dense[:, lay.row_of[:, None], lay.pix]  # [D, rows(compact), P]
    assert torch.equal(ring[:, lay.valid], expected[:, lay.valid])
    assert lay.row_of.tolist() == [0, 3, 1, 4, 2, 5]  # image-major: both seeds of an image side by side


# --- spiking-hidden DAEs (bcdae, CLRNET): hidden refractory state carried by the loop ------------------

from workbench.binding.dasbe import run_binding_hidden  # noqa: E402
from workbench.models.spiking_dae import SpikingDAE  # noqa: E402


def _spiking_dae(act: str = "sigmoid", refractory: int = 4, code_bias: float = 0.0) -> SpikingDAE:
    dae = SpikingDAE((400, 48, 64, 48, 400), hidden_act=act, refractory=refractory, seed=0)
    with torch.no_grad():
        dae.decoder[-1].bias += 1.0  # enough feedback to keep the pixels firing
        dae.encoder[-1].bias += code_bias
    return dae


@pytest.mark.parametrize("act", ["sigmoid", "relu"])
def test_stateful_paths_agree_exactly(bars, act):
    dae = _spiking_dae(act, code_bias=0.5 if act == "relu" else 0.0)
    params = DasbeParams.bars(n_iter=3)
    runs = {impl: run_binding_hidden(dae, bars[0][:3], params, seed=[1, 2], impl=impl)
            for impl in ("batched", "dense", "reference")}
    pix, hid = runs["batched"]
    assert pix.meta["dae_path"] == "spiking" and runs["dense"][0].meta["dae_path"] == "module"
    assert hid.spikes.shape == (3 * 54, 6, 64) and hid.image_shape == (8, 8) and hid.meta["layer"] == "hidden"
    assert int(pix.spikes.sum()) > 2000 and int(hid.spikes.sum()) > 2000
    for impl in ("dense", "reference"):
        assert torch.equal(runs[impl][0].spikes, pix.spikes)
        assert torch.equal(runs[impl][1].spikes, hid.spikes)
    assert torch.equal(run_binding(dae, bars[0][:3], params, seed=[1, 2]).spikes, pix.spikes)


def test_stateful_loop_is_deterministic_and_batch_invariant(bars):
    dae = _spiking_dae()
    params = DasbeParams.bars(n_iter=3)
    pix, hid = run_binding_hidden(dae, bars[0][:3], params, seed=[5, 6])
    again = run_binding_hidden(dae, bars[0][:3], params, seed=[5, 6])
    assert torch.equal(again[0].spikes, pix.spikes) and torch.equal(again[1].spikes, hid.spikes)
    part_pix, part_hid = run_binding_hidden(dae, bars[0][[2, 0]], params, seed=6, image_ids=[2, 0])
    assert torch.equal(part_pix.spikes, pix.spikes[:, [5, 3]])
    assert torch.equal(part_hid.spikes, hid.spikes[:, [5, 3]])
    tail_pix, tail_hid = run_binding_hidden(dae, bars[0][:3], params, seed=[5, 6], record="last:1")
    assert torch.equal(tail_hid.spikes, hid.spikes[-54:]) and torch.equal(tail_pix.spikes, pix.spikes[-54:])


@pytest.mark.parametrize("impl", ["batched", "dense", "reference"])
def test_hidden_refractory_gate_blocks_r_a_steps_and_resets_per_image(bars, impl):
    # Code bias +60: sigmoid(u) == 1.0 in float64, so a unit fires whenever its gate is open (unless U == 0).
    r_a = 6
    dae = _spiking_dae(refractory=r_a, code_bias=60.0)
    _, hid = run_binding_hidden(dae, bars[0][:2], DasbeParams.bars(n_iter=2), seed=[3, 4], impl=impl)
    spikes = hid.spikes.numpy()  # [108, 4, 64]
    for row in range(4):  # each (seed, image) row starts with a fresh counter: every unit fires at step 0
        for unit in range(0, 64, 7):
            times = np.flatnonzero(spikes[:, row, unit])
            assert times[0] == 0 and (np.diff(times) == r_a + 1).all()


def test_hidden_state_does_not_carry_over_between_images_or_calls(bars):
    dae = _spiking_dae()
    params = DasbeParams.bars(n_iter=2)
    alone = run_binding_hidden(dae, bars[0][1:2], params, seed=9, image_ids=[1])[1]
    run_binding_hidden(dae, bars[0][:1], params, seed=9)  # another image first: nothing may leak
    second = run_binding_hidden(dae, bars[0][:2], params, seed=9)[1]
    assert torch.equal(second.spikes[:, 1:2], alone.spikes)
    # evaluation chunks are separate calls: chunked = whole
    whole = run_binding_hidden(dae, bars[0][:4], params, seed=9)[1]
    chunks = [run_binding_hidden(dae, bars[0][i:i + 2], params, seed=9, image_ids=[i, i + 1])[1] for i in (0, 2)]
    assert torch.equal(torch.cat([c.spikes for c in chunks], dim=1), whole.spikes)


def test_stateful_module_path_for_modified_spiking_daes(bars):
    class Shifted(SpikingDAE):
        def membrane(self, a):
            return super().membrane(a) * 0.9

    dae = Shifted((400, 48, 64, 48, 400), hidden_act="sigmoid", refractory=4, seed=0)
    assert dasbe._spiking_layers(dae) is None and dasbe._spiking_layers(_spiking_dae()) is not None
    params = DasbeParams.bars(n_iter=2)
    fast = run_binding_hidden(dae, bars[0][:2], params, seed=1)
    assert fast[0].meta["dae_path"] == "module" and fast[0].meta["hidden_refractory"] == 4
    slow = run_binding_hidden(dae, bars[0][:2], params, seed=1, impl="reference")
    assert torch.equal(fast[1].spikes, slow[1].spikes) and torch.equal(fast[0].spikes, slow[0].spikes)


def test_run_binding_hidden_needs_a_spiking_dae(bars, random_dae):
    with pytest.raises(ValueError, match="spiking-hidden"):
        run_binding_hidden(random_dae, bars[0][:1], DasbeParams.bars(n_iter=1))

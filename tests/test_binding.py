"""DASBE binding loop: spec §2.3 properties, delay line, determinism, batch invariance, reference path."""

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

"""DASBE baselines (spec §3): pure-ANN delay loop and PCNN; exact semantics, determinism, batch invariance,
and, with the authors' weights, that both group clearly worse than DASBE."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from workbench import rng
from workbench.binding.baselines import run_pcnn, run_pure_ann
from workbench.binding.dasbe import DasbeParams, init_delay_line, run_binding
from workbench.binding.readout import evaluate_grouping, group_pixels
from workbench.data.bars import generate_bars
from workbench.metrics import ami_batch
from workbench.models.dae import MLPDAE
from workbench.neurons.pcnn import PCNN, PCNNParams
from workbench.rng import Stream

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "dasbe"


class ScaleDAE(nn.Module):
    """y = factor * m: the delay line then holds init * factor**k in iteration k."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor
        self.calls = 0

    def forward(self, m: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.calls += 1
        return self.factor * m, None


@pytest.fixture(scope="module")
def bars():
    images, labels = generate_bars(5, np.random.RandomState(3))
    return torch.as_tensor(images.reshape(5, -1)).float(), labels.reshape(5, -1).astype(np.int64)


# --- pure-ANN ----------------------------------------------------------------------------------------


def test_pure_ann_shape_and_literal_loop(bars):
    x = bars[0][:2]
    params = DasbeParams(delay=6, refractory=1, n_iter=4)
    dae = ScaleDAE(0.5)
    m = run_pure_ann(dae, x, params, seed=3, back=2)
    assert m.shape == (2 * 6, 2, 400) and m.dtype == torch.float32
    assert dae.calls == 4 * 6  # one DAE call per step for the whole batch
    init = init_delay_line(torch.tensor([3, 3]), torch.arange(2), 6, 400, normalise=False)  # [D, B, N]
    # iterations 2 and 3 are kept: m = x * init * 0.5**k (powers of two are exact in float32)
    torch.testing.assert_close(m[:6], x * init * 0.25, rtol=0, atol=0)
    torch.testing.assert_close(m[6:], x * init * 0.125, rtol=0, atol=0)
    assert not bool(m[:, x == 0].any())  # background is 0


def test_pure_ann_init_is_unnormalised_unless_asked(bars):
    x = bars[0][:1]
    params = DasbeParams(delay=10, refractory=1, n_iter=1)
    raw = run_pure_ann(ScaleDAE(1.0), x, params, seed=1, back=1)
    normalised = run_pure_ann(ScaleDAE(1.0), x, params, seed=1, back=1, normalise_init=True)
    on = x[0] > 0
    torch.testing.assert_close(normalised.sum(dim=0)[0, on], torch.ones(int(on.sum())), atol=1e-5, rtol=0)
    assert float(raw.sum(dim=0)[0, on].mean()) == pytest.approx(10 * (2 / np.pi) ** 0.5, rel=0.15)  # E|N(0,1)|


def test_pure_ann_back_is_clipped_and_validated(bars):
    params = DasbeParams(delay=5, refractory=1, n_iter=2)
    assert run_pure_ann(ScaleDAE(1.0), bars[0][:1], params, back=9).shape[0] == 10
    with pytest.raises(ValueError, match="back"):
        run_pure_ann(ScaleDAE(1.0), bars[0][:1], params, back=0)
    with pytest.raises(ValueError, match="back .* must be an integer"):
        run_pure_ann(ScaleDAE(1.0), bars[0][:1], params, back=2.0)  # a float count is a caller's bug
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run_pure_ann(ScaleDAE(1.0), 2 * bars[0][:1], params)


def test_pure_ann_is_deterministic_and_batch_invariant(bars):
    dae = MLPDAE((400, 32, 400), seed=0)
    params = DasbeParams.bars(n_iter=3)
    full = run_pure_ann(dae, bars[0], params, seed=[5, 6], back=2)
    assert full.shape == (108, 10, 400)
    assert torch.equal(full, run_pure_ann(dae, bars[0], params, seed=[5, 6], back=2))
    part = run_pure_ann(dae, bars[0][[4, 1]], params, seed=6, image_ids=[4, 1], back=2)
    assert torch.equal(part, full[:, [9, 6]])  # seed-major rows: seed 6 is rows 5..9
    assert not torch.equal(full[:, :5], full[:, 5:])  # the seed changes the init


# --- PCNN ----------------------------------------------------------------------------------------------


def test_pcnn_record_layout_and_equivalence_with_the_module(bars):
    x, labels = bars
    rec = run_pcnn(x[:2], (20, 20), T=40, seed=4, back_steps=15, labels=labels[:2])
    assert rec.spikes.shape == (15, 2, 400) and rec.image_shape == (20, 20) and rec.cycle is None
    assert rec.meta["model"] == "pcnn" and rec.meta["first_step"] == 25 and rec.meta["seeds"] == [4, 4]
    assert torch.equal(rec.labels, torch.as_tensor(labels[:2]))
    noise = torch.stack([rng.uniform(4, Stream.DROPOUT, torch.arange(2), t, 400) for t in range(40)]).double()
    expected = PCNN()(x[:2].double(), 40, image_shape=(20, 20), noise=noise)
    assert torch.equal(rec.spikes, expected[25:])
    assert int(rec.spikes.sum()) > 20 and not bool(rec.spikes[:, x[:2] == 0].any())


def test_pcnn_shapes_preset_changes_the_dynamics(bars):
    default = run_pcnn(bars[0][:2], (20, 20), T=60, seed=0, back_steps=60)
    shapes = run_pcnn(bars[0][:2], (20, 20), PCNNParams.shapes(), T=60, seed=0, back_steps=60)
    assert not torch.equal(default.spikes, shapes.spikes)


def test_pcnn_is_deterministic_and_batch_invariant(bars):
    x = bars[0]
    full = run_pcnn(x, (20, 20), T=80, seed=[1, 2], back_steps=30)
    assert torch.equal(full.spikes, run_pcnn(x, (20, 20), T=80, seed=[1, 2], back_steps=30).spikes)
    alone = run_pcnn(x[3:4], (20, 20), T=80, seed=2, image_ids=[3], back_steps=30)
    assert torch.equal(alone.spikes[:, 0], full.spikes[:, 8])
    flat_3d = run_pcnn(x.reshape(5, 20, 20), None, T=80, seed=[1, 2], back_steps=30)
    assert torch.equal(flat_3d.spikes, full.spikes)
    assert not torch.equal(full.spikes[:, :5], full.spikes[:, 5:])


def test_pcnn_input_errors(bars):
    x = bars[0][:1]
    with pytest.raises(ValueError, match="image_shape"):
        run_pcnn(x[:, :300], None)  # not square: the shape cannot be guessed
    assert run_pcnn(x, None, T=2, back_steps=1).image_shape == (20, 20)
    with pytest.raises(ValueError, match="image_shape"):
        run_pcnn(x, (10, 10))
    with pytest.raises(ValueError, match="back_steps"):
        run_pcnn(x, (20, 20), T=10, back_steps=11)
    with pytest.raises(ValueError, match=r"T \(PCNN steps\) must"):
        run_pcnn(x, (20, 20), T=0)
    with pytest.raises(ValueError, match="back_steps must be an integer"):
        run_pcnn(x, (20, 20), T=10, back_steps=5.0)


# --- behaviour with the authors' weights ------------------------------------------------------------------


def _authors(name: str) -> MLPDAE:
    path = REFERENCE / f"{name}_dae.pt"
    if not path.exists():
        pytest.skip(f"authors' weights not found at {path}")
    return MLPDAE.from_state_dict(torch.load(path, weights_only=True))


def _scenes(name: str, n: int) -> tuple[torch.Tensor, np.ndarray, DasbeParams]:
    if name == "bars":
        images, labels = generate_bars(n, np.random.RandomState(471958))
        params = DasbeParams.bars(n_iter=20)
    else:
        corners = pytest.importorskip("workbench.data.corners")
        scenes = corners.generate_corners(n, np.random.RandomState(corners.CORNERS_SEED))
        images, labels = scenes.images, scenes.labels
        params = DasbeParams.corners(n_iter=50)
    return torch.as_tensor(images.reshape(n, -1)).float(), labels.reshape(n, -1).astype(np.int64), params


@pytest.mark.parametrize("name, ann_gap, pcnn_gap", [("bars", 0.3, 0.6), ("corners", 0.05, 0.3)])
def test_baselines_group_clearly_worse_than_dasbe(name, ann_gap, pcnn_gap):
    # Spec §7.2 (authors' code, 200 images): Bars 96.4 / 46.1 / 9.0, Corners 79.4 / 62.2 / 28.2.
    dae = _authors(name)
    x, labels, params = _scenes(name, 6)
    k = labels.max(axis=1) + 1
    dasbe = evaluate_grouping(run_binding(dae, x, params, seed=111, labels=labels, record=10), n_init=3).mean()
    m = run_pure_ann(dae, x, params, seed=111)
    ann = ami_batch(labels, group_pixels(m, k, back_steps=m.shape[0], n_init=3, seed=111).numpy()).mean()
    side = int(round(x.shape[1] ** 0.5))
    pcnn = evaluate_grouping(run_pcnn(x, (side, side), seed=111, labels=labels), n_init=3).mean()
    assert dasbe > 0.6
    assert ann < dasbe - ann_gap, (dasbe, ann)
    assert pcnn < dasbe - pcnn_gap, (dasbe, pcnn)

"""DASBE loop speed paths: numpy step loop and hashing, float32 products with error bounds (issue 3).

Each fast path must give exactly the spikes of the plain float64 torch loop it replaces.
"""

import numpy as np
import pytest
import torch

from workbench import rng
from workbench.binding import dasbe
from workbench.binding.dasbe import DasbeParams, run_binding
from workbench.data.bars import generate_bars
from workbench.models.dae import MLPDAE


@pytest.fixture(scope="module")
def images():
    x, _ = generate_bars(4, np.random.RandomState(0))
    return torch.as_tensor(x.reshape(4, -1), dtype=torch.float32)


def _dae(act: str = "sigmoid", scale: float = 1.0, seed: int = 0) -> MLPDAE:
    dae = MLPDAE((400, 64, 400), hidden_act=act, seed=seed)
    if scale != 1.0:  # large weights, like trained DAEs: |z| in the thousands, so the error bounds matter
        with torch.no_grad():
            for p in dae.parameters():
                p.mul_(scale)
    return dae


def _run(monkeypatch, dae, x, params, *, bounded: bool, numpy_steps: bool, **kwargs):
    monkeypatch.setattr(dasbe, "_BOUNDED_FLOAT32", bounded)
    monkeypatch.setattr(dasbe, "_NUMPY_STEPS", numpy_steps)
    return run_binding(dae, x, params, **kwargs)


def test_numpy_hash_gives_the_torch_hash_bits():
    gen = torch.Generator().manual_seed(0)
    words = torch.randint(-2**63, 2**63 - 1, (5000,), generator=gen, dtype=torch.int64)
    words[:3] = torch.tensor([0, -1, -2**63])
    expected = rng.bits_to_uniform(rng.mix64(words))
    got = dasbe._uniform_np(words.numpy().view(np.uint64).copy())
    assert got.dtype == np.float32 and np.array_equal(got, expected.numpy())


def test_numpy_init_ring_equals_the_torch_ring_and_the_delay_line(monkeypatch, images):
    x = torch.cat([images, images[:1]])  # 2 seeds would share; here: 5 rows, different on-pixel counts
    x[4, :50] = 0
    seeds, ids = torch.tensor([7, 7, 7, 7, 9]), torch.tensor([0, 1, 2, 3, 11])
    lay = dasbe._OnPixels(x, n_images=5)
    monkeypatch.setattr(dasbe, "_NUMPY_STEPS", True)
    fast = lay.init_ring(seeds, ids, 54)
    monkeypatch.setattr(dasbe, "_NUMPY_STEPS", False)
    slow = lay.init_ring(seeds, ids, 54)
    assert torch.equal(fast, slow)
    full = dasbe.init_delay_line(seeds, ids, 54, 400)  # [D, rows, N]
    valid = lay.valid.reshape(-1)
    at_pixels = full[:, lay.row_q, lay.pix_q]
    assert torch.equal(fast[:, valid], at_pixels[:, valid])


@pytest.mark.parametrize("act, scale", [("sigmoid", 1.0), ("sigmoid", 40.0), ("relu", 8.0)])
def test_float32_bounds_contain_the_float64_reconstruction(act, scale):
    dae, D = _dae(act, scale, seed=2), 9
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 400, generator=gen) < 0.4).float().repeat(2, 1)
    lay = dasbe._OnPixels(x, n_images=3)  # 2 seeds x 3 images (seed-major rows)
    with dasbe._DaeCall(dae, torch.float64, torch.device("cpu")) as call, torch.inference_mode():
        mlp = dasbe._MlpFastPath.build(call, lay, D)
        assert mlp.use_bounds
        window = (torch.rand(lay.Q * D, generator=gen) < 0.1) & lay.valid.view(lay.rows, 1, lay.P).expand(
            -1, D, -1).reshape(-1)
        exact = torch.empty(D, lay.Q)
        mlp(window, exact)
        z_lo, m_hi = torch.empty(D, lay.Q), torch.empty(D, lay.Q)
        mlp.write_bounds(window, z_lo, m_hi)
        m_lo = torch.from_numpy(mlp.lower_bound(z_lo.numpy()))
        valid = lay.valid.reshape(-1)
        assert bool((m_lo[:, valid] <= exact[:, valid]).all()) and bool((exact[:, valid] <= m_hi[:, valid]).all())
        assert float((m_hi - m_lo)[:, valid].max()) < 0.05  # tight enough to decide nearly every spike
        # in logit space too: z_lo <= z64, the float64 path's pre-sigmoid value
        layers = dasbe._mlp_layers(call.module)
        (w1, b1, act1), (w2, b2, _) = layers
        a = torch.zeros(lay.rows, D, 400, dtype=torch.float64)
        win = window.view(lay.rows, D, lay.P)
        c, t, j = torch.nonzero(win, as_tuple=True)
        a[c, t, lay.pix[c, j]] = 1.0
        h64 = dasbe._ACTIVATIONS_[act1](a @ w1.t() + b1)
        z64 = (h64 @ w2.t() + b2).gather(2, lay.pix[:, None, :].expand(-1, D, -1))  # [rows, D, P]
        z64 = z64.transpose(0, 1).reshape(D, -1)
        assert bool((z_lo[:, valid].double() <= z64[:, valid]).all())
        # the entry-by-entry recomputation gives the float64 path's values
        q = torch.nonzero(valid)[:, 0][::7]
        for t in (0, D - 1):
            assert torch.equal(mlp.exact(window, q, t), exact[t, q])


@pytest.mark.parametrize("bounded, numpy_steps, retention", [(True, True, (1.0, 0.5, 0.25)),
                                                              (True, False, (1.0, 0.5, 0.25)),
                                                              (False, True, (1.0, 0.3, 0.1))])
def test_fast_paths_give_the_plain_loops_spikes(monkeypatch, images, bounded, numpy_steps, retention):
    # (retention 0.3 / 0.1: probabilities that are not float32 values, compared the same way in numpy and torch)
    dae, params = _dae(scale=6.0), DasbeParams.bars(n_iter=4, retention=retention)
    with torch.no_grad():
        dae.decoder[0].bias += 3.0  # enough drive to keep the pixels firing
    plain = _run(monkeypatch, dae, images, params, bounded=False, numpy_steps=False, seed=[5, 6])
    fast = _run(monkeypatch, dae, images, params, bounded=bounded, numpy_steps=numpy_steps, seed=[5, 6])
    assert int(plain.spikes[54:].sum()) > 1000
    assert torch.equal(fast.spikes, plain.spikes)


@pytest.mark.parametrize("numpy_steps", [True, False])
def test_undecided_spikes_are_recomputed_exactly(monkeypatch, images, numpy_steps):
    # Bounds 10^4 times too wide: many decisions fall between them and take the exact recomputation.
    dae, params = _dae(scale=6.0), DasbeParams.bars(n_iter=3)
    with torch.no_grad():
        dae.decoder[0].bias += 3.0
    plain = _run(monkeypatch, dae, images[:2], params, bounded=False, numpy_steps=False, seed=1)
    calls = []
    exact = dasbe._MlpFastPath.exact
    monkeypatch.setattr(dasbe._MlpFastPath, "exact", lambda self, w, q, t: calls.append(len(q)) or exact(self, w, q, t))
    monkeypatch.setattr(dasbe, "_SAFETY", 1e4)
    wide = _run(monkeypatch, dae, images[:2], params, bounded=True, numpy_steps=numpy_steps, seed=1)
    assert sum(calls) > 50
    assert torch.equal(wide.spikes, plain.spikes)


def test_bounds_are_used_only_where_they_are_exact(images):
    def uses_bounds(dae, x, dtype=torch.float64):
        lay = dasbe._OnPixels(x, n_images=len(x))
        with dasbe._DaeCall(dae, dtype, torch.device("cpu")) as call, torch.inference_mode():
            return dasbe._MlpFastPath.build(call, lay, 5).use_bounds

    assert uses_bounds(_dae(), images)
    assert not uses_bounds(_dae(), images * 0.5)  # grey levels: m = x * R
    assert not uses_bounds(_dae(), images, dtype=torch.float32)  # the DAE's own float32: already fast
    finer = _dae().double()
    with torch.no_grad():
        finer.encoder[0].weight += 1e-12  # not float32 values: the float32 product would not be exact
    assert not uses_bounds(finer, images)
    deep = MLPDAE((400, 32, 16, 32, 400), seed=0)  # more than one hidden layer: float64 path
    assert not uses_bounds(deep, images)
    huge = _dae()
    with torch.no_grad():
        huge.decoder[0].weight[0, :4] = torch.tensor([1.0, 1.0, -1.0, -1.0]) * 3e38  # float32 sums could overflow
    assert not uses_bounds(huge, images)
    torch.set_float32_matmul_precision("medium")  # reduced-precision products break the float32 error model
    try:
        assert not uses_bounds(_dae(), images)
    finally:
        torch.set_float32_matmul_precision("highest")


@pytest.mark.parametrize("numpy_steps", [True, False])
def test_tiny_activations_with_huge_cancelling_weights_keep_the_spikes(monkeypatch, numpy_steps):
    """h ~ 2^-80 (float32 squares underflow) against W2 ~ 2^100 in cancelling pairs: the products round, so the
    bounds must still see |h| (float64 norms) and settle on the float64 decisions."""
    N, K = 16, 8
    x, params, g = torch.ones(2, N), DasbeParams(delay=5, refractory=1, n_iter=6), torch.Generator().manual_seed(0)
    dae = MLPDAE((N, K, N), hidden_act="relu", seed=0)
    with torch.no_grad():
        dae.encoder[0].weight.fill_(2.0 ** -80)
        dae.encoder[0].bias.zero_()
        big = (1 + torch.rand(N, K // 2, generator=g, dtype=torch.float64)) * 2.0 ** 100
        step = torch.randint(-3, 4, (N, K // 2), generator=g).double() * 2.0 ** 77
        big = big.float().double()  # float32 values, and big + step stays one
        dae.decoder[0].weight.copy_(torch.stack([big, -(big + step)], dim=2).reshape(N, K).float())
        dae.decoder[0].bias.zero_()
    plain = _run(monkeypatch, dae, x, params, bounded=False, numpy_steps=False)
    fast = _run(monkeypatch, dae, x, params, bounded=True, numpy_steps=numpy_steps)
    assert plain.spikes.sum() > 100 and torch.equal(fast.spikes, plain.spikes)

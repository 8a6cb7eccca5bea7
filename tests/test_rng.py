"""Counter-based RNG: exact hash, uniformity, stream/step independence, determinism, batch invariance."""

import math

import numpy as np
import pytest
import torch

from workbench import rng
from workbench.rng import Stream

MASK64 = (1 << 64) - 1


def splitmix64_output(z: int) -> int:
    """Plain-Python splitmix64 finaliser, the reference for the int64 torch version."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def test_mix64_matches_unsigned_reference_including_sign_bit_values():
    values = [0, 1, 2**63 - 1, -1, -(2**63), 12345678901234567, -987654321]
    out = rng.mix64(torch.tensor(values, dtype=torch.int64))
    assert [o & MASK64 for o in out.tolist()] == [splitmix64_output(v) for v in values]


def test_first_splitmix64_output_from_state_zero():
    # Published first output of splitmix64 seeded with 0.
    assert rng.random_bits(torch.tensor([0]), 1).item() & MASK64 == 0xE220A8397B1DCDAF


def test_uniform_range_resolution_and_moments():
    u = rng.uniform(3, Stream.THRESHOLD, torch.arange(8), 17, 50_000)
    assert u.dtype == torch.float32 and u.shape == (8, 50_000)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert torch.equal(u * 2**24, torch.floor(u * 2**24))  # exact 24-bit grid
    flat = u.double().flatten()
    n = flat.numel()
    assert abs(flat.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / n)
    assert abs(flat.var().item() - 1 / 12) < 0.002


def test_uniform_histogram_chi_square():
    u = rng.uniform(11, Stream.MASK1, torch.arange(4), 0, 100_000).flatten()
    counts = torch.histc(u, bins=50, min=0.0, max=1.0).double()
    expected = u.numel() / 50
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 100  # 49 dof: mean 49, p(chi2 > 100) ~ 2e-5


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.double().flatten().numpy(), b.double().flatten().numpy())[0, 1])


@pytest.mark.parametrize("other", [
    dict(stream=Stream.MASK2), dict(step=1), dict(seed=1), dict(ids=torch.arange(1, 5)),
])
def test_streams_steps_seeds_and_images_are_uncorrelated(other):
    base = dict(seed=0, stream=Stream.MASK1, ids=torch.arange(4), step=0)
    a = rng.uniform(base["seed"], base["stream"], base["ids"], base["step"], 20_000)
    kw = {**base, **other}
    b = rng.uniform(kw["seed"], kw["stream"], kw["ids"], kw["step"], 20_000)
    assert not torch.equal(a, b)
    assert abs(_corr(a, b)) < 0.01  # 80k pairs: SD of r ~ 0.0035


def test_neighbouring_elements_are_uncorrelated():
    u = rng.uniform(5, Stream.INIT, torch.tensor([0]), 0, 100_000)[0]
    assert abs(_corr(u[:-1], u[1:])) < 0.015


def test_determinism_and_batch_invariance():
    ids = torch.tensor([7, 3, 1000, 3])
    block = rng.uniform(42, Stream.THRESHOLD, ids, 99, 300)
    assert torch.equal(block, rng.uniform(42, Stream.THRESHOLD, ids, 99, 300))
    alone = rng.uniform(42, Stream.THRESHOLD, torch.tensor([1000]), 99, 300)
    assert torch.equal(block[2:3], alone)
    assert torch.equal(block[1], block[3])  # same image id -> same numbers, wherever it sits
    shorter = rng.uniform(42, Stream.THRESHOLD, ids, 99, 120)
    assert torch.equal(block[:, :120], shorter)  # element i does not depend on the row length


def test_per_row_seeds_broadcast_like_separate_calls():
    seeds, ids = torch.tensor([1, 2]), torch.tensor([5, 5])
    rows = rng.uniform(seeds, Stream.MASK2, ids, 3, 64)
    assert torch.equal(rows[0], rng.uniform(1, Stream.MASK2, 5, 3, 64)[0])
    assert torch.equal(rows[1], rng.uniform(2, Stream.MASK2, 5, 3, 64)[0])


def test_large_and_negative_key_fields_are_accepted():
    u = rng.uniform(2**64 - 1, Stream.KMEANS, torch.tensor([-1, 2**62]), 2**40, 10)
    assert u.shape == (2, 10) and bool(((u >= 0) & (u < 1)).all())
    with pytest.raises(TypeError, match="integers"):
        rng.uniform(0, Stream.INIT, torch.tensor([0.5]), 0, 3)


def test_uniform_at_equals_the_dense_block():
    keys = rng.row_keys(9, Stream.MASK1, torch.arange(6), 12)
    dense = rng.bits_to_uniform(rng.random_bits(keys, 50))
    rows, cols = torch.tensor([0, 5, 3, 3]), torch.tensor([49, 0, 7, 8])
    assert torch.equal(rng.uniform_at(keys, rows, cols), dense[rows, cols])


def test_bernoulli_rate():
    b = rng.bernoulli(0.25, 1, Stream.MASK2, torch.arange(10), 0, 10_000)
    assert b.dtype == torch.bool
    assert abs(b.double().mean().item() - 0.25) < 0.005


def test_half_normal_moments():
    z = rng.half_normal(0, Stream.INIT, torch.arange(4), 0, 50_000).double()
    assert float(z.min()) >= 0
    assert abs(z.mean().item() - math.sqrt(2 / math.pi)) < 0.01
    assert abs(z.var().item() - (1 - 2 / math.pi)) < 0.01

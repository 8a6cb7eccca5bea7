"""Spike patterns, lattice mask, silent baseline and cue corruption of the associative memory (spec §4.1-§4.3)."""

import dataclasses
import zlib

import numpy as np
import pytest
import torch

from workbench.data.spike_patterns import (DELAY, NAMES, CorruptionParams, contact_sheet, corrupt, corrupted_cues,
                                           delayed_target, lattice_mask, make_patterns, render_images, save_patterns,
                                           silent_baseline, silent_baselines, write_png)


@pytest.fixture(scope="module")
def patterns():
    return make_patterns()


def test_lattice_mask_counts_and_firing_times():
    mask = lattice_mask()
    assert mask.shape == (300, 300) and mask.dtype == np.uint8
    assert int(mask.sum()) == 6000
    assert abs(mask.mean() - 1 / 15) < 1e-12
    for r in (0, 1, 2, 151, 299):
        times = np.flatnonzero(mask[r])
        assert list(times) == [5 * (r % 3) + 15 * k for k in range(20)]
    assert set(np.flatnonzero(mask.any(axis=0))) == set(range(0, 300, 5))


def test_images_follow_the_design_rules(patterns):
    images = render_images()
    assert images.shape == (10, 300, 300) and images.dtype == np.uint8 and set(np.unique(images)) == {0, 1}
    assert np.array_equal(images, render_images())  # fixed geometry, no seed
    assert patterns.shape == (10, 300, 300)  # [P, T, N]
    counts = patterns.sum(dim=(1, 2))
    assert bool(((counts >= 900) & (counts <= 1700)).all()), counts
    baseline = silent_baseline(patterns)
    assert 0.12 <= baseline <= 0.17
    assert len(NAMES) == 10 and len(set(NAMES)) == 10
    # every pattern differs from every other (near-duplicates, not duplicates)
    flat = patterns.reshape(10, -1)
    diff = (flat[:, None] != flat[None]).sum(-1)
    assert int(diff[~torch.eye(10, dtype=torch.bool)].min()) > 300
    # row = neuron, column = time: pattern[p, t, n] == image[p, n, t] on the lattice
    p, t, n = 3, 65, 100  # the stem of D (column 70 +- 15); t = 5*(100 mod 3) + 15*4 is on the lattice
    assert lattice_mask()[n, t] == 1 and images[p, n, t] == 1 and patterns[p, t, n] == 1
    assert patterns[p, t + 1, n] == 0  # off the lattice


def test_delayed_target_shifts_by_four_steps(patterns):
    target = delayed_target(patterns)
    assert torch.equal(target[:, DELAY:], patterns[:, :-DELAY])
    assert not bool(target[:, :DELAY].any())


def test_silent_baseline_matches_the_readout_energy():
    # one spike at t = 0 of one neuron: the silent loss is sum(h^2) / T with the two-state 8/2 filter (8.0603)
    raster = torch.zeros(1, 300, 1)
    raster[0, 0, 0] = 1.0
    assert silent_baselines(raster)[0].item() * 300 == pytest.approx(8.0603, abs=1e-3)


def test_clean_params_return_the_pattern(patterns):
    cues = corrupt(patterns, torch.arange(20), seed=0, epoch=0, params=CorruptionParams.clean())
    assert cues.shape == (300, 20, 300)
    assert torch.equal(cues.transpose(0, 1), patterns[torch.arange(20) % 10])


def test_corruption_is_a_pure_batch_invariant_function(patterns):
    ids = torch.tensor([3, 17, 42, 99])
    a = corrupt(patterns, ids, seed=5, epoch=2)
    assert torch.equal(a, corrupt(patterns, ids, seed=5, epoch=2))
    alone = corrupt(patterns, torch.tensor([42]), seed=5, epoch=2)
    assert torch.equal(alone[:, 0], a[:, 2])
    assert not torch.equal(a, corrupt(patterns, ids, seed=5, epoch=3))
    assert not torch.equal(a, corrupt(patterns, ids, seed=6, epoch=2))


def test_noise_rate(patterns):
    params = CorruptionParams(p_modify=0.0, p_noise=0.005)
    cues = corrupt(patterns, torch.arange(40), seed=1, epoch=0, params=params).transpose(0, 1)
    clean = patterns[torch.arange(40) % 10]
    assert bool((cues >= clean).all())  # noise only adds spikes
    extra = (cues - clean).sum() / (40 * 300 * 300 - clean.sum())
    assert abs(float(extra) - 0.005) < 0.0005


def test_jitter_moves_spikes_by_rounded_normal_steps(patterns):
    params = CorruptionParams(p_modify=1.0, p_jitter=1.0, p_delete=0.0, p_noise=0.0)
    ids = torch.arange(20)
    cues = corrupt(patterns, ids, seed=2, epoch=0, params=params).transpose(0, 1)
    clean = patterns[ids % 10]
    # spikes stay on their neuron and are >= 15 steps apart, so no merges: counts are kept per neuron
    assert torch.equal(cues.sum(dim=1), clean.sum(dim=1))
    moved = 1.0 - float((cues * clean).sum() / clean.sum())
    assert abs(moved - 0.617) < 0.03  # P(|N(0,1)| >= 0.5)
    # no spike moves by more than a few steps: every cue spike has a clean spike within +-4 steps
    near = torch.nn.functional.max_pool1d(clean.transpose(1, 2).reshape(-1, 1, 300), 9, 1, 4).reshape(20, 300, 300)
    assert bool((cues.transpose(1, 2) <= near).all())


def test_deletion_removes_a_block_or_whole_neurons(patterns):
    params = CorruptionParams(p_modify=1.0, p_jitter=0.0, p_delete=1.0, p_noise=0.0)
    ids = torch.arange(60)
    cues = corrupt(patterns, ids, seed=3, epoch=0, params=params).transpose(0, 1)
    clean = patterns[ids % 10]
    assert bool((cues <= clean).all())
    kinds = set()
    for b in range(60):
        removed = (clean[b] - cues[b]).nonzero()
        if len(removed) == 0:
            continue
        t, n = removed[:, 0], removed[:, 1]
        assert int(n.max() - n.min()) < 40
        kinds.add("block" if int(t.max() - t.min()) < 40 else "neurons")
        # everything inside the deleted neuron band and time window is gone
        assert not bool(cues[b, int(t.min()):int(t.max()) + 1, int(n.min()):int(n.max()) + 1].any())
    assert kinds == {"block", "neurons"}


def test_modify_probability(patterns):
    params = CorruptionParams(p_noise=0.0)  # faithful p_modify 0.4: changed iff jitter or delete happened
    ids = torch.arange(600)
    cues = corrupt(patterns, ids, seed=4, epoch=0, params=params).transpose(0, 1)
    changed = (cues != patterns[ids % 10]).flatten(1).any(dim=1).float().mean()
    assert abs(float(changed) - 0.4 * 0.85) < 0.05


def test_fixed_cue_sets(patterns):
    cues, pid = corrupted_cues(patterns, 12, seed=1001)
    assert cues.shape == (300, 12, 300) and pid.tolist() == [i % 10 for i in range(12)]
    assert torch.equal(cues, corrupt(patterns, torch.arange(12), 1001, 0))


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="p_noise"):
        CorruptionParams(p_noise=1.5)
    with pytest.raises(ValueError, match="block"):
        CorruptionParams(block=400)
    with pytest.raises(ValueError, match="patterns must be"):
        corrupt(torch.zeros(300, 300), [0], 0)
    with pytest.raises(ValueError, match="item ids"):
        corrupt(torch.zeros(1, 300, 300), [-1], 0)
    assert dataclasses.replace(CorruptionParams(), p_noise=0.0).p_noise == 0.0


def test_png_and_saved_files(tmp_path):
    grey = (np.arange(12 * 7) % 256).astype(np.uint8).reshape(12, 7)
    path = write_png(tmp_path / "x.png", grey)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4:idat], "big")
    raw = zlib.decompress(data[idat + 4: idat + 4 + length])
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(12, 8)
    assert (rows[:, 0] == 0).all() and np.array_equal(rows[:, 1:], grey)
    paths = save_patterns(tmp_path / "patterns")
    with np.load(paths["images"]) as saved:
        assert np.array_equal(saved["images"], render_images()) and list(saved["names"]) == list(NAMES)
    assert paths["contact_sheet"].read_bytes()[:4] == b"\x89PNG"
    sheet = contact_sheet(render_images())
    assert sheet.shape == (2 * 300 + 3 * 10, 5 * 300 + 6 * 10)

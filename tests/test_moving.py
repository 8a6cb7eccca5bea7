"""DASBE on moving shapes (Fig 5): the frame-per-iteration binding loop, its readout, experiment and views."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

from workbench.binding.dasbe import DasbeParams, run_binding
from workbench.binding.moving import (MemorylessStep, group_per_iteration, iteration_frames, relabel_groups,
                                      run_moving_binding)
from workbench.data.moving_shapes import generate_moving_shapes
from workbench.models.dae import MLPDAE
from workbench.models.rbae import RBAE
from workbench.record import SpikeRecord

SMALL = DasbeParams(delay=6, refractory=2, n_iter=5)


@pytest.fixture(scope="module")
def seqs():
    scenes = generate_moving_shapes(3, np.random.RandomState(3), frames=20)
    return scenes[0].astype(np.float32), scenes[1].astype(np.int64)


@pytest.fixture(scope="module")
def rbae():
    return RBAE((784, 24, 12), seed=0).eval()


class Ones(nn.Module):
    """Reconstruction 1 everywhere (gain 1: every on-pixel fires whenever its gate is open); logs h_prev."""

    n_hidden = 2

    def __init__(self):
        super().__init__()
        self.calls = []

    def step(self, window, h_prev):
        h = h_prev + torch.stack([window.sum(dim=1), torch.ones(len(window), dtype=window.dtype)], dim=1)
        self.calls.append((h_prev.clone(), h.clone()))
        return torch.ones_like(window), h


def test_record_shapes_meta_and_labels(seqs, rbae):
    frames, labels = seqs
    rec = run_moving_binding(rbae, frames[:2], SMALL, seed=[4, 5], labels=labels[:2], start_frame=2)
    assert isinstance(rec, SpikeRecord)
    assert rec.spikes.shape == (5 * 6, 4, 784) and rec.spikes.dtype == torch.bool
    assert rec.cycle == 6 and rec.image_shape == (28, 28)
    assert rec.meta["seeds"] == [4, 4, 5, 5] and rec.meta["image_ids"] == [0, 1, 0, 1]
    assert rec.meta["first_frame"] == 2 and rec.meta["start_frame"] == 2
    last = torch.as_tensor(labels[[0, 1, 0, 1], 6].reshape(4, -1))  # iteration 4 sees frame 2 + 4
    assert torch.equal(rec.labels, last)
    assert torch.equal(rec.images, torch.as_tensor(frames[[0, 1, 0, 1], 6].reshape(4, -1)))
    assert rec.spikes.any()
    kept = run_moving_binding(rbae, frames[:2], SMALL, seed=[4, 5], start_frame=2, record="last:2")
    assert kept.meta["first_frame"] == 5 and torch.equal(kept.spikes, rec.spikes[-12:])


def test_same_seed_same_record_and_batch_invariance(seqs, rbae):
    frames, _ = seqs
    a = run_moving_binding(rbae, frames, SMALL, seed=[1, 2], sequence_ids=[10, 11, 12])
    b = run_moving_binding(rbae, frames, SMALL, seed=[1, 2], sequence_ids=[10, 11, 12])
    assert torch.equal(a.spikes, b.spikes)
    alone = run_moving_binding(rbae, frames[2:3], SMALL, seed=2, sequence_ids=[12])
    assert torch.equal(alone.spikes[:, 0], a.spikes[:, 5])  # row s*B + b = 1*3 + 2
    other = run_moving_binding(rbae, frames[2:3], SMALL, seed=3, sequence_ids=[12])
    assert not torch.equal(other.spikes, alone.spikes)


@pytest.mark.parametrize("dense", [False, True])
def test_batched_fast_path_equals_stepwise(seqs, rbae, monkeypatch, dense):
    from workbench.binding import moving

    frames, _ = seqs
    if dense:  # dense windows take the GEMM branch of the first layer
        frames = np.ones_like(frames[:1])
    used = []
    original = moving._RbaeFastPath.__call__
    monkeypatch.setattr(moving._RbaeFastPath, "__call__", lambda self, *a: used.append(1) or original(self, *a))
    a = run_moving_binding(rbae, frames, SMALL, seed=7, impl="batched")
    b = run_moving_binding(rbae, frames, SMALL, seed=7, impl="stepwise")
    assert len(used) == SMALL.n_iter - 1  # the RBAE fast path ran once per iteration but the last
    assert torch.equal(a.spikes, b.spikes)


def test_still_sequence_with_memoryless_dae_is_run_binding(seqs):
    frames, labels = seqs
    dae = MLPDAE.from_state_dict({
        "encoder.weight": torch.randn(32, 784, generator=torch.Generator().manual_seed(0)) * 0.1,
        "encoder.bias": torch.zeros(32),
        "decoder.weight": torch.randn(784, 32, generator=torch.Generator().manual_seed(1)) * 0.1,
        "decoder.bias": torch.full((784,), 0.5)})
    still = np.repeat(frames[:, 4:5], SMALL.n_iter, axis=1)
    moving = run_moving_binding(MemorylessStep(dae), still, SMALL, seed=[9, 8], sequence_ids=[3, 4, 5])
    static = run_binding(dae, frames[:, 4], SMALL, seed=[9, 8], image_ids=[3, 4, 5])
    assert torch.equal(moving.spikes, static.spikes)


def test_frame_advances_once_per_iteration(seqs):
    frames, _ = seqs
    params = DasbeParams(delay=8, refractory=2, n_iter=6)
    rec = run_moving_binding(Ones(), frames[:1], params, seed=0, start_frame=1)
    cycles = rec.cycles()[:, :, 0]  # [K, D, N]
    for k in range(params.n_iter):
        on = torch.as_tensor(frames[0, 1 + k].reshape(-1) > 0)
        fired = cycles[k].any(dim=0)
        assert not fired[~on].any(), f"iteration {k} fired outside frame {1 + k}"
        if k > 0:  # gain 1 from iteration 1 on: every on-pixel fires within a cycle
            assert torch.equal(fired, on)
    assert not torch.equal(torch.as_tensor(frames[0, 1]), torch.as_tensor(frames[0, 2]))  # the frames do move


@pytest.mark.parametrize("impl", ["batched", "stepwise"])
def test_recurrent_state_is_kept_per_slot(seqs, impl):
    frames, _ = seqs
    model = Ones()
    D, rows = SMALL.delay, 2
    run_moving_binding(model, frames[:2], SMALL, seed=0, impl=impl, dae_dtype=None)
    # stepwise: one call per step (iteration-major, then slot); batched: one call per iteration on the D
    # slots' windows, slot-major, and none after the last iteration (its output is never read).
    # Both regroup into [iteration, slot, row, hidden].
    n_calls = SMALL.n_iter if impl == "stepwise" else SMALL.n_iter - 1
    assert len(model.calls) == n_calls * (D if impl == "stepwise" else 1)
    h_in = torch.stack([c[0] for c in model.calls]).view(n_calls, D, rows, 2)
    h_out = torch.stack([c[1] for c in model.calls]).view(n_calls, D, rows, 2)
    assert torch.equal(h_in[0], torch.zeros_like(h_in[0]))
    assert torch.equal(h_in[1:], h_out[:-1])  # slot t of frame k+1 continues slot t of frame k
    assert torch.equal(h_out[-1, ..., 1], torch.full((D, rows), float(n_calls)))  # one update per frame
    assert len(torch.unique(h_out[-1, :, 0, 0])) > 1  # the slots carry different states


def test_recurrence_off_keeps_state_zero_and_changes_spikes(seqs, rbae):
    frames, _ = seqs
    model = Ones()
    run_moving_binding(model, frames[:2], SMALL, seed=0, recurrence=False, dae_dtype=None)
    assert all(torch.equal(h_in, torch.zeros_like(h_in)) for h_in, _ in model.calls)
    with_state = run_moving_binding(rbae, frames, SMALL, seed=5)
    without = run_moving_binding(rbae, frames, SMALL, seed=5, recurrence=False)
    assert without.meta["recurrence"] is False
    assert torch.equal(with_state.spikes[:SMALL.delay], without.spikes[:SMALL.delay])  # same first iteration
    assert not torch.equal(with_state.spikes, without.spikes)  # the recurrent code matters afterwards


def test_bad_inputs_are_named(seqs, rbae):
    frames, labels = seqs
    with pytest.raises(ValueError, match=r"\[B, F, H, W\]"):
        run_moving_binding(rbae, frames[0], SMALL)
    with pytest.raises(ValueError, match="start_frame"):
        run_moving_binding(rbae, frames, DasbeParams(delay=4, n_iter=19), start_frame=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run_moving_binding(rbae, frames * 2, SMALL)
    with pytest.raises(TypeError, match="step"):
        run_moving_binding(MLPDAE((784, 8, 784)), frames, SMALL)
    with pytest.raises(ValueError, match="labels must match"):
        run_moving_binding(rbae, frames, SMALL, labels=labels[:2])
    with pytest.raises(ValueError, match="integer labels"):
        run_moving_binding(rbae, frames, SMALL, labels=labels.astype(np.float32))
    with pytest.raises(ValueError, match="impl"):
        run_moving_binding(rbae, frames, SMALL, impl="fast")


def test_relabel_largest_to_zero_and_match_objects():
    pred = torch.tensor([[2, 2, 2, 2, 0, 0, 1], [1, 1, 1, 0, 2, 2, 2]])
    labels = torch.tensor([[0, 0, 0, 0, 1, 1, 2], [0, 0, 0, 2, 1, 1, 1]])
    out = relabel_groups(pred, labels, 3)
    assert out.tolist() == [[0, 0, 0, 0, 1, 1, 2], [0, 0, 0, 2, 1, 1, 1]]
    plain = relabel_groups(pred)  # largest -> 0 by swapping with cluster 0, no matching
    assert plain.tolist() == [[0, 0, 0, 0, 2, 2, 1], [0, 0, 0, 1, 2, 2, 2]]  # a tie keeps the lower index
    with pytest.raises(ValueError, match=r"\[M, N\]"):
        relabel_groups(torch.zeros(5, dtype=torch.int64))


def test_group_per_iteration_scores_each_frame():
    # 2 iterations of D = 4 on a 1 x 6 "image": objects fire in their own slots; iteration 1's frame swaps them
    D, N = 4, 6
    labels = np.array([[[1, 1, 2, 2, 0, 0], [2, 2, 1, 1, 0, 0]]])  # [B=1, F=2, N]
    spikes = torch.zeros(2 * D, 1, N, dtype=torch.bool)
    spikes[0, 0, :2] = spikes[2, 0, 2:4] = True  # iteration 0: pixels 0-1 at slot 0, 2-3 at slot 2
    spikes[D + 1, 0, :2] = spikes[D + 3, 0, 2:3] = True  # iteration 1: pixel 3 silent (joins background)
    rec = SpikeRecord(spikes, cycle=D, meta={"seeds": [0], "image_ids": [0], "first_frame": 0})
    g = group_per_iteration(rec, labels, n_init=2)
    assert g.ami.shape == (2, 1) and g.ami[0, 0] == pytest.approx(1.0)
    assert g.ami[1, 0] < 1.0
    assert g.n_clusters.tolist() == [[3], [3]]
    assert g.groups[0, 0].tolist() == [1, 1, 2, 2, 0, 0]  # clusters numbered after the objects they cover
    assert torch.equal(g.labels, torch.as_tensor(labels).transpose(0, 1))
    assert g.frames.tolist() == [0, 1]
    with pytest.raises(ValueError, match="do not fit"):
        iteration_frames(np.zeros((1, 2, N + 1), dtype=np.int64), rec)


def test_fig5_on_a_tiny_file(tmp_path, rbae):
    from workbench.data.datasets import make_dataset
    from workbench.experiments.dasbe_moving import fig5

    sizes = {"train_multi": 3, "test": 1, "train_single": 1, "train_single_0": 1, "train_single_1": 1,
             "train_single_2": 1}
    path = make_dataset("moving_shapes_3", tmp_path / "ms3.h5", progress=False, sizes=sizes)
    d = fig5(rbae, path, trace=2, sequences=2, n_iter=17, delay=6, refractory=2, n_init=2)
    assert d.frames.shape == d.groups.shape == d.labels.shape == (17, 28, 28)
    assert d.curve_ami.shape == (17, 2) and d.curve_mean.shape == (17,)
    assert np.isnan(d.ami[:15]).all() and np.isfinite(d.ami[15:]).all()  # one object until frame 15
    assert d.n_objects[0] == 1 and d.n_objects[16] == 2
    assert set(np.unique(d.groups[16])) <= {0, 1, 2}
    summary = d.summary()
    assert summary["n_curve_rows"] == 2 and "trace_ami" in d.to_json()["summary"]
    with pytest.raises(ValueError, match="asked for sequence"):
        fig5(rbae, path, trace=7, sequences=1, n_iter=2, delay=4)
    with pytest.raises(FileNotFoundError, match="make"):
        fig5(rbae, tmp_path / "missing.h5")


def test_moving_views():
    from widgets.moving_views import ami_curve_figure, grid_image, moving_grid_figure

    K, H, W = 5, 4, 3
    frames = np.zeros((K, H, W))
    frames[:, 0, 0] = frames[:, 1, 1] = 1
    groups = np.zeros((K, H, W), dtype=np.int64)
    groups[:, 0, 0] = 1
    img = grid_image(groups, frames, columns=2)
    assert img.shape == (3 * (2 * (H + 2)) + 2 * 6 - 2, 2 * (W + 2) - 2, 3)
    assert np.allclose(img[0, 0], (0.90, 0.70, 0.10))  # object 1 gold
    assert np.allclose(img[1, 1], (0.55, 0.55, 0.55))  # on-pixel in the background cluster: grey
    assert np.allclose(img[H + 2, 0], 0.0) and np.allclose(img[H + 2, 1], 1.0)  # input: black on white
    fig = moving_grid_figure(groups, frames, columns=2, ami=[np.nan, 0.5, 1, 1, 1], appear=[0, 3])
    assert isinstance(fig, go.Figure) and len(fig.data) == 1 and len(fig.layout.annotations) == K
    assert fig.layout.annotations[0].text == "0*" and "0.50" in fig.layout.annotations[1].text
    curve = ami_curve_figure(range(K), [0.1] * K, [0.2] * K, [0.05] * K, appear=[0, 3], extra={"control": [0] * K})
    assert [t.name for t in curve.data] == ["95 % CI", "mean over sequences", "trace", "control"]
    with pytest.raises(ValueError, match="same shape"):
        grid_image(groups[:2], frames)
    with pytest.raises(ValueError, match="mean has"):
        ami_curve_figure(range(K), mean=[0.1])

"""GUST inspection (spec gust.md §2.2, §9): the optional per-step trace of run_gust (c_t, refractory counter),
the binding animation and the neuron inspector, and the score panel of the training curve."""

from __future__ import annotations

import copy
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from widgets.grouping import gust_weight, phase_hues
from widgets.gust_inspect import (
    GROUP_COLOURS,
    SILENT_ON,
    NeuronInspector,
    binding_animation_figure,
    binding_frames,
    default_pixel,
    neuron_inspector_figure,
    pixel_locator_figure,
)
from widgets.gust_views import training_curve_figure
from workbench.models.gust import GustNet, GustParams, GustTrace, gust_dynamics, initial_hidden, run_gust
from workbench.record import SpikeRecord

SMALL = GustParams(n_pixels=36, hidden=8, slots=10, enc_hidden=16, dec_hidden=16)


def small_net(seed: int = 0) -> GustNet:
    return GustNet(SMALL, seed=seed)


def images(B: int = 3, seed: int = 0) -> torch.Tensor:
    x = (torch.rand(B, 36, generator=torch.Generator().manual_seed(seed)) < 0.5).float()
    x[:, 0], x[:, 1] = 1.0, 0.0  # pixel 0 always on, pixel 1 always off
    return x


def saturated_net() -> GustNet:
    """c_t = 1 everywhere (decoder output layer: zero weights, bias 30)."""
    net = small_net()
    with torch.no_grad():
        net.decoder[2].weight.zero_()
        net.decoder[2].bias.fill_(30.0)
    return net


# --- the trace in workbench.models.gust --------------------------------------------------------------


def test_trace_changes_no_spike_and_no_result():
    net, x = small_net(), images()
    plain = run_gust(net, x, cycles=6, seed=[0, 1])
    traced = run_gust(net, x, cycles=6, seed=[0, 1], trace=True)
    assert plain.trace is None
    assert torch.equal(plain.record.spikes, traced.record.spikes) and traced.record.spikes.any()
    for name in ("prediction", "hidden", "spikes", "refractory"):
        assert torch.equal(getattr(plain, name), getattr(traced, name)), name
    tr = traced.trace
    assert tr.record is traced.record  # the inspector shares the run's record
    assert tr.c.shape == tr.refractory.shape == (60, 6, 36)
    assert tr.c.dtype == torch.float32 and tr.refractory.dtype == torch.uint8
    # the final traced counter is the run's final refractory state
    assert torch.equal(tr.refractory[-1].float(), traced.refractory.float())


def test_traced_c_is_the_decoder_prediction_of_each_slot():
    net, x = small_net(), images()
    run = run_gust(net, x, cycles=4, seed=7, trace=True)
    T = SMALL.slots
    last = run.trace.c[3 * T:].permute(1, 0, 2)  # [rows, T, N]
    assert torch.equal(last, run.prediction)
    # cycle 0: c_t = G(h0[:, t]) with h0 ~ U[0,1) from the INIT stream (float64 MLP, rounded to float32)
    h0 = initial_hidden(run.seeds, run.image_ids, SMALL, torch.device("cpu"))
    dec = copy.deepcopy(net.decoder).double()
    want = dec(h0.double()).float()  # [rows, T, N]
    torch.testing.assert_close(run.trace.c[:T].permute(1, 0, 2), want, rtol=0, atol=1e-6)
    assert bool(((run.trace.c > 0) & (run.trace.c < 1)).all())


def test_traced_refractory_counter_obeys_the_spec():
    """Spike only with the counter at 0; after a spike the counter reads 8, then counts down 7..0 (§2.2)."""
    run = run_gust(small_net(), images(B=4), cycles=10, seed=[3, 4], trace=True)
    s = run.record.spikes.numpy()
    r = run.trace.refractory.numpy().astype(np.int64)
    before = np.concatenate([np.zeros_like(r[:1]), r[:-1]])
    assert s.sum() > 50
    assert not (s & (before != 0)).any()  # never fires with a closed gate
    assert (r[s] == SMALL.tau_rfr - 1).all()
    np.testing.assert_array_equal(r[~s], np.maximum(before[~s] - 1, 0))
    assert np.array_equal(run.trace.gate_open.numpy(), before == 0)


def test_saturated_pixel_fires_every_nine_steps_and_counts_down():
    run = run_gust(saturated_net(), images(B=2), cycles=3, seed=0, trace=True)
    assert bool((run.trace.c == 1).all())
    spikes = run.record.spikes[:, 0, 0].numpy()
    assert np.flatnonzero(spikes).tolist() == [0, 9, 18, 27]
    assert run.trace.refractory[:12, 0, 0].tolist() == [8, 7, 6, 5, 4, 3, 2, 1, 0, 8, 7, 6]


def test_off_pixels_never_fire_whatever_c_says():
    run = run_gust(small_net(), images(), cycles=5, seed=0, trace=True)
    off = run.record.images == 0  # [rows, N]
    s, tr = run.record.spikes, run.trace
    assert off.any() and not s[:, off].any()
    assert not tr.refractory[:, off].any()  # the counter stays 0, the gate stays open
    assert bool((tr.c[:, off] > 0.05).all())  # the decoder predicts something there ...
    assert not tr.probability[:, off].any()  # ... but the drive x * c is 0


def test_on_pixels_fire_with_probability_c_when_the_gate_is_open():
    run = run_gust(small_net(seed=2), images(B=16, seed=1), cycles=10, seed=5, trace=True)
    tr = run.trace
    events = tr.gate_open & (run.record.images > 0)[None]
    c = tr.c[events].double()
    fired = run.record.spikes[events].double()
    assert c.numel() > 2000
    sigma = math.sqrt(float((c * (1 - c)).sum()))
    assert abs(float(fired.sum() - c.sum())) < 4 * sigma
    torch.testing.assert_close(tr.probability[events], tr.c[events])


def test_trace_argument_errors():
    net = small_net()
    with pytest.raises(ValueError, match="record=True"):
        run_gust(net, images(), cycles=2, record=False, trace=True)
    x = images()
    h0 = torch.rand(3, SMALL.slots, SMALL.hidden)
    with pytest.raises(ValueError, match="sparse=False"):
        gust_dynamics(net, x, h0, 2, lambda n: (torch.rand(3, 36), torch.ones(3, 36)), sparse=True, trace=True)
    rec = run_gust(net, x, cycles=2).record
    with pytest.raises(ValueError, match="GustTrace.c"):
        GustTrace(rec, torch.zeros(3, 3, 36), torch.zeros(20, 3, 36, dtype=torch.uint8))


# --- binding animation ------------------------------------------------------------------------------

T, H, W, CYC = 10, 3, 4, 3


def toy_record(labels: bool = True) -> SpikeRecord:
    """Pixels 0-3 are object 1 (fire at slot 2), 4-7 object 2 (slot 7), 8 overlap (slot 4), 9-11 off."""
    spikes = torch.zeros(CYC * T, 1, H * W, dtype=torch.bool)
    for c in range(CYC):
        spikes[c * T + 2, 0, 0:4] = True
        spikes[c * T + 7, 0, 4:8] = True
        spikes[c * T + 4, 0, 8] = True
    lab = torch.zeros(1, H * W, dtype=torch.int64)
    lab[0, 0:4], lab[0, 4:8] = 1, 2
    img = torch.zeros(1, H * W)
    img[0, :9] = 1
    return SpikeRecord(spikes, image_shape=(H, W), cycle=T, labels=lab if labels else None, images=img,
                       meta={"model": "gust"})


def test_binding_frames_colour_by_group():
    steps, rgb = binding_frames(toy_record(), 0, "group")
    assert steps.tolist() == list(range(CYC * T)) and rgb.shape == (CYC * T, H, W, 3)
    px = rgb.reshape(CYC * T, -1, 3)
    np.testing.assert_allclose(px[12, 0], GROUP_COLOURS[0])  # object 1 fires at slot 2 of cycle 1
    np.testing.assert_allclose(px[12, 4], SILENT_ON["black"])  # object 2 is silent then
    np.testing.assert_allclose(px[17, 5], GROUP_COLOURS[1])
    np.testing.assert_allclose(px[14, 8], (1, 1, 1))  # a firing overlap pixel (label 0) is white
    np.testing.assert_allclose(px[:, 10], 0)  # off-pixels: background
    _, white = binding_frames(toy_record(), 0, "group", background="white")
    np.testing.assert_allclose(white.reshape(CYC * T, -1, 3)[0, 10], 1)


def test_binding_frames_colour_by_phase_and_stride():
    steps, rgb = binding_frames(toy_record(), 0, "phase", stride=5, start=10, stop=30)
    assert steps.tolist() == [10, 15, 20, 25]
    px = rgb.reshape(4, -1, 3)
    hue = np.clip(gust_weight(np.arange(T), T)[:, None] * phase_hues(T), 0, 1)
    np.testing.assert_allclose(px[0, 0], hue[2])  # window 10-14 holds slot 2 of object 1 ...
    np.testing.assert_allclose(px[0, 8], hue[4])  # ... and slot 4 of the overlap pixel
    np.testing.assert_allclose(px[0, 4], SILENT_ON["black"])
    np.testing.assert_allclose(px[1, 4], hue[7])  # window 15-19: object 2 at slot 7
    np.testing.assert_allclose(px[1, 0], SILENT_ON["black"])


def test_binding_frames_errors():
    with pytest.raises(ValueError, match="colour must be"):
        binding_frames(toy_record(), 0, "rainbow")
    with pytest.raises(ValueError, match="labels"):
        binding_frames(toy_record(labels=False), 0, "group")
    with pytest.raises(ValueError, match="stride"):
        binding_frames(toy_record(), 0, "phase", stride=0)
    with pytest.raises(ValueError, match="empty step window"):
        binding_frames(toy_record(), 0, "phase", start=20, stop=10)
    with pytest.raises(IndexError):
        binding_frames(toy_record(), 3)
    own = np.full(H * W, 2)
    _, rgb = binding_frames(toy_record(labels=False), 0, "group", labels=own)
    np.testing.assert_allclose(rgb.reshape(CYC * T, -1, 3)[2, 0], GROUP_COLOURS[1])


def test_binding_animation_figure_has_one_frame_per_step_and_controls():
    fig = binding_animation_figure(toy_record(), 0, "group")
    assert isinstance(fig, go.Figure) and len(fig.frames) == CYC * T
    assert [s.label for s in fig.layout.sliders[0].steps] == [str(n) for n in range(CYC * T)]
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["play", "pause"]
    assert fig.frames[12].name == "12" and "cycle 1, slot 2" in fig.frames[12].layout.title.text
    z = np.asarray(fig.frames[12].data[0].z)
    assert z.shape == (H, W, 3) and z.dtype == np.uint8
    assert tuple(z[0, 0]) == tuple(np.round(255 * np.asarray(GROUP_COLOURS[0])).astype(np.uint8))
    assert fig.frames[12].data[1].xaxis == "x2"  # the step marker stays in the count panel
    names = [t.name for t in fig.data]
    assert names[:2] == ["frame", "current frame"] and "object 1" in names and names[-1] == "all pixels"
    assert len(binding_animation_figure(toy_record(), 0, "phase", stride=10).frames) == CYC


# --- neuron inspector -------------------------------------------------------------------------------


def toy_trace() -> GustTrace:
    rec = toy_record()
    c = torch.linspace(0, 1, CYC * T)[:, None, None].expand(CYC * T, 1, H * W).contiguous()
    s = rec.spikes.numpy()
    ref = np.zeros(s.shape, dtype=np.uint8)
    r = np.zeros(s.shape[1:], dtype=np.int64)
    for n in range(s.shape[0]):
        r = np.where(s[n], 8, np.maximum(r - 1, 0))
        ref[n] = r
    return GustTrace(rec, c, torch.from_numpy(ref))


def test_neuron_inspector_figure_shows_the_pixel_trace():
    tr = toy_trace()
    fig = neuron_inspector_figure(tr, (1, 1), 0)  # row 1, col 1 = pixel 5 (object 2, slot 7)
    by_name = {t.name: t for t in fig.data}
    np.testing.assert_allclose(by_name["c_t"].y, tr.c[:, 0, 5].numpy())
    assert list(by_name["spike"].x) == [7, 17, 27]
    np.testing.assert_array_equal(by_name["refractory r"].y, tr.refractory[:, 0, 5].numpy())
    prob = np.asarray(by_name["P(spike) = x·c_t·gate"].y)
    assert prob[8] == 0 and prob[7] == pytest.approx(float(tr.c[7, 0, 5]))  # closed gate the step after a spike
    assert "pixel 5 (row 1, col 1)" in fig.layout.title.text and "min ISI over all steps 10" in fig.layout.title.text
    bounds = [t for t in fig.data if t.name == "cycle boundary"]
    assert len(bounds) == 3 and np.nansum(np.asarray(bounds[0].x, dtype=float) == 9.5) == 2
    window = neuron_inspector_figure(tr, 5, 0, steps=(10, 20))
    assert list({t.name: t for t in window.data}["c_t"].x) == list(range(10, 20))
    off = neuron_inspector_figure(tr, 10, 0)  # an off-pixel: P = 0 even though c > 0
    assert not np.any({t.name: t for t in off.data}["P(spike) = x·c_t·gate"].y)


def test_neuron_inspector_errors_and_defaults():
    tr = toy_trace()
    with pytest.raises(IndexError, match="pixel"):
        neuron_inspector_figure(tr, H * W)
    with pytest.raises(IndexError, match="outside"):
        neuron_inspector_figure(tr, (H, 0))
    with pytest.raises(ValueError, match="empty step window"):
        neuron_inspector_figure(tr, 0, steps=(5, 5))
    with pytest.raises(TypeError, match="GustTrace"):
        neuron_inspector_figure(toy_record(), 0)
    assert default_pixel(tr) in range(9)  # a firing pixel
    loc = pixel_locator_figure(tr, (2, 3))
    assert list(loc.data[1].x) == [3] and list(loc.data[1].y) == [2]


def test_neuron_inspector_widget_redraws_on_set_and_click():
    view = NeuronInspector(toy_trace(), pixel=0)
    assert "pixel 0 " in view.figure.layout.title.text
    view.set(row=1, col=2, steps=(0, 15))
    assert view.pixel == 6 and "pixel 6 " in view.figure.layout.title.text
    assert list(view.figure.data[0].x) == list(range(15))
    assert list(view.locator.data[1].x) == [2]
    view._on_click(None, type("P", (), {"xs": [3], "ys": [0]})(), None)
    assert view.pixel == 3 and "pixel 3 " in view.figure.layout.title.text
    with pytest.raises(IndexError):
        view.set(row=H)


# --- training curve with grouping scores -------------------------------------------------------------


def test_training_curve_figure_adds_the_score_panel():
    curve = {"iteration": np.arange(1, 5), "train_loss": np.array([7e-3, 6e-3, 5e-3, 4e-3]),
             "val_iteration": np.array([0, 4]), "val_loss": np.array([6.8e-3, 4.3e-3]),
             "score_epoch": np.array([0, 1, 2]), "score_ami": np.array([0.0, 0.3, np.nan]),
             "score_synscore": np.array([0.1, 0.5, 0.6])}
    fig = training_curve_figure(curve)
    names = [t.name for t in fig.data]
    assert names == ["train (per image)", "validation (corrupted)", "AMI", "SynScore"]
    ami = fig.data[2]
    assert ami.yaxis == "y2" and list(ami.x) == [0, 1, 2] and np.isnan(ami.y[2])
    assert fig.data[0].yaxis in (None, "y")
    empty = training_curve_figure({**curve, "score_epoch": np.array([]), "score_ami": np.array([]),
                                   "score_synscore": np.array([])})
    assert [t.name for t in empty.data] == ["train (per image)", "validation (corrupted)"]
    with pytest.raises(ValueError, match="score_ami"):
        training_curve_figure({**curve, "score_ami": np.array([0.1])})

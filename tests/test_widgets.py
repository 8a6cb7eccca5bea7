"""widgets/: pure figure functions (no front end) and the ipywidgets classes driven programmatically."""

import colorsys
import importlib.util
import time

import ipywidgets as ipw
import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from widgets import (
    GroupColoring,
    NeuronTuner,
    SpikeRaster,
    dasbe_weight,
    group_image,
    grouping_figure,
    gust_weight,
    neuron_figure,
    phase_colors,
    phase_image,
    phase_strip_figure,
    phase_weights,
    raster_figure,
)
from widgets._style import GROUP_PALETTE, OVERLAP_GREY
from workbench.record import SpikeRecord

# The classes wrap plotly's FigureWidget, which needs anywidget (plotly >= 6).
needs_figurewidget = pytest.mark.skipif(
    importlib.util.find_spec("anywidget") is None, reason="plotly's FigureWidget needs the anywidget package"
)

H, W, CYCLE, K = 4, 4, 10, 3
SLOT = {1: 1, 2: 6}  # object -> the slot it fires in, every cycle (both bright under either weighting)


def two_group_record(B=2, cycle=CYCLE, image_shape=(H, W), labels=True) -> SpikeRecord:
    """4x4 pixels: object 1 (pixels 0-5) fires in slot 1, object 2 (pixels 6-11) in slot 6 of every
    cycle; pixel 12 is an overlap pixel (label 0, image on) that never fires; 13-15 are background."""
    N = H * W
    lab = torch.zeros(B, N, dtype=torch.int64)
    lab[:, 0:6], lab[:, 6:12] = 1, 2
    img = torch.zeros(B, N)
    img[:, :13] = 1.0
    spikes = torch.zeros(K * CYCLE + 3, B, N, dtype=torch.bool)  # + a trailing incomplete cycle
    for k in range(K):
        spikes[k * CYCLE + SLOT[1], :, 0:6] = True
        spikes[k * CYCLE + SLOT[2], :, 6:12] = True
    return SpikeRecord(spikes, image_shape=image_shape, cycle=cycle, labels=lab if labels else None, images=img)


def random_record(T=200, B=2, N=64, p=0.05, cycle=10, seed=0, n_groups=3) -> SpikeRecord:
    g = torch.Generator().manual_seed(seed)
    return SpikeRecord(torch.rand(T, B, N, generator=g) < p, image_shape=(8, N // 8), cycle=cycle,
                       labels=torch.randint(0, n_groups + 1, (B, N), generator=g))


def slot_rgb(t, T, weight):
    return weight(np.array([t], float), T)[0] * np.array(colorsys.hsv_to_rgb((t / T + 2 / 3) % 1, 1, 1))


# --- phase colouring ---------------------------------------------------------------------------------
def test_phase_weight_presets_match_the_spec_formulas():
    T = 10
    t = np.arange(T)
    assert np.allclose(phase_weights(T, "dasbe"), 0.5 * (np.sin(2 * np.pi * (29 / 8) * t / T) + 1))
    assert np.allclose(phase_weights(T, "dasbe", w=32 / 9), 0.5 * (np.sin(2 * np.pi * (32 / 9) * t / T) + 1))
    gust = phase_weights(T, "gust")
    assert np.allclose(gust, 0.25 * np.sin(2 * np.pi * (29 / 9 / 2) * t / T + 0.2) + 0.75)
    assert gust.min() >= 0.5 and gust.max() <= 1.0
    assert np.allclose(phase_weights(T, lambda t, T: np.ones(T)), 1.0)
    assert np.allclose(dasbe_weight(t, T), phase_weights(T, "dasbe")) and np.allclose(gust_weight(t, T), gust)
    with pytest.raises(ValueError, match="unknown phase weight"):
        phase_weights(T, "nope")


@pytest.mark.parametrize("weight", ["dasbe", "gust"])
def test_phase_colors_equal_the_weighted_hue_sum_clipped(weight):
    rng = np.random.default_rng(0)
    block = rng.random((32, 50)) < 0.15
    fn = {"dasbe": dasbe_weight, "gust": gust_weight}[weight]
    expected = np.array([np.clip(sum(slot_rgb(t, 32, fn) for t in np.flatnonzero(block[:, n])) + np.zeros(3), 0, 1)
                         for n in range(50)])
    assert np.allclose(phase_colors(block, weight), expected)
    assert np.allclose(phase_colors(torch.from_numpy(block), weight), expected)  # tensors accepted too


def test_two_groups_firing_in_distinct_slots_get_distinct_colours():
    rec = two_group_record()
    img = phase_image(rec, b=1, cycle_index=-1).reshape(-1, 3)
    assert np.allclose(img[0:6], img[0]) and np.allclose(img[6:12], img[6])  # one colour per group
    assert img[0].max() > 0.5 and img[6].max() > 0.5  # both visible
    assert np.abs(img[0] - img[6]).max() > 0.5  # and clearly different
    assert np.allclose(img[0], slot_rgb(SLOT[1], CYCLE, dasbe_weight))  # slot 1 of 10, DASBE weight
    assert np.allclose(img[12:], 0.0)  # silent pixels stay black
    assert np.allclose(phase_image(rec, 0, 0, weight="gust")[0, 0], slot_rgb(SLOT[1], CYCLE, gust_weight))


def test_phase_weight_follows_the_record_metadata():
    rec = two_group_record()
    rec.meta = {"model": "GUST"}
    assert np.allclose(phase_image(rec, 0, 0)[0, 0], slot_rgb(SLOT[1], CYCLE, gust_weight))
    rec.meta = {"D": 10, "r": 3}  # DASBE: w = D / r
    assert np.allclose(phase_image(rec, 0, 0)[0, 0], slot_rgb(SLOT[1], CYCLE, lambda t, T: dasbe_weight(t, T, 10 / 3)))


def test_group_image_colours_objects_overlap_and_background():
    rec = two_group_record()
    img = group_image(rec.labels[0], (H, W), image=rec.images[0]).reshape(-1, 3)
    assert np.allclose(img[0], GROUP_PALETTE[0]) and np.allclose(img[6], GROUP_PALETTE[1])
    assert np.allclose(img[12], OVERLAP_GREY) and np.allclose(img[13:], 0.0)
    white = group_image(rec.labels[0], (H, W), background="white").reshape(-1, 3)
    assert np.allclose(white[12:], 1.0)  # without the image, label 0 is background
    with pytest.raises(ValueError, match="image_shape"):
        group_image(rec.labels[0], (3, 3))


def test_grouping_figure_panels():
    rec = two_group_record()
    pred = rec.labels[0].flip(0)
    fig = grouping_figure(rec, b=0, cycle_index=1, pred=pred)
    assert isinstance(fig, go.Figure)
    assert [d.type for d in fig.data] == ["image"] * 4
    assert [a.text for a in fig.layout.annotations] == ["input", "ground truth", "predicted", "phase, cycle 1"]
    assert fig.data[3].z.shape == (H, W, 3) and fig.data[3].z.dtype == np.uint8
    assert np.array_equal(fig.data[3].z, np.round(255 * phase_image(rec, 0, 1)).astype(np.uint8))
    assert len(grouping_figure(rec).data) == 3  # no pred
    no_cycle = two_group_record(cycle=None)
    assert len(grouping_figure(no_cycle, cycle_index=None).data) == 2  # images only: no cycle needed


def test_phase_strip_figure():
    rec = two_group_record()
    fig = phase_strip_figure(rec, b=1, cycles=[0, -1])
    assert [a.text for a in fig.layout.annotations] == ["cycle 0", "cycle 2"]
    assert len(phase_strip_figure(rec).data) == K  # default: every cycle when there are few


def test_grouping_errors_are_clear():
    rec = two_group_record()
    with pytest.raises(ValueError, match="image_shape"):
        phase_image(two_group_record(image_shape=None), 0, 0)
    with pytest.raises(ValueError, match="cycle=None"):
        phase_image(two_group_record(cycle=None), 0, 0)
    with pytest.raises(ValueError, match="cycle=None"):
        phase_strip_figure(two_group_record(cycle=None))
    with pytest.raises(IndexError, match=r"0\.\.1"):
        grouping_figure(rec, b=2)
    with pytest.raises(IndexError, match=r"0\.\.2"):
        phase_image(rec, 0, cycle_index=3)
    with pytest.raises(ValueError, match="pred"):
        grouping_figure(rec, pred=np.zeros(5))
    with pytest.raises(ValueError, match=r"\[T, N\]"):
        phase_colors(np.zeros((2, 3, 4)))


@needs_figurewidget
def test_group_coloring_updates_the_phase_panel_in_place():
    rec = two_group_record()
    rec.spikes[2 * CYCLE + 4, 1, 0] = True  # sample 1, cycle 2 differs from cycle 0
    gc = GroupColoring(rec, pred=rec.labels)
    fw = gc.figure
    assert isinstance(fw, go.FigureWidget) and len(fw.data) == 4 and gc.cycle.value == K - 1
    gc.b.value = 1  # as if the slider moved
    phase = fw.data[3]
    assert np.array_equal(phase.z, np.round(255 * phase_image(rec, 1, 2)).astype(np.uint8))
    gc.cycle.value = 0
    assert fw.data[3] is phase  # patched in place, not a new trace
    assert np.array_equal(phase.z, np.round(255 * phase_image(rec, 1, 0)).astype(np.uint8))
    gc.set(cycle=-1, weight="gust")
    assert gc.cycle.value == K - 1
    assert np.array_equal(phase.z, np.round(255 * phase_image(rec, 1, 2, weight="gust")).astype(np.uint8))
    with pytest.raises(IndexError, match=r"0\.\.2"):
        gc.set(cycle=7)
    with pytest.raises(ValueError, match="cycle=None"):
        GroupColoring(two_group_record(cycle=None))
    assert "application/vnd.jupyter.widget-view+json" in gc._repr_mimebundle_()


# --- raster ------------------------------------------------------------------------------------------
def _points(fig):
    return [d for d in fig.data if d.mode == "markers"]


def test_raster_draws_every_spike_in_the_window_by_group():
    rec = random_record()
    fig = raster_figure(rec, b=1, start=30, stop=150)
    pts = _points(fig)
    block = rec.spikes[30:150, 1].numpy()
    assert sum(len(d.x) for d in pts) == int(block.sum())
    assert [d.name for d in pts] == ["object 1", "object 2", "object 3", "background/overlap"]
    lab = rec.labels[1].numpy()
    got = sorted((int(x), int(n)) for d in pts for x, n in zip(d.x, d.customdata))
    t, n = np.nonzero(block)
    assert got == sorted(zip((t + 30).tolist(), n.tolist()))
    for k, d in zip([1, 2, 3, 0], pts):  # each trace holds one group, in its own band of rows
        assert (lab[d.customdata] == k).all()
    assert max(pts[0].y) < min(pts[1].y) and max(pts[2].y) < min(pts[3].y)


def test_raster_rates_and_cycle_lines():
    rec = random_record()
    fig = raster_figure(rec, b=0, start=0, stop=100)
    by_name = {d.name: d for d in fig.data}
    block = rec.spikes[:100, 0].numpy()
    assert np.array_equal(by_name["population"].y, block.sum(1))
    per_group = [d for d in fig.data if d.mode == "lines" and d.yaxis == "y2" and d.name != "population"]
    assert len(per_group) == 4 and np.allclose(sum(np.asarray(d.y) for d in per_group), block.sum(1))
    lines = by_name["cycle boundary"]
    assert np.allclose(np.asarray(lines.x, float)[::3], np.arange(0, 101, 10) - 0.5)
    plain = raster_figure(random_record(cycle=None), show_rate=False)
    assert [d.name for d in plain.data] == ["object 1", "object 2", "object 3", "background/overlap"]


def test_raster_without_colouring_is_one_trace():
    rec = random_record()
    fig = raster_figure(rec, color_by="none", show_rate=False)
    pts = _points(fig)
    assert len(pts) == 1 and pts[0].name == "spikes" and len(pts[0].x) == int(rec.spikes[:, 0].sum())
    assert np.array_equal(pts[0].y, pts[0].customdata)  # rows are the neuron indices


def test_raster_thins_above_max_points():
    rec = random_record(p=0.3)
    fig = raster_figure(rec, max_points=500)
    assert sum(len(d.x) for d in _points(fig)) <= 500 and "showing 1 in" in fig.layout.title.text


def test_raster_errors_are_clear():
    rec = random_record()
    with pytest.raises(IndexError, match=r"0\.\.1"):
        raster_figure(rec, b=2)
    with pytest.raises(ValueError, match="color_by"):
        raster_figure(rec, color_by="phase")
    with pytest.raises(ValueError, match="empty time window"):
        raster_figure(rec, start=50, stop=50)


def test_raster_with_1e5_spikes_builds_fast():
    T, N = 1000, 1000  # 1e6 cells at p = 0.1 -> about 1e5 spikes
    rec = SpikeRecord(torch.rand(T, 1, N, generator=torch.Generator().manual_seed(1)) < 0.1, cycle=10,
                      labels=torch.randint(0, 4, (1, N)))
    raster_figure(rec)  # warm-up: plotly's validators load lazily on first use
    t0 = time.perf_counter()
    fig = raster_figure(rec)
    took = time.perf_counter() - t0
    n = int(rec.spikes.sum())
    print(f"\nraster_figure with {n} spikes: {took * 1e3:.0f} ms")
    assert n > 95_000 and sum(len(d.x) for d in _points(fig)) == n
    assert took < 2.0


@needs_figurewidget
def test_spike_raster_widget_responds_to_its_controls():
    rec = random_record()
    sr = SpikeRaster(rec, window=100)
    fw = sr.figure
    assert isinstance(fw, go.FigureWidget) and sr.steps.value == (0, 100)
    first = _points(fw)[0]
    sr.steps.value = (120, 160)  # as if the range slider moved
    assert _points(fw)[0] is first  # same trace, new data
    assert sum(len(d.x) for d in _points(fw)) == int(rec.spikes[120:160, 0].sum())
    assert min(first.x) >= 120 and max(first.x) < 160
    sr.color_by.value = "none"
    assert len(_points(fw)) == 1
    sr.set(b=1, start=0, stop=50, color_by="labels")
    assert sum(len(d.x) for d in _points(fw)) == int(rec.spikes[:50, 1].sum()) and len(_points(fw)) == 4
    with pytest.raises(IndexError):
        sr.set(b=5)
    unlabelled = SpikeRaster(SpikeRecord(rec.spikes))
    assert unlabelled.color_by.value == "none" and unlabelled.color_by.disabled


# --- neuron tuner (over workbench.neurons.explore) -----------------------------------------------------
@pytest.fixture(scope="module")
def explore():
    return pytest.importorskip("workbench.neurons.explore")


def test_neuron_figure_for_every_model(explore):
    for key, spec in explore.NEURON_MODELS.items():
        trace = explore.simulate_neuron(key, T=120, seed=3)
        fig = neuron_figure(trace, spec.title)
        names = [d.name for d in fig.data]
        assert {"input", "membrane", "threshold", "spike", "spike train"} <= set(names), key
        assert ("psp" in names) == (trace.psp is not None), key
        assert set(trace.extra) <= set(names), key
        by = {d.name: d for d in fig.data}
        assert np.allclose(by["membrane"].y, trace.membrane) and np.allclose(by["input"].y, trace.input)
        assert len(by["spike"].x) == len(by["spike train"].x) == int(np.sum(trace.spikes)), key
        n_panels = 3 + (trace.psp is not None) + len(trace.extra)  # one row per extra
        assert len({d.yaxis for d in fig.data}) == n_panels, key


@needs_figurewidget
def test_neuron_tuner_builds_sliders_and_redraws_in_place(explore):
    tuner = NeuronTuner(model="lif", T=80, seed=1)
    spec = explore.NEURON_MODELS["lif"]
    assert list(tuner.params) == [p.name for p in spec.params]
    for p in spec.params:
        assert isinstance(tuner.params[p.name], ipw.IntSlider if p.integer else ipw.FloatSlider)
        assert tuner.params[p.name].value == pytest.approx(p.default)
    membrane = next(d for d in tuner.figure.data if d.name == "membrane")
    tuner.inputs["amplitude"].value = 2.5  # as if the slider moved
    assert next(d for d in tuner.figure.data if d.name == "membrane") is membrane  # patched in place
    assert np.allclose(membrane.y, tuner.trace.membrane) and np.allclose(tuner.trace.input.max(), 2.5)
    p0 = spec.params[0]
    before = tuner.trace.membrane.copy()
    tuner.params[p0.name].value = p0.max if p0.default != p0.max else p0.min
    assert np.allclose(membrane.y, tuner.trace.membrane)
    expected = explore.simulate_neuron("lif", tuner.param_values(), input_kind=tuner.input_kind.value, T=80, seed=1,
                                       **tuner.input_values())
    assert np.allclose(tuner.trace.membrane, expected.membrane)
    assert tuner.trace.membrane.shape == before.shape == (80,)


@needs_figurewidget
def test_neuron_tuner_switches_models_and_checks_set(explore):
    tuner = NeuronTuner()
    for key, spec in explore.NEURON_MODELS.items():
        tuner.model.value = key  # as if picked in the dropdown
        assert list(tuner.params) == [p.name for p in spec.params], key
        assert tuner.input_kind.value == spec.default_input
        assert np.allclose(next(d for d in tuner.figure.data if d.name == "membrane").y, tuner.trace.membrane)
    p = explore.NEURON_MODELS["lif"].params[0]
    tuner.set(model="lif", input_kind="step", seed=4, **{p.name: p.min})
    assert tuner.model.value == "lif" and tuner.params[p.name].value == pytest.approx(p.min)
    assert tuner.input_kind.value == "step" and tuner.seed.value == 4
    with pytest.raises(KeyError, match="unknown control"):
        tuner.set(no_such_knob=1)
    with pytest.raises(ValueError, match="outside its range"):
        tuner.set(**{p.name: p.max + 10 * (p.max - p.min + 1)})
    with pytest.raises(ValueError, match="unknown neuron model"):
        NeuronTuner(model="hodgkin_huxley")
    assert "application/vnd.jupyter.widget-view+json" in tuner._repr_mimebundle_()


@needs_figurewidget
def test_neuron_tuner_reports_invalid_combinations_without_losing_the_figure(explore):
    tuner = NeuronTuner(model="iir", T=60)
    good = tuner.trace
    tuner.params["tau_s"].value = tuner.params["tau_m"].value  # the dual-exp kernel needs tau_s != tau_m
    assert "must differ" in tuner.status.value and tuner.trace is good
    tuner.params["tau_s"].value = 2.0
    assert tuner.status.value == "" and tuner.trace is not good
    with pytest.raises(ValueError, match="must differ"):  # programmatic use raises
        tuner.set(tau_s=tuner.params["tau_m"].value)


def test_raster_active_only_drops_silent_neurons_and_keeps_group_order():
    import numpy as np
    import torch

    from widgets import raster_figure
    from workbench.record import SpikeRecord

    spikes = torch.zeros(6, 1, 10, dtype=torch.bool)
    spikes[1, 0, 7] = spikes[2, 0, 2] = spikes[4, 0, 5] = True  # 3 active neurons out of 10
    labels = torch.tensor([[0, 0, 2, 0, 0, 1, 0, 1, 0, 0]])
    fig = raster_figure(SpikeRecord(spikes, labels=labels), active_only=True)
    assert list(fig.layout.yaxis.range) == [-0.5, 2.5]
    rows = {tr.name: sorted(int(y) for y in tr.y) for tr in fig.data if tr.mode == "markers" and len(tr.y)}
    assert rows == {"object 1": [0, 1], "object 2": [2]}  # neurons 5, 7 (object 1) then 2 (object 2)
    full = raster_figure(SpikeRecord(spikes, labels=labels))
    assert list(full.layout.yaxis.range) == [-0.5, 9.5]
    assert np.asarray(full.data[-1].y).sum() == 3 and full.data[-1].name == "population"

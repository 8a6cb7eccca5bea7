"""Single-neuron registry used by the NeuronTuner widget."""

import numpy as np
import pytest

from workbench.neurons.explore import (
    INPUT_KINDS,
    NEURON_MODELS,
    NeuronTrace,
    ParamSpec,
    make_input,
    simulate_neuron,
)

KEYS = ["lif", "iir", "stochastic_dasbe", "stochastic_gust", "pcnn"]


def test_registry_keys_and_param_specs():
    assert list(NEURON_MODELS) == KEYS
    for key, spec in NEURON_MODELS.items():
        assert spec.key == key and spec.title and spec.description
        assert spec.default_input in INPUT_KINDS
        names = [p.name for p in spec.params]
        assert len(names) == len(set(names))
        for p in spec.params:
            assert isinstance(p, ParamSpec)
            assert p.min <= p.default <= p.max and p.step > 0, p
            if p.integer:
                assert float(p.default).is_integer()


@pytest.mark.parametrize("key", KEYS)
def test_every_model_simulates_with_correct_shapes(key):
    T = 60
    trace = simulate_neuron(key, T=T, seed=1)
    assert isinstance(trace, NeuronTrace)
    for name in ("t", "input", "membrane", "threshold", "spikes"):
        array = getattr(trace, name)
        assert isinstance(array, np.ndarray) and array.shape == (T,), name
    assert trace.spikes.dtype == bool
    assert trace.psp is None or trace.psp.shape == (T,)
    for name, array in trace.extra.items():
        assert isinstance(array, np.ndarray) and array.shape == (T,), name
    assert np.isfinite(trace.membrane).all() and np.isfinite(trace.threshold).all()


@pytest.mark.parametrize("key", KEYS)
def test_same_seed_same_trace(key):
    a = simulate_neuron(key, input_kind="bernoulli", T=80, seed=4, rate=0.5)
    b = simulate_neuron(key, input_kind="bernoulli", T=80, seed=4, rate=0.5)
    for name in ("input", "membrane", "threshold", "spikes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_stochastic_seeds_differ():
    a = simulate_neuron("stochastic_gust", T=200, seed=1)
    b = simulate_neuron("stochastic_gust", T=200, seed=2)
    assert not np.array_equal(a.spikes, b.spikes)


def test_unknown_names_raise_listing_the_valid_ones():
    with pytest.raises(ValueError, match="stochastic_gust"):
        simulate_neuron("izhikevich")
    with pytest.raises(ValueError, match="tau_mem"):
        simulate_neuron("lif", {"tau": 3.0})
    with pytest.raises(ValueError, match="spike_train"):
        simulate_neuron("lif", input_kind="sine")
    with pytest.raises(ValueError, match="amplitude"):
        simulate_neuron("lif", frequency=3.0)


def test_make_input_kinds():
    T = 20
    np.testing.assert_array_equal(make_input("constant", T, amplitude=0.5), np.full(T, 0.5))
    step = make_input("step", T, start=5)
    assert step[:5].sum() == 0 and (step[5:] == 1).all()
    assert np.flatnonzero(make_input("pulse", T, start=3)).tolist() == [3]
    assert np.flatnonzero(make_input("pulse", T, start=3, stop=6)).tolist() == [3, 4, 5]
    assert np.flatnonzero(make_input("spike_train", T, start=2, period=5)).tolist() == [2, 7, 12, 17]
    bern = make_input("bernoulli", 10_000, rate=0.2, seed=3)
    assert set(np.unique(bern)) <= {0.0, 1.0} and abs(bern.mean() - 0.2) < 0.02
    np.testing.assert_array_equal(bern, make_input("bernoulli", 10_000, rate=0.2, seed=3))
    windowed = make_input("bernoulli", 10_000, rate=0.2, seed=3, start=100, stop=200)
    np.testing.assert_array_equal(windowed[100:200], bern[100:200])
    assert windowed[:100].sum() == 0 and windowed[200:].sum() == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="noise", T=5), "constant"),
        (dict(kind="step", T=0), "T"),
        (dict(kind="step", T=5, start=7), "start"),
        (dict(kind="step", T=5, start=3, stop=2), "stop"),
        (dict(kind="spike_train", T=5, period=0), "period"),
        (dict(kind="bernoulli", T=5, rate=1.5), "rate"),
    ],
)
def test_make_input_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_input(**kwargs)


def test_lif_physics():
    supra = simulate_neuron("lif", {"weight": 0.5}, input_kind="constant", T=100)
    sub = simulate_neuron("lif", {"weight": 0.1}, input_kind="constant", T=100)  # steady state 0.55 < 1
    assert supra.spikes.sum() > 3 and sub.spikes.sum() == 0
    assert (supra.membrane[supra.spikes] > supra.threshold[supra.spikes]).all()
    half_dt = simulate_neuron("lif", {"dt": 0.5}, T=10)
    np.testing.assert_allclose(half_dt.t, np.arange(10) * 0.5)


def test_iir_default_reproduces_the_composition_oracle():
    # snn_iir §2.6: constant analog pixel 1.0 -> IIR 4/1 -> neuron gives 0010101010100101010101001.
    trace = simulate_neuron("iir", T=25)
    assert "".join(map(str, trace.spikes.astype(int))) == "0010101010100101010101001"
    low_pass = simulate_neuron("iir", {"filter": 1}, T=25)
    assert int(low_pass.spikes.sum()) == 18
    assert simulate_neuron("iir", {"filter": 2}, T=25).psp[0] == 0.0  # two-state form lags one step
    with pytest.raises(ValueError, match="differ"):
        simulate_neuron("iir", {"tau_s": 4.0})


@pytest.mark.parametrize("key", ["stochastic_dasbe", "stochastic_gust"])
def test_stochastic_physics(key):
    silent = simulate_neuron(key, input_kind="constant", amplitude=0.0, T=300)
    assert silent.spikes.sum() == 0
    trace = simulate_neuron(key, {"gain": 1.0}, T=300, seed=2)
    drive = trace.extra["drive"]
    assert ((trace.membrane >= drive) & (trace.membrane < drive + 1)).all()
    times = np.flatnonzero(trace.spikes)
    isi = 10 if key == "stochastic_dasbe" else 9
    assert len(times) > 10 and np.diff(times).min() >= isi


def test_pcnn_physics():
    assert simulate_neuron("pcnn", input_kind="constant", amplitude=0.0, T=100).spikes.sum() == 0
    isolated = simulate_neuron("pcnn", {"patch": 1, "keep_prob": 1.0}, T=100)
    assert (isolated.extra["linking"] == 0).all()  # no neighbours: no linking
    # isolated and never dropped: fires when theta decays to 1, first at t = 4 (2 exp(-5/6) <= 1)
    assert np.flatnonzero(isolated.spikes)[0] == 4
    with pytest.raises(ValueError, match="odd"):
        simulate_neuron("pcnn", {"patch": 4})


def test_simulate_callable_accepts_partial_params():
    spec = NEURON_MODELS["lif"]
    trace = spec.simulate({"tau_mem": 20.0}, make_input("step", 30, start=5), 0)
    assert trace.spikes.shape == (30,) and trace.input[:5].sum() == 0

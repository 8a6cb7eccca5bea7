"""The "projected" IIR parametrisation: free coefficient steps, poles pulled back inside |z| <= 0.995."""

import math

import pytest
import torch

from workbench.experiments.snn_iir_assoc import smoke_config, train_assoc
from workbench.models.snn_layers import project_filters_
from workbench.neurons.iir import (PROJECTED_MAX_MODULUS, DualExpIIR, DualExpIIRParams, IIRCoefficients,
                                   iir_pole_moduli, project_poles_)


def roots(a1, a2):
    """numpy roots of z² - a1 z - a2, per channel."""
    import numpy as np

    return [np.roots([1.0, -float(x), -float(y)]) for x, y in zip(a1, a2)]


def test_projection_moves_only_outside_poles_and_keeps_complex_angles():
    # stable real (tau 8/2), unstable complex, stable complex, one real root at 1, two real roots outside, stable
    a1 = torch.tensor([1.489, 2.1, 0.5, 1.9, -2.5, 0.3], dtype=torch.float64)
    a2 = torch.tensor([-0.535, -1.2, -0.8, -0.9, -1.0, 0.2], dtype=torch.float64)
    b1, b2 = a1.clone(), a2.clone()
    moved = project_poles_(b1, b2, 0.9)
    inside = iir_pole_moduli(IIRCoefficients(a1, a2, a1)) <= 0.9
    assert moved == int((~inside).sum()) == 3
    assert torch.equal(b1[inside], a1[inside]) and torch.equal(b2[inside], a2[inside])
    assert float(iir_pole_moduli(IIRCoefficients(b1, b2, b1)).max()) <= 0.9 + 1e-12
    before, after = roots(a1, a2)[1], roots(b1, b2)[1]  # the complex pair keeps its angle
    assert abs(abs(after[0]) - 0.9) < 1e-9
    assert math.isclose(abs(math.atan2(before[0].imag, before[0].real)),
                        abs(math.atan2(after[0].imag, after[0].real)), rel_tol=1e-9)
    real_after = sorted(roots(b1, b2)[3].real)  # roots 0.9 and 1.0 -> 0.9 and 0.9
    assert real_after == pytest.approx([0.9, 0.9])
    c1, c2 = b1.clone(), b2.clone()
    assert project_poles_(c1, c2, 0.9) == 0 and torch.equal(c1, b1) and torch.equal(c2, b2)  # idempotent
    with pytest.raises(ValueError, match="max_modulus"):
        project_poles_(b1, b2, 1.0)


def test_projected_filter_starts_like_free_and_only_it_projects():
    free = DualExpIIR(3, DualExpIIRParams(8, 2, parametrisation="free"))
    projected = DualExpIIR(3, DualExpIIRParams(8, 2, parametrisation="projected"))
    for a, b in zip(free.coefficients(), projected.coefficients()):
        assert torch.equal(a, b)
    for m in (free, projected):
        with torch.no_grad():
            m.alpha_1.fill_(2.2)
            m.alpha_2.fill_(-1.3)
    assert project_filters_(free) == 0 and free.max_pole_modulus() > 1.1
    assert project_filters_(projected) == 3
    assert projected.max_pole_modulus() == pytest.approx(PROJECTED_MAX_MODULUS, abs=1e-6)


def test_projected_training_stays_stable_where_free_training_diverges(tmp_path):
    # lr 5e-2 drives the free coefficients' poles far outside the unit circle within one epoch
    poles = {}
    for parametrisation in ("free", "projected"):
        config = smoke_config(hidden=(12, 8, 12), steps=100, val_n=8, test_n=10, epochs=1, max_iters=3, lr=5e-2,
                              parametrisation=parametrisation, fallback="off")
        with pytest.warns() if parametrisation == "free" else _no_warning():
            history = train_assoc(config, tmp_path / parametrisation, progress=False).history
        poles[parametrisation] = history["max_pole_modulus"][-1]
    assert poles["free"] > 1.1
    assert poles["projected"] <= PROJECTED_MAX_MODULUS + 1e-6


class _no_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

"""The calibrator: fixes a known distortion, never reorders accounts (AUC unchanged), travels as JSON,
and the pyfunc model's copy of the map agrees with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from riskml.exceptions import ModelError
from riskml.measure.calibration import Calibrator, expit, fit_calibrator, logit
from riskml.measure.tables import calibration_table


def _sample(n: int, seed: int):
    rng = np.random.default_rng(seed)
    z_true = rng.normal(-3.5, 1.5, n)
    y = (rng.random(n) < expit(z_true)).astype(int)
    raw = expit(1.6 * z_true + 1.8)  # overconfident at the top, like the boosted model's band E
    return y, raw


def test_calibrator_fixes_a_distortion_without_reordering():
    y_fit, raw_fit = _sample(60_000, 0)
    y, raw = _sample(60_000, 1)
    before = calibration_table(y, raw)
    assert not before["ok"].all()  # the distortion is visible by decile
    cal = fit_calibrator(y_fit, raw_fit, events_per_bin=40)
    q = cal.apply(raw)
    after = calibration_table(y, q)
    assert after["ok"].all(), after
    assert roc_auc_score(y, q) == roc_auc_score(y, raw)  # strictly increasing: the same ranking exactly
    assert np.all(np.diff(q[np.argsort(raw)]) >= 0)
    # beyond the outermost knots the map runs parallel to the raw log-odds
    far = np.array([1e-7, 1 - 1e-7])
    assert logit(cal.apply(far)) - logit(far) == pytest.approx([cal.y[0] - cal.x[0], cal.y[-1] - cal.x[-1]])


def test_calibrator_json_round_trip_and_bad_knots():
    cal = fit_calibrator(*_sample(20_000, 2), events_per_bin=30)
    back = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    p = np.linspace(0.001, 0.999, 50)
    assert back.apply(p) == pytest.approx(cal.apply(p))
    assert Calibrator.from_dict(None) is None
    with pytest.raises(ModelError, match="method"):
        Calibrator.from_dict({"method": "pickle", "x": [0, 1], "y": [0, 1]})
    with pytest.raises(ModelError, match="strictly increasing"):
        Calibrator((0.0, 1.0), (1.0, 0.5))
    # too little evidence: no calibrator rather than a noisy one
    assert fit_calibrator([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3], events_per_bin=40) is None


def test_multiclass_keeps_the_split_of_the_adverse_classes():
    cal = Calibrator((-3.0, 0.0), (-2.0, -1.0))
    proba = np.array([[0.9, 0.06, 0.04], [0.5, 0.1, 0.4]])
    out = cal.apply_proba(proba)
    assert out.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert out[:, 1] / out[:, 2] == pytest.approx(proba[:, 1] / proba[:, 2])
    assert 1 - out[:, 0] == pytest.approx(cal.apply(1 - proba[:, 0]))

"""The what-if measured: p_after against the oracle under intervention, per factor (hand-made cases)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from riskml.evaluation.whatif import summarise
from riskml.measure.whatif_map import WhatIfModel, fit_change
from riskml.simulate.intervention import ACTIONABLE


def _cases(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["factor", "p_before", "p_after", "true_before", "true_after", "se_true_diff"])


def test_mae_direction_and_calibration_by_hand():
    cases = _cases([
        ("overdue", 0.30, 0.10, 0.32, 0.05, 0.01),   # lowers, truly lowers: right; error 0.05
        ("overdue", 0.20, 0.15, 0.20, 0.25, 0.01),   # shown lowering, truly raises: wrong; error 0.10
        ("overdue", 0.05, 0.04, 0.05, 0.05, 0.02),   # no true change, but within the noise: not judged
        ("multi_lending", 0.40, 0.30, 0.45, 0.38, 0.02),  # right; error 0.08
        ("multi_lending", 0.10, 0.10, 0.12, 0.02, 0.01),  # no change shown, truly lowers: wrong; error 0.08
        ("abnormal_use", 0.30, 0.20, 0.30, 0.30, 0.0),  # truly no change (the same futures): not judged
        ("abnormal_use", 0.02, 0.01, 0.05, 0.02, 0.0),  # right: lowers, truly lowers
    ])
    got = summarise(cases, side="adverse")
    m = got.metrics
    assert m["whatif_mae_overdue"] == pytest.approx((0.05 + 0.10 + 0.01) / 3)
    assert m["whatif_direction_overdue"] == pytest.approx(1 / 2)  # 2 judged, 1 right
    assert m["whatif_direction_multi_lending"] == pytest.approx(1 / 2)
    assert m["whatif_direction_abnormal_use"] == 1.0
    assert m["whatif_mae"] == pytest.approx(np.mean([0.05, 0.10, 0.01, 0.08, 0.08, 0.10, 0.01]))
    assert m["whatif_direction"] == pytest.approx(3 / 5) and m["whatif_cases"] == 7
    # the model's own error on the same cases (p_before against the plain oracle), logged beside the what-if's
    assert m["whatif_mae_before_overdue"] == pytest.approx((0.02 + 0.0 + 0.0) / 3)
    assert m["whatif_mae_before"] == pytest.approx(np.mean([0.02, 0, 0, 0.05, 0.02, 0, 0.03]))
    assert got.per_factor.loc["overdue", "judged"] == 2
    assert got.per_factor.loc["overall", "bias"] == pytest.approx(np.mean([0.05, -0.10, -0.01, -0.08, 0.08, -0.1,
                                                                            -0.01]))
    cal = got.calibration.loc["overall"]
    assert cal["cases"].sum() == 7 and cal["p_after"].is_monotonic_increasing
    assert (cal["truth"] * cal["cases"]).sum() == pytest.approx(cases["true_after"].sum())


def test_a_change_within_the_noise_is_not_judged():
    # a true change of 0.03 with a standard error of 0.02 is noise (< 2 se): not judged either way
    got = summarise(_cases([("abnormal_use", 0.2, 0.1, 0.20, 0.23, 0.02)]), side="adverse")
    assert got.per_factor.loc["abnormal_use", "judged"] == 0 and np.isnan(got.metrics["whatif_direction"])
    # the recovery side's right direction is up: advice that truly raises P(recovery), shown raising it
    got = summarise(_cases([("overdue", 0.2, 0.5, 0.20, 0.60, 0.02)]), side="recovery")
    assert got.metrics["whatif_direction"] == 1.0


def _learned(seed: int = 0):
    """A learned what-if fitted on hand-made cases: P(recovery) under the advice is 0.9 where the first
    feature is high, 0.2 elsewhere; the plain oracle's is 0.1 (so the advice truly raises it)."""
    rng = np.random.default_rng(seed)
    n = 600
    X = rng.uniform(size=(n, 2))
    factor = np.where(rng.uniform(size=n) < 0.5, "overdue", "multi_lending")
    after = np.where(X[:, 0] > 0.5, 0.9, 0.2)
    before = np.full(n, 0.4)  # the model's probability: too high for half the accounts, too low for the rest
    return fit_change(X, factor, before, before, after - 0.1, factors=list(ACTIONABLE), direction=1, after=after,
                      seed=seed, num_threads=1), X


def test_learned_level_is_taken_where_it_lies_past_the_model_and_never_against_the_advice():
    model, X = _learned()
    before = np.full(len(X), 0.4)
    p = model.apply(X, "overdue", before, before)
    high = X[:, 0] > 0.5
    # where the oracle's level under the advice lies above the model's probability, it is the what-if
    assert np.abs(p[high] - 0.9).mean() < 0.05
    # below it, the what-if never says the advice lowers P(recovery): the model's probability plus the change
    assert (p >= before).all() and np.abs(p[~high] - 0.5).mean() < 0.05
    # it travels in the manifest (JSON) and gives the same numbers back
    again = WhatIfModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.array_equal(again.apply(X, "overdue", before, before), p)


def test_a_manifest_with_the_change_alone_still_loads():
    model, X = _learned()
    old = {k: v for k, v in model.to_dict().items() if k != "level_model"}
    before = np.full(len(X), 0.4)
    p = WhatIfModel.from_dict(old).apply(X, "overdue", before, before)
    # the model's probability plus the change everywhere (0.4 + 0.8, capped at 1, where the advice does most)
    assert np.abs(p - np.where(X[:, 0] > 0.5, 1.0, 0.5)).mean() < 0.05

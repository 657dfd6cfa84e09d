"""``model=auto``: LightGBM text surgery (step-function trees, scaling, joining), the scorecard as trees,
the sizing rules, stacking, and what a fit chooses and ships."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskml.exceptions import ConfigError
from riskml.explain import FactorExplainer
from riskml.training import select, trees
from riskml.training.fit import fit

AUTO = {"name": "auto", "monotone": True, "num_boost_round": 300, "early_stopping_rounds": 20, "inner_folds": 3,
        "candidates": ["lightgbm", "lightgbm_large", "logistic"], "C": 1.0}


def frame(n: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n).astype("float32"), "b": rng.integers(0, 5, n).astype("float32"),
                      "c": pd.Categorical(rng.choice(["x", "y", "z"], n), categories=["x", "y", "z"])})
    X.loc[:20, "a"] = np.nan
    z = 1.2 * X["a"].fillna(0.5) - 0.4 * X["b"] + (X["c"] == "y") * 0.8 + 0.5 * (X["a"].fillna(0) > 1) * X["b"]
    y = (rng.random(n) < 1 / (1 + np.exp(-(z - 0.5)))).astype(np.int64).to_numpy()
    return X, y


def template(X, y) -> tuple[str, str]:
    head, _, foot = trees.split_model(lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 1)
                                      .model_to_string())
    return head, foot


def test_step_function_trees_scale_shift_and_join_into_one_model():
    X, y = frame(300)
    head, foot = template(X, y)
    a = trees.additive_tree(0, thresholds=[-1, 0, 1], values=[-2, -1, 1, 2], counts=[50, 100, 100, 29],
                            nan_value=5, nan_count=21, hessian=0.2)
    c = trees.additive_tree(2, thresholds=[0.5, 1.5], values=[10, 20, 30], counts=[100, 100, 100], nan_value=-7,
                            nan_count=0, hessian=0.2)
    model = lgb.Booster(model_str=trees.join_model(head, [trees.shift_tree(a, 0.5), trees.scale_tree(c, 0.1)], foot))
    t = pd.DataFrame({"a": [np.nan, -3, -0.5, 0.5, 3.0, 1.0], "b": 0.0,
                      "c": pd.Categorical(["x", "y", "z", None, "x", "z"], categories=["x", "y", "z"])})
    # by hand: a's bin (+0.5 shift) plus a tenth of c's level value (codes 0, 1, 2; missing -7)
    want = np.array([5.5 + 1, -1.5 + 2, -0.5 + 3, 1.5 - 0.7, 2.5 + 1, 1.5 + 3])
    np.testing.assert_allclose(model.predict(t, raw_score=True), want, rtol=1e-12)
    # factor TreeSHAP explains it exactly: per tree, one feature's value against its expectation
    contrib = FactorExplainer(model, {"a": "overdue", "b": "other", "c": "other"}).contributions(
        t.assign(c=t["c"].cat.codes.replace(-1, np.nan).astype(float)))
    np.testing.assert_allclose(contrib[:, 0, :].sum(axis=1), want, atol=1e-12)
    assert "split_gain=" in c and all(float(g) > 0 for g in c.split("split_gain=")[1].split("\n")[0].split()[1:])


def test_the_scorecard_as_trees_gives_the_logistic_log_odds():
    X, y = frame(2000)
    X["d"] = np.random.default_rng(3).lognormal(size=len(X)).astype("float32")  # > 512 distinct values
    lr = select._logistic(X, y, C=1.0, seed=0, num_threads=1, directions={})
    card, intercept = select.scorecard_trees(lr, X, hessian=0.2)
    head, foot = template(X, y)
    card[0] = trees.shift_tree(card[0], intercept)
    model = lgb.Booster(model_str=trees.join_model(head, card, foot))
    got, want = model.predict(X, raw_score=True), select._decision(lr, X)
    assert np.abs(got - want).max() < 0.05 and np.abs(got - want).mean() < 0.01
    # at most 512 distinct values a feature: one bin per value, exact at every training row
    few = X[["a", "b", "c"]].assign(a=X["a"].round(1))  # about 80 distinct values
    lr = select._logistic(few, y, C=1.0, seed=0, num_threads=1, directions={})
    card, intercept = select.scorecard_trees(lr, few, hessian=0.2)
    card[0] = trees.shift_tree(card[0], intercept)
    exact = lgb.Booster(model_str=trees.join_model(*template(few, y)[:1], card, template(few, y)[1]))
    np.testing.assert_allclose(exact.predict(few, raw_score=True), select._decision(lr, few), atol=1e-9)


def test_sizing_grows_with_the_rows_and_keeps_every_feature_of_a_narrow_table():
    small, big = select.sized_params(1000, 3), select.sized_params(100_000, 30)
    assert (small["num_leaves"], small["min_data_in_leaf"], small["feature_fraction"]) == (4, 16, 1.0)
    assert (big["num_leaves"], big["min_data_in_leaf"], big["feature_fraction"]) == (32, 158, 0.8)
    assert big["learning_rate"] == pytest.approx(0.05 * 10 ** 0.25)
    large = select.sized_params(1000, 3, large=True)
    assert (large["num_leaves"], large["min_data_in_leaf"]) == (16, 5)
    # few events per column shrink the scorecard's C
    X = pd.DataFrame({"a": np.zeros(1000), "c": pd.Categorical(["x"] * 1000, categories=list("xyz"))})
    assert select.scorecard_C(1.0, np.r_[np.zeros(980), np.ones(20)], X) == pytest.approx(0.5)
    assert select.scorecard_C(1.0, np.r_[np.zeros(500), np.ones(500)], X) == 1.0


def test_auto_reports_its_choice_and_ships_one_lightgbm_model_that_reproduces_it():
    X, y = frame(1500)
    m = fit(AUTO, X.iloc[:1200], y[:1200], classes=["0", "1"], X_valid=X.iloc[1200:], y_valid=y[1200:], seed=0,
            num_threads=1)
    s = m.selection
    assert m.kind == "lightgbm" and s["rows"] == 1500 and s["inner_folds"] == 3
    assert set(s["candidates"]) == {"lightgbm", "lightgbm_large", "logistic"}
    weights = {c: r["weight"] for c, r in s["candidates"].items()}
    kept = {c for c, w in weights.items() if w > 0}
    assert kept and all(c in s["chosen"] for c in kept)
    if s["chosen"].startswith("blend"):
        assert "vs" in s["why"] and len(kept) >= 2
    else:
        assert weights[s["chosen"]] == 1.0 and "is not higher" in s["why"]
    # the shipped text model loads back to the same probabilities
    again = lgb.Booster(model_str=m.booster.model_to_string())
    np.testing.assert_allclose(again.predict(X), m.predict_proba(X)[:, 1], rtol=1e-12)
    # one candidate alone: the scorecard reproduces the logistic model fitted on all rows
    only = fit({**AUTO, "candidates": ["logistic"]}, X, y, classes=["0", "1"], seed=0, num_threads=1)
    assert only.selection["chosen"] == "logistic" and only.selection["why"] == "one candidate"
    lr = select._logistic(X, y, C=1.0, seed=0, num_threads=1, directions={})
    np.testing.assert_allclose(only.booster.predict(X, raw_score=True), select._decision(lr, X), atol=0.02)


def test_auto_refuses_an_unknown_candidate():
    X, y = frame(300)
    with pytest.raises(ConfigError, match="model.candidates"):
        fit({**AUTO, "candidates": ["xgboost"]}, X, y, classes=["0", "1"])

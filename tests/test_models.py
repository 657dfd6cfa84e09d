"""Estimators: the three models fit and predict alike; LightGBM params, monotone constraints, manifests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskml.exceptions import ConfigError
from riskml.training.fit import fit
from riskml.training.models import (FittedModel, build_manifest, example_input, lgb_params, monotone_constraints,
                                    proba_frame)

LGB = {"name": "lightgbm", "monotone": True, "num_boost_round": 40, "early_stopping_rounds": 10,
       "learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20}


def toy(n: int = 600, seed: int = 0, classes: int = 2):
    """Risk rises with ``dpd`` and falls with ``score``; ``noise`` says nothing; ``city`` is categorical."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"dpd": rng.exponential(10, n), "score": rng.normal(600, 50, n), "noise": rng.normal(size=n)})
    X = X.astype("float32")
    X.loc[rng.random(n) < 0.1, "score"] = np.nan
    X["city"] = pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["a", "b", "c"])
    z = 0.12 * X["dpd"] - 0.02 * (X["score"].fillna(600) - 600) + rng.logistic(size=n) - 1.0
    y = (z > 0).astype(int) + ((z > 2.5).astype(int) if classes == 3 else 0)
    return X, y.to_numpy()


def test_lgb_params_are_deterministic_and_match_the_class_count():
    p2 = lgb_params(LGB, n_classes=2, seed=7, num_threads=2, constraints=[1, 0])
    assert p2["objective"] == "binary" and p2["seed"] == 7 and p2["deterministic"] is True
    assert p2["monotone_constraints"] == [1, 0] and p2["num_leaves"] == 7
    assert "num_boost_round" not in p2 and "monotone" not in p2  # riskml's keys are not LightGBM's
    p3 = lgb_params(LGB, n_classes=3, seed=0, num_threads=1, constraints=[0, 0])
    assert p3["objective"] == "multiclass" and p3["num_class"] == 3
    assert "monotone_constraints" not in p3  # all zero: no constraint at all


def test_monotone_constraints_follow_feature_directions_in_column_order():
    assert monotone_constraints(["a", "b", "c", "d"], {"a": 1, "b": -1, "d": 3}) == [1, -1, 0, 1]


@pytest.mark.parametrize("kind", ["lightgbm", "hist_gbm", "logistic"])
def test_every_model_gives_probabilities_per_class(kind):
    X, y = toy(classes=3)
    cfg = LGB if kind == "lightgbm" else {"name": kind, **({"max_iter": 50} if kind == "hist_gbm" else {})}
    m = fit(cfg, X[:400], y[:400], classes=["normal", "suspended", "closed"], X_valid=X[400:500], y_valid=y[400:500],
            feature_directions={"dpd": 1, "score": -1}, seed=0, num_threads=1)
    p = m.predict_proba(X[500:])
    assert p.shape == (100, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    adverse = 1 - p[:, 0]
    # the models learnt the direction of the signal
    assert np.corrcoef(adverse, X["dpd"][500:])[0, 1] > 0.3


@pytest.mark.parametrize("kind", ["logistic", "hist_gbm"])
def test_a_baseline_on_float32_features_gives_float64_probabilities_that_sum_to_one(kind):
    """sklearn computes in the features' float32, where rows sum to one only within ~3e-8 and its own
    log_loss warns; the model's probabilities are float64 rows that sum to one."""
    X, y = toy(n=1500)
    X = X.drop(columns="city")  # all float32, as the snapshots are
    m = fit({"name": kind, **({"max_iter": 30} if kind == "hist_gbm" else {})}, X[:1000], y[:1000],
            classes=["0", "1"], seed=0, num_threads=1)
    for rows in (X[1000:], X[1000:].assign(dpd=np.float32(60.0))):  # and where adverse is all but certain
        p = m.predict_proba(rows)
        assert p.dtype == np.float64
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_monotone_lightgbm_never_lowers_risk_as_days_past_due_rise():
    X, y = toy(n=2000)
    m = fit(LGB, X, y, classes=["0", "1"], feature_directions={"dpd": 1, "score": -1}, seed=0, num_threads=1)
    grid = pd.concat([X.iloc[:50]] * 30, ignore_index=True)
    grid["dpd"] = np.repeat(np.linspace(0, 80, 30), 50).astype("float32")
    p = m.predict_proba(grid)[:, 1].reshape(30, 50)
    assert (np.diff(p, axis=0) >= -1e-12).all()
    assert m.params["monotone_constraints"] == [1, -1, 0, 0]


def test_early_stopping_keeps_the_best_iteration_only():
    X, y = toy(n=1500)
    cfg = {**LGB, "num_boost_round": 500, "learning_rate": 0.3, "early_stopping_rounds": 5}
    m = fit(cfg, X[:1000], y[:1000], classes=["0", "1"], X_valid=X[1000:], y_valid=y[1000:], seed=0)
    assert m.best_iteration < 500
    assert m.booster.current_iteration() == m.best_iteration


def test_unknown_model_fails_with_the_allowed_names():
    X, y = toy(n=50)
    with pytest.raises(ConfigError, match=r"model.name.*'xgboost'.*lightgbm"):
        fit({"name": "xgboost"}, X, y, classes=["0", "1"])


def test_a_class_missing_from_training_gets_probability_zero():
    X, y = toy(n=300)
    m = fit({"name": "logistic"}, X, y, classes=["normal", "suspended", "closed"])
    p = m.predict_proba(X)
    assert p.shape == (300, 3) and (p[:, 2] == 0).all()


def test_manifest_and_mlflow_frames():
    X, y = toy(n=400)
    m = fit(LGB, X, y, classes=["0", "1"], feature_directions={"dpd": 1}, seed=0)
    man = build_manifest(m, feature_factors={"dpd": "overdue", "score": "score_decline", "noise": "other",
                                             "city": "other"}, feature_directions={"dpd": 1},
                         categories={"city": ["a", "b", "c"]}, target="adverse_3m", horizon=3, windows=[3, 6],
                         metrics={"roc_auc_adverse": 0.8}, data_digest="abc", data_kind="synthetic", name="riskml_x")
    assert man["features"] == ["dpd", "score", "noise", "city"]
    assert man["feature_directions"] == {"dpd": 1, "score": 0, "noise": 0, "city": 0}
    assert man["monotone"] is True and man["classes"] == ["0", "1"] and man["model_name"] == "riskml_x"
    ex = example_input(X.head(3))
    assert ex["city"].dtype == object and ex["dpd"].dtype == np.float64
    out = proba_frame(m, X.head(3))
    assert list(out.columns) == ["p_0", "p_1"]
    assert isinstance(m, FittedModel) and m.feature_importance().index.tolist() == man["features"]

"""Reasons in the documented factors: API, adverse log-odds, ordering, advice, what-if, fidelity."""

from __future__ import annotations

import doctest

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

import riskml.explain as explain
from riskml.exceptions import ConfigError, SchemaError
from riskml.explain import FactorExplainer, adverse_contributions, advice_for, fidelity, top_reasons, what_if
from riskml.factors import CATALOGUE
from riskml.features import feature_specs

FF = {"income_mean_6": "other", "days_past_due_lvl": "overdue", "policy_index_lvl": "policy_tightening",
      "other_lenders_lvl": "multi_lending", "overdue_amount_max_3": "overdue"}


@pytest.fixture(scope="module")
def model() -> tuple[lgb.Booster, pd.DataFrame]:
    """Adverse when days past due are high; nothing else matters much."""
    rng = np.random.default_rng(0)
    n = 2000
    X = pd.DataFrame({c: rng.normal(size=n).astype(np.float32) for c in FF})
    X["days_past_due_lvl"] = rng.exponential(10, n).astype(np.float32)
    y = (X["days_past_due_lvl"] + 2 * rng.normal(size=n) > 20).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": 0}
    return lgb.train(params, lgb.Dataset(X, y), 30), X


def test_factors_in_catalogue_order_other_last(model):
    booster, X = model
    ex = FactorExplainer(booster, FF)
    assert ex.factors == ["overdue", "multi_lending", "policy_tightening", "other"]
    ex2 = FactorExplainer(booster, FF, factor_order=["other", "overdue", "policy_tightening", "multi_lending", "x"])
    assert ex2.factors == ["other", "overdue", "policy_tightening", "multi_lending"]
    with pytest.raises(ConfigError, match="factor_order"):
        FactorExplainer(booster, FF, factor_order=["overdue", "other"])


def test_contributions_shape_order_and_efficiency(model):
    booster, X = model
    ex = FactorExplainer(booster, FF)
    c = ex.contributions(X)
    assert c.shape == (len(X), 1, 5) and ex.method_ == "tables" and ex.table_bytes_ > 0
    np.testing.assert_allclose(c.sum(axis=2)[:, 0], booster.predict(X, raw_score=True), atol=1e-9)
    shuffled = X[list(reversed(X.columns))].assign(extra=1.0)  # order and extra columns do not matter
    np.testing.assert_array_equal(ex.contributions(shuffled), c)
    np.testing.assert_allclose(ex.contributions(X.astype(np.float64).to_numpy()), c, atol=1e-12)
    np.testing.assert_array_equal(FactorExplainer(booster, FF, n_threads=1).contributions(X), c)
    with pytest.raises(ConfigError, match="n_threads"):
        FactorExplainer(booster, FF, n_threads=0)
    # overdue drives the label: it is the top reason of nearly every adverse-looking row
    adv = adverse_contributions(c, None)
    risky = booster.predict(X) > 0.5
    assert risky.sum() > 50
    top1 = top_reasons(adv[risky], ex.factors, k=1)["factor"]
    assert (top1 == "overdue").mean() > 0.95


def test_schema_errors_name_the_features(model):
    booster, X = model
    with pytest.raises(SchemaError, match="overdue_amount_max_3"):
        FactorExplainer(booster, {k: v for k, v in FF.items() if k != "overdue_amount_max_3"})
    ex = FactorExplainer(booster, FF)
    with pytest.raises(SchemaError, match="policy_index_lvl"):
        ex.contributions(X.drop(columns="policy_index_lvl"))
    with pytest.raises(SchemaError, match=r"\(n_rows, 5\)"):
        ex.contributions(np.zeros((3, 4)))


def test_adverse_contributions_binary_is_the_log_odds_part():
    c = np.arange(12, dtype=float).reshape(3, 1, 4)
    np.testing.assert_array_equal(adverse_contributions(c, None), c[:, 0, :3])


def test_adverse_contributions_multiclass_hand_computed():
    # factors (f0, f1) + bias per class; classes normal, suspended, closed
    c = np.array([
        [[0.1, -0.2, 9.0], [0.5, 0.0, 9.0], [-0.5, 1.0, 9.0]],
        [[0.0, 0.0, 9.0], [3.0, 3.0, 9.0], [0.25, -0.5, 9.0]],
    ])
    p = np.array([[0.5, 0.3, 0.2], [0.9, 0.0, 0.1]])
    # row 0: weights 0.6/0.4 -> f0 = 0.6*0.5 + 0.4*(-0.5) - 0.1 = 0; f1 = 0.4*1.0 + 0.2 = 0.6
    # row 1: weights 0/1     -> f0 = 0.25; f1 = -0.5
    np.testing.assert_allclose(adverse_contributions(c, p), [[0.0, 0.6], [0.25, -0.5]], atol=1e-12)
    np.testing.assert_allclose(adverse_contributions(c, p, adverse_classes=(2,)), [[-0.6, 1.2], [0.25, -0.5]])
    with pytest.raises(SchemaError, match="adverse_classes"):
        adverse_contributions(c, p, adverse_classes=(0, 1))


def test_top_reasons_order_ties_and_only_risk_increasing():
    ids = ["abnormal_use", "overdue", "multi_lending", "other"]  # not catalogue order on purpose
    c = np.array([[0.2, 0.2, 0.5, 0.1], [-0.1, -0.2, 0.0, -0.3], [0.0, 0.0, 0.0, 0.3]])
    got = top_reasons(c, ids, k=3, include_other=True)
    assert got[["row", "rank", "factor"]].values.tolist() == [
        [0, 1, "multi_lending"], [0, 2, "overdue"], [0, 3, "abnormal_use"], [2, 1, "other"]]
    assert got["label"].tolist()[:2] == [CATALOGUE["multi_lending"].name, CATALOGUE["overdue"].name]
    assert got["contribution"].tolist() == [0.5, 0.2, 0.2, 0.3]
    assert got["documented"].tolist() == [True, True, True, False]
    assert len(top_reasons(c, ids, k=1, include_other=True)) == 2
    # by default the non-documented pseudo-factor is never a reason, whatever its size
    default = top_reasons(c, ids, k=3)
    assert "other" not in default["factor"].tolist()
    assert default[["row", "rank", "factor"]].values.tolist() == [
        [0, 1, "multi_lending"], [0, 2, "overdue"], [0, 3, "abnormal_use"]]


@pytest.mark.parametrize("k", [0, 5, 2.5, True, "3"])
def test_top_reasons_k_is_1_to_4(k):
    with pytest.raises(ConfigError, match=r"in \[1, 4\]"):
        top_reasons(np.zeros((1, 2)), ["overdue", "other"], k=k)


def test_advice_actionable_or_says_why_not():
    assert advice_for("overdue") == (True, CATALOGUE["overdue"].advice)
    actionable, text = advice_for("maintenance")
    assert not actionable and text.startswith("Not actionable") and CATALOGUE["maintenance"].advice in text
    with pytest.raises(KeyError, match="nope"):
        advice_for("nope")


def test_what_if_rescores_with_the_rectified_factor():
    X = pd.DataFrame({"days_past_due": [30.0, 0.0], "income": [1.0, 2.0]})
    specs = feature_specs()  # days_past_due: the overdue level, rectified to 0; income: not actionable

    def three_class(frame):  # P(normal) falls with days past due
        p0 = 1.0 / (1.0 + frame["days_past_due"].to_numpy() / 10.0)
        return np.c_[p0, (1 - p0) * 0.75, (1 - p0) * 0.25]

    np.testing.assert_allclose(three_class(X)[:, 0], [0.25, 1.0])
    np.testing.assert_allclose(what_if(three_class, X, "overdue", specs), [0.0, 0.0])
    np.testing.assert_allclose(what_if(lambda f: f["days_past_due"].to_numpy() / 100, X, "overdue", specs), [0.0, 0.0])
    seen = []
    what_if(lambda f: seen.append(f["income"].tolist()) or np.zeros(len(f)), X, "overdue", specs)
    assert seen == [[1.0, 2.0]]  # another factor's feature is left as it is
    with pytest.raises(ConfigError, match="actionable"):
        what_if(three_class, X, "policy_tightening", specs)


def test_fidelity_hand_computed():
    na = pd.NA
    truth = pd.Series(["overdue"] * 4 + ["multi_lending"] * 2 + [na] * 3, dtype="string")
    top1 = pd.Series(["overdue", "overdue", "overdue", "multi_lending", "multi_lending", na, "overdue", na, na],
                     dtype="string")
    fid = fidelity(top1, truth, min_events=3)
    assert fid.n_events == 6 and fid.overall == pytest.approx(4 / 6)
    assert fid.per_cause.loc["overdue", "top1_rate"] == 0.75 and fid.per_cause.loc["overdue", "judged"]
    assert fid.per_cause.loc["multi_lending", "n_events"] == 2 and not fid.per_cause.loc["multi_lending", "judged"]
    assert fid.confusion.loc["overdue"].to_dict() == {"overdue": 3, "multi_lending": 1, "none": 0}
    assert fid.confusion.loc["multi_lending"].to_dict() == {"overdue": 0, "multi_lending": 1, "none": 1}
    assert fid.as_dict()["fidelity_top1_multi_lending"] == 0.5
    with pytest.raises(SchemaError, match="rows"):
        fidelity(top1[:3], truth)


def test_fidelity_accepts_categorical_causes_like_snapshots_carry():
    truth = pd.Series(pd.Categorical(["overdue", None, "maintenance", "overdue"], categories=list(CATALOGUE)))
    top1 = pd.Series(["overdue", "overdue", "overdue", None], dtype=object)
    fid = fidelity(top1, truth, min_events=1)
    assert fid.n_events == 3 and fid.overall == pytest.approx(1 / 3)
    assert fid.per_cause.index.tolist() == ["overdue", "maintenance"]
    assert fid.confusion.loc["maintenance", "overdue"] == 1 and fid.confusion.loc["overdue", "none"] == 1

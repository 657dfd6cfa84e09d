"""Factor TreeSHAP against LightGBM's own TreeSHAP and a brute-force Shapley sum."""

from __future__ import annotations

from itertools import combinations
from math import factorial

import lightgbm as lgb
import numpy as np
import pytest

from riskml.explain import treeshap
from riskml.exceptions import ModelError
from riskml.explain import FactorExplainer


def _data(n: int = 1500, m: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m))
    X[:, 4] = np.where(rng.random(n) < 0.3, 0.0, X[:, 4])  # zeros for zero_as_missing
    X[rng.random((n, m)) < 0.1] = np.nan
    y = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) + (np.nan_to_num(X[:, 4]) == 0)
    return X, y + rng.normal(scale=0.5, size=n)


def _fit(X: np.ndarray, score: np.ndarray, n_classes: int = 2, rounds: int = 15, **params) -> lgb.Booster:
    cuts = np.quantile(score, [0.7] if n_classes == 2 else np.linspace(0, 1, n_classes + 1)[1:-1])
    y = np.searchsorted(cuts, score)
    obj = {"objective": "binary"} if n_classes == 2 else {"objective": "multiclass", "num_class": n_classes}
    base = {"num_leaves": 15, "min_data_in_leaf": 5, "verbose": -1, "seed": 0, "num_threads": 1}
    return lgb.train({**obj, **base, **params}, lgb.Dataset(X, y), rounds)


def _missing_types(booster: lgb.Booster) -> set[str]:
    out, stack = set(), [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            out.add(node["missing_type"])
            stack += [node["left_child"], node["right_child"]]
    return out


def _own_factor(booster: lgb.Booster) -> FactorExplainer:
    return FactorExplainer(booster, {f: f for f in booster.feature_name()})


@pytest.mark.parametrize("leaves", [15, 4])  # 14 splits a tree: the walk; 3: the combination tables
@pytest.mark.parametrize("n_classes,params,missing", [
    (2, {}, "NaN"),
    (3, {}, "NaN"),
    (2, {"zero_as_missing": True}, "Zero"),
    (2, {"use_missing": False}, "None"),
    (2, {"bagging_fraction": 0.7, "bagging_freq": 1, "feature_fraction": 0.8}, "NaN"),  # covers of a bag
])
def test_one_feature_per_factor_equals_lightgbm_pred_contrib(n_classes, params, missing, leaves):
    X, score = _data()
    booster = _fit(X, score, n_classes, **{"num_leaves": leaves, **params})
    assert missing in _missing_types(booster)  # the NaN/zero rule under test is really in the trees
    ex = _own_factor(booster)
    assert ex.method_ == "tables"
    got = ex.contributions(X)
    want = booster.predict(X, pred_contrib=True).reshape(len(X), -1, X.shape[1] + 1)
    assert got.shape == want.shape == (len(X), 1 if n_classes == 2 else n_classes, X.shape[1] + 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


@pytest.mark.parametrize("leaves", [15, 5])
def test_categorical_splits_match_pred_contrib_including_nan_and_unseen(leaves):
    X, score = _data(seed=1)
    rng = np.random.default_rng(1)
    X[:, 3] = rng.integers(0, 40, len(X)).astype(float)
    score = score + np.isin(X[:, 3], [1, 5, 33])
    booster = lgb.train(
        {"objective": "binary", "num_leaves": leaves, "min_data_in_leaf": 5, "verbose": -1, "num_threads": 1,
         "cat_smooth": 1, "min_data_per_group": 5},
        lgb.Dataset(X, (score > np.quantile(score, 0.7)).astype(int), categorical_feature=[3]), 15)
    assert any(t["num_cat"] > 0 for t in booster.dump_model()["tree_info"])
    Xt = X[:300].copy()
    Xt[:20, 3] = [np.nan, -1, -0.5, 0.7, 45, 1e10, 5.9, 33, 63, 64] * 2  # NaN, negatives, fractions, unseen
    got = _own_factor(booster).contributions(Xt)
    want = booster.predict(Xt, pred_contrib=True).reshape(len(Xt), 1, -1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_float32_rows_decide_like_lightgbm():
    X, score = _data(seed=2)
    booster = _fit(X.astype(np.float32), score)
    X32 = X.astype(np.float32)
    got = _own_factor(booster).contributions(X32)
    np.testing.assert_allclose(got[:, 0], booster.predict(X32, pred_contrib=True), rtol=0, atol=1e-9)


# --- brute force: v(S) by the recursive tree expectation, Shapley over all coalitions ---

def _goes_left(node: dict, v: float) -> bool:
    if node["decision_type"] == "==":
        return not np.isnan(v) and int(v) >= 0 and str(int(v)) in node["threshold"].split("||")
    if np.isnan(v) and node["missing_type"] != "NaN":
        v = 0.0
    if (node["missing_type"] == "Zero" and abs(v) <= 1e-35) or (node["missing_type"] == "NaN" and np.isnan(v)):
        return bool(node["default_left"])
    return v <= node["threshold"]


def _count(node: dict) -> float:
    return node["leaf_count"] if "leaf_value" in node else node["internal_count"]


def _expect(node: dict, x: np.ndarray, known: set[int], factor_of: list[int]) -> float:
    if "leaf_value" in node:
        return node["leaf_value"]
    kids = node["left_child"], node["right_child"]
    if factor_of[node["split_feature"]] in known:
        return _expect(kids[0] if _goes_left(node, x[node["split_feature"]]) else kids[1], x, known, factor_of)
    return sum(_count(k) / _count(node) * _expect(k, x, known, factor_of) for k in kids)


def _brute_force(booster: lgb.Booster, x: np.ndarray, factor_of: list[int], m: int) -> np.ndarray:
    dump = booster.dump_model()
    n_out = dump["num_tree_per_iteration"]
    phi = np.zeros((n_out, m + 1))
    for t, info in enumerate(dump["tree_info"]):
        tree, c = info["tree_structure"], t % n_out
        v = {S: _expect(tree, x, set(S), factor_of) for r in range(m + 1) for S in combinations(range(m), r)}
        phi[c, m] += v[()]
        for i in range(m):
            for S, val in v.items():
                if i not in S:
                    w = factorial(len(S)) * factorial(m - len(S) - 1) / factorial(m)
                    phi[c, i] += w * (v[tuple(sorted(S + (i,)))] - val)
    return phi


@pytest.mark.parametrize("n_classes,params", [(2, {}), (3, {}), (2, {"zero_as_missing": True})])
def test_factor_values_equal_brute_force_shapley(n_classes, params):
    X, score = _data(n=600, seed=3)
    booster = _fit(X, score, n_classes, rounds=4, num_leaves=12, **params)
    # 8 features in 4 factors; features of one factor often share a path.
    groups = ["a", "b", "a", "c", "d", "b", "c", "a"]
    ex = FactorExplainer(booster, dict(zip(booster.feature_name(), groups)))
    assert ex.factors == ["a", "b", "c", "d"]
    factor_of = [ex.factors.index(g) for g in groups]
    rows = X[:12]
    got = ex.contributions(rows)
    for r in range(len(rows)):
        np.testing.assert_allclose(got[r], _brute_force(booster, rows[r], factor_of, 4), rtol=0, atol=1e-10)


def test_grouped_values_differ_from_summed_feature_values_but_both_are_efficient():
    X, score = _data(seed=4)
    booster = _fit(X, score)
    groups = dict(zip(booster.feature_name(), ["a", "b", "b", "c", "d", "c", "a", "d"]))
    got = FactorExplainer(booster, groups).contributions(X)
    raw = booster.predict(X, raw_score=True)
    np.testing.assert_allclose(got[:, 0].sum(axis=1), raw, rtol=0, atol=1e-9)  # efficiency
    summed = booster.predict(X, pred_contrib=True)
    b_sum = summed[:, 1] + summed[:, 2]  # factor b = features 1 and 2, which interact in the label
    assert np.abs(got[:, 0, 1] - b_sum).max() > 1e-6  # factors as players is a different attribution
    np.testing.assert_allclose(got[:, 0, -1], summed[:, -1], rtol=0, atol=1e-12)  # same bias E[f]


def test_single_leaf_trees_add_only_to_the_bias():
    X, _ = _data(n=300)
    y = np.r_[[0] * 100, [1] * 200]
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 200}  # no split fits
    booster = lgb.train(params, lgb.Dataset(X, y), 3)
    assert all(t["num_leaves"] == 1 for t in booster.dump_model()["tree_info"])
    got = _own_factor(booster).contributions(X[:50])
    assert np.all(got[:, 0, :-1] == 0)
    np.testing.assert_allclose(got[:, 0, -1], booster.predict(X[:50], raw_score=True), rtol=0, atol=1e-12)


@pytest.mark.parametrize("limit", ["MAX_PATH_FACTORS", "MAX_TABLE_BYTES"])
def test_too_big_tables_fall_back_to_summed_pred_contrib(monkeypatch, caplog, limit):
    X, score = _data(seed=5)
    booster = _fit(X, score)
    monkeypatch.setattr(treeshap, limit, 1)
    groups = dict(zip(booster.feature_name(), ["a", "b", "b", "c", "d", "c", "a", "d"]))
    ex = FactorExplainer(booster, groups)
    assert "pred_contrib summed per factor" in caplog.text
    assert ex.method_ == "pred_contrib" and ex.table_bytes_ == 0
    pc = booster.predict(X, pred_contrib=True)
    got = ex.contributions(X)
    np.testing.assert_allclose(got[:, 0, 1], pc[:, 1] + pc[:, 2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[:, 0].sum(axis=1), booster.predict(X, raw_score=True), rtol=0, atol=1e-9)


def test_linear_trees_are_refused_with_a_clear_error():
    X, score = _data(n=400)
    booster = lgb.train({"objective": "regression", "linear_tree": True, "verbose": -1, "num_threads": 1},
                        lgb.Dataset(np.nan_to_num(X), score), 3)
    with pytest.raises(ModelError, match="linear_tree"):
        _own_factor(booster)


def test_infinite_thresholds_and_values_lightgbm_reads_as_zero_decide_like_lightgbm():
    # A split that sends every finite value one way has threshold inf: dump_model's JSON clamps it to
    # 1e300, so an infinite value went the wrong way. And LightGBM reads |x| <= 1e-35 as 0 before any
    # split (x = -1e-35 then goes right at a threshold of -1e-35).
    X, score = _data(n=3000)
    booster = _fit(X, score, rounds=40, num_leaves=31)
    assert " inf" in booster.model_to_string()  # the model under test has an infinite threshold
    rng = np.random.default_rng(3)
    rows = X[:300].copy()
    rows[:200] = rng.choice([np.inf, -np.inf, 1e-35, -1e-35, 1e-36, -0.0, 2e-35, np.nan], size=(200, X.shape[1]))
    for Xt in (rows, rows.astype(np.float32)):
        got = _own_factor(booster).contributions(Xt)
        want = booster.predict(Xt, pred_contrib=True).reshape(len(Xt), 1, -1)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n_classes,params", [
    (2, {"num_leaves": 4}), (3, {"num_leaves": 6}), (2, {"num_leaves": 5, "zero_as_missing": True}),
    (2, {"num_leaves": 4, "use_missing": False}), (2, {"num_leaves": 6, "categorical": True}),
    (2, {"num_leaves": 4, "mixed": True}),
])
def test_combination_tables_add_what_the_walk_adds_bit_for_bit(monkeypatch, n_classes, params):
    """A tree of a few splits is scored from one table indexed by all its split outcomes; the same values in
    the same order as the mask-and-pattern walk, so the same bits (factors grouping several features)."""
    import dataclasses

    params = dict(params)
    X, score = _data(seed=3)
    cat = params.pop("categorical", False)
    mixed = params.pop("mixed", False)
    if mixed:  # trees of 3 splits use their table, then trees of 5 walk: both in one model
        monkeypatch.setattr(treeshap, "MAX_COMBO_SPLITS", 3)
    if cat:
        X[:, 3] = np.random.default_rng(3).integers(0, 30, len(X)).astype(float)
        score = score + np.isin(X[:, 3], [2, 7, 19])
    booster = _fit(X, score, n_classes, rounds=25, **params, **({"cat_smooth": 1, "min_data_per_group": 5} if cat
                                                                else {}))
    if cat:
        booster = lgb.train({**booster.params, "categorical_feature": [3]}, lgb.Dataset(X, np.searchsorted(
            np.quantile(score, [0.7]), score), categorical_feature=[3]), 25)
        assert any(t["num_cat"] > 0 for t in booster.dump_model()["tree_info"])
    if mixed:
        booster = lgb.train({**booster.params, "num_leaves": 6}, lgb.Dataset(X, np.searchsorted(
            np.quantile(score, [0.7]), score)), 10, init_model=booster)
    ex = FactorExplainer(booster, {f: f"factor_{i % 3}" for i, f in enumerate(booster.feature_name())})
    tables = ex.tables_
    has = tables.combo_start >= 0
    assert has.any() and (has.all() or treeshap.MAX_COMBO_SPLITS == 3)
    if treeshap.MAX_COMBO_SPLITS == 3:
        assert not has.all()
    walk = dataclasses.replace(tables, combo_start=np.full_like(tables.combo_start, -1))
    Xt = X.copy()
    Xt[:10, 3] = [np.nan, -1, 0.5, 45, 1e10, 2, 7, 19, 0.0, -0.0]
    got, want = treeshap.contributions(tables, Xt), treeshap.contributions(walk, Xt)
    assert got.view(np.int64).tobytes() == want.view(np.int64).tobytes()
    np.testing.assert_allclose(got.sum(axis=2), booster.predict(Xt, raw_score=True).reshape(len(Xt), -1),
                               rtol=0, atol=1e-9)  # efficiency: the values add up to the raw score


def test_deeper_trees_get_combination_tables_within_the_byte_budget_and_the_same_bits(monkeypatch):
    """12-leaf trees (11 splits) get combination tables while the model's stay within MAX_COMBO_BYTES; the
    trees past the budget are walked, and the values are the walk's bit for bit either way."""
    import dataclasses

    X, score = _data(seed=5)
    booster = _fit(X, score, 3, rounds=12, num_leaves=12, min_data_in_leaf=3)
    factors = {f: f"factor_{i % 4}" for i, f in enumerate(booster.feature_name())}
    splits = [t["num_leaves"] - 1 for t in booster.dump_model()["tree_info"]]
    assert max(splits) > treeshap.SMALL_COMBO_SPLITS  # trees the budget decides on
    whole = FactorExplainer(booster, factors).tables_
    assert (whole.combo_start >= 0).all()  # a small model: every tree within the budget
    budget = whole.combo_table.nbytes // 3
    monkeypatch.setattr(treeshap, "MAX_COMBO_BYTES", budget)
    part = FactorExplainer(booster, factors).tables_
    has = part.combo_start >= 0
    assert 0 < has.sum() < len(has) and part.combo_table.nbytes <= budget
    small = np.array(splits) <= treeshap.SMALL_COMBO_SPLITS
    assert has[small].all()  # small trees always keep theirs
    walk = dataclasses.replace(part, combo_start=np.full_like(part.combo_start, -1))
    for tables in (whole, part):
        got, want = treeshap.contributions(tables, X), treeshap.contributions(walk, X)
        assert got.view(np.int64).tobytes() == want.view(np.int64).tobytes()

"""The compiled scorer against LightGBM's own ``Booster.predict``, row by row."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskml.exceptions import SchemaError
from riskml.explain import predictor
from riskml.explain import predictor_binned as binned
from riskml.explain.predictor import TreePredictor


def _data(n: int = 3000, m: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m))
    X[:, 4] = np.where(rng.random(n) < 0.3, 0.0, X[:, 4])  # exact zeros, for zero_as_missing
    X[rng.random((n, m)) < 0.1] = np.nan
    score = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) + (np.nan_to_num(X[:, 4]) == 0)
    return X, score + rng.normal(scale=0.5, size=n)


def _fit(X, score, n_classes=2, rounds=40, categorical=(), **params) -> lgb.Booster:
    cuts = np.quantile(score, [0.7] if n_classes == 2 else np.linspace(0, 1, n_classes + 1)[1:-1])
    obj = {"objective": "binary"} if n_classes == 2 else {"objective": "multiclass", "num_class": n_classes}
    base = {"num_leaves": 31, "min_data_in_leaf": 5, "verbose": -1, "seed": 0, "num_threads": 1}
    data = lgb.Dataset(X, np.searchsorted(cuts, score), categorical_feature=list(categorical) or "auto")
    return lgb.train({**obj, **base, **params}, data, rounds)


def _missing_types(booster: lgb.Booster) -> set[str]:
    return {n["missing_type"] for t in booster.dump_model()["tree_info"] for n in _splits(t["tree_structure"])}


def _edge_rows(X: np.ndarray, booster: lgb.Booster) -> np.ndarray:
    """Rows that sit exactly on thresholds, on +-0, on tiny values near LightGBM's zero threshold, at +-inf."""
    thr = [n["threshold"] for t in booster.dump_model()["tree_info"] for n in _splits(t["tree_structure"])
           if n["decision_type"] == "<="]
    rng = np.random.default_rng(9)
    E = X[rng.integers(0, len(X), 400)].copy()
    E[:100, :] = rng.choice(np.r_[thr, np.nextafter(thr, np.inf), np.nextafter(thr, -np.inf)], size=(100, E.shape[1]))
    E[100:200, :] = rng.choice([0.0, -0.0, 1e-36, -1e-36, 1e-35, -1e-35, 2e-35, np.inf, -np.inf, np.nan],
                               size=(100, E.shape[1]))
    return E


def _splits(node: dict):
    stack = [node]
    while stack:
        n = stack.pop()
        if "split_feature" in n:
            yield n
            stack += [n["left_child"], n["right_child"]]


@pytest.mark.parametrize("n_classes,params,missing", [
    (2, {}, "NaN"),
    (3, {}, "NaN"),
    (2, {"zero_as_missing": True}, "Zero"),
    (3, {"zero_as_missing": True}, "Zero"),
    (2, {"use_missing": False}, "None"),
    (2, {"num_leaves": 4, "min_data_in_leaf": 50}, "NaN"),  # riskml's default shape
])
@pytest.mark.parametrize("leaves", [31, 5])  # one word of leaves, nearly full; and trees of a few splits
def test_probabilities_equal_booster_predict_on_every_row(n_classes, params, missing, leaves):
    X, score = _data()
    booster = _fit(X, score, n_classes, **{"num_leaves": leaves, **params})
    assert missing in _missing_types(booster)  # the missing-value rule under test is really in the trees
    tp = TreePredictor(booster)
    assert tp.method_ == "compiled" and tp.n_outputs_ == (1 if n_classes == 2 else n_classes)
    rows = np.vstack([X, _edge_rows(X, booster)])
    for Xt in (rows, rows.astype(np.float32), np.asfortranarray(rows), rows[::2]):  # dtypes and layouts
        want = booster.predict(Xt)
        got = tp.predict(Xt)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        # raw scores are summed tree by tree in LightGBM's order: bit for bit equal
        np.testing.assert_array_equal(tp.raw(Xt), booster.predict(Xt, raw_score=True).reshape(len(Xt), -1))


def test_float32_thresholds_decide_exactly_like_lightgbms_float64_compare():
    # a float32 value just above a float64 threshold that is not a float32: rounding the threshold to
    # nearest would send it left; LightGBM (float64 compare) sends it right
    X, score = _data(seed=1)
    booster = _fit(X.astype(np.float32), score)
    tp = TreePredictor(booster)
    thr = tp.threshold_[tp.kind_ != 0]
    assert (thr.astype(np.float32).astype(np.float64) != thr).any()  # thresholds that float32 cannot hold
    X32 = _edge_rows(X, booster).astype(np.float32)
    np.testing.assert_array_equal(tp.raw(X32)[:, 0], booster.predict(X32, raw_score=True))


def test_categorical_splits_with_nan_negative_fractional_and_unseen_values():
    X, score = _data(seed=2)
    rng = np.random.default_rng(2)
    X[:, 3] = rng.integers(0, 40, len(X)).astype(float)
    X[:, 5] = rng.integers(0, 70, len(X)).astype(float)  # more than 64 categories: several bitset words
    score = score + np.isin(X[:, 3], [1, 5, 33]) - np.isin(X[:, 5], [2, 40, 66])
    for n_classes, leaves in ((2, 31), (3, 31), (2, 6), (3, 6)):
        booster = _fit(X, score, n_classes, categorical=[3, 5], cat_smooth=1, min_data_per_group=5,
                       num_leaves=leaves)
        assert any(t["num_cat"] > 0 for t in booster.dump_model()["tree_info"])
        Xt = X[:400].copy()
        odd = [np.nan, -1, -0.5, 0.7, 45, 1e10, 5.9, 33, 63, 64, 66.2, -1e12, np.inf, -np.inf]
        Xt[:len(odd), 3] = odd
        Xt[:len(odd), 5] = odd[::-1]
        np.testing.assert_allclose(TreePredictor(booster).predict(Xt), booster.predict(Xt), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(TreePredictor(booster).raw(Xt),
                                      booster.predict(Xt, raw_score=True).reshape(len(Xt), -1))
        np.testing.assert_array_equal(TreePredictor(booster).raw(Xt),
                                      booster.predict(Xt, raw_score=True).reshape(len(Xt), -1))


def test_early_stopped_booster_scores_its_best_iteration_as_predict_does():
    X, score = _data(seed=3)
    y = (score > np.quantile(score, 0.7)).astype(int)
    train, valid = lgb.Dataset(X[:2000], y[:2000]), lgb.Dataset(X[2000:], y[2000:])
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1, "learning_rate": 0.5}, train, 200,
                        valid_sets=[valid], callbacks=[lgb.early_stopping(5, verbose=False)],
                        keep_training_booster=True)  # keeps the trees after the best iteration
    assert 0 < booster.best_iteration < booster.num_trees()
    np.testing.assert_allclose(TreePredictor(booster).predict(X), booster.predict(X), rtol=0, atol=1e-12)


def test_a_subset_of_trees_sums_only_those_trees():
    X, score = _data(seed=4)
    booster = _fit(X, score, rounds=10, num_leaves=3)
    tp = TreePredictor(booster)
    trees = tp.trees_using([1, 4])
    assert 0 < len(trees) < tp.n_trees_
    want = sum(booster.predict(X, raw_score=True, start_iteration=int(t), num_iteration=1) for t in trees)
    np.testing.assert_allclose(tp.raw(X, trees=trees)[:, 0], want, rtol=0, atol=1e-12)
    # a tree that does not split on features 1 and 4 scores the same whatever they are
    X2 = X.copy()
    X2[:, [1, 4]] = 7.0
    rest = np.setdiff1d(np.arange(tp.n_trees_), trees)
    np.testing.assert_array_equal(tp.raw(X2, trees=rest), tp.raw(X, trees=rest))


def test_single_leaf_trees_and_a_sigmoid_parameter():
    X, _ = _data(n=300)
    y = np.r_[[0] * 100, [1] * 200]
    booster = lgb.train({"objective": "binary", "sigmoid": 0.7, "verbose": -1, "num_threads": 1,
                         "min_data_in_leaf": 200}, lgb.Dataset(X, y), 3)
    assert all(t["num_leaves"] == 1 for t in booster.dump_model()["tree_info"])
    tp = TreePredictor(booster)
    assert tp.method_ == "compiled"
    np.testing.assert_allclose(tp.predict(X), booster.predict(X), rtol=0, atol=1e-12)


def test_frames_columns_by_name_and_shape_errors():
    X, score = _data(seed=5)
    booster = _fit(X, score, rounds=5)
    tp = TreePredictor(booster)
    frame = pd.DataFrame(X.astype(np.float32), columns=booster.feature_name())
    shuffled = frame[list(reversed(frame.columns))].assign(extra=1.0)  # order and extra columns do not matter
    np.testing.assert_array_equal(tp.predict(shuffled), tp.predict(frame))
    np.testing.assert_allclose(tp.predict(frame), booster.predict(frame), rtol=0, atol=1e-12)
    with pytest.raises(SchemaError, match="Column_2"):
        tp.predict(frame.drop(columns="Column_2"))
    with pytest.raises(SchemaError, match=r"\(n_rows, 8\)"):
        tp.predict(np.zeros((3, 4)))
    assert tp.predict(np.zeros((0, 8))).shape == (0,)


def test_linear_trees_and_other_objectives_are_scored_by_lightgbm_itself():
    X, score = _data(n=400)
    linear = lgb.train({"objective": "binary", "linear_tree": True, "verbose": -1, "num_threads": 1},
                       lgb.Dataset(np.nan_to_num(X), (score > 0).astype(int)), 3)
    regression = lgb.train({"objective": "regression", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, score), 3)
    for booster, Xt in ((linear, np.nan_to_num(X)), (regression, X)):
        tp = TreePredictor(booster)
        assert tp.method_ == "lightgbm"
        np.testing.assert_array_equal(tp.predict(Xt), booster.predict(Xt))


def test_round_down_gives_the_largest_float32_not_above():
    t = np.array([0.1, -0.1, 1.0, 0.0, 1e300, -1e300, np.inf, -np.inf])
    got = predictor._round_down_f32(t)
    assert (got.astype(np.float64) <= t).all()
    up = np.nextafter(got[:4], np.float32(np.inf))
    assert (up.astype(np.float64) > t[:4]).all()  # the largest float32 not above t
    assert got[2] == 1.0 and got[3] == 0.0
    assert got[4] == np.finfo(np.float32).max and got[5] == got[7] == -np.inf and got[6] == np.inf



@pytest.mark.parametrize("n_classes,params,leaves", [
    (2, {}, 100),
    (3, {}, 100),
    (2, {"zero_as_missing": True}, 100),
    (2, {}, 50),  # two words: read as one 64-bit word
])
def test_trees_of_more_than_32_leaves_score_bit_for_bit_with_missing_and_categorical_values(n_classes, params,
                                                                                            leaves):
    # a tree's leaves take 32-bit words: a split whose left subtree spans two words, and a leaf in the
    # third word, happen only in trees of more than 64 leaves
    X, score = _data(n=6000, seed=5)
    rng = np.random.default_rng(5)
    X[:, 3] = rng.integers(0, 40, len(X)).astype(float)
    X[rng.random(len(X)) < 0.05, 3] = np.nan
    score = score + np.isin(X[:, 3], [1, 5, 33])
    booster = _fit(X, score, n_classes, rounds=6, categorical=[3], num_leaves=leaves, min_data_in_leaf=3,
                   cat_smooth=1, min_data_per_group=5, **params)
    tp = TreePredictor(booster)
    assert tp.words_.max() == (leaves + 31) // 32
    assert (np.diff(tp.mask_start_) >= 2).any()  # some right turn clears leaves in two words
    assert any(t["num_cat"] > 0 for t in booster.dump_model()["tree_info"])
    rows = np.vstack([X, _edge_rows(X, booster)])
    for Xt in (rows, rows.astype(np.float32)):
        np.testing.assert_array_equal(tp.raw(Xt), booster.predict(Xt, raw_score=True).reshape(len(Xt), -1))
    # a subset of deep trees: each tree's own raw score, as LightGBM gives one iteration
    k = tp.n_outputs_  # trees per iteration
    trees = np.arange(k, tp.n_trees_, 2 * k)  # every other iteration's first-class tree
    want = sum(booster.predict(rows, raw_score=True, start_iteration=int(t) // k, num_iteration=1)
               .reshape(len(rows), -1)[:, 0] for t in trees)
    np.testing.assert_allclose(tp.raw(rows, trees=trees)[:, 0], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_classes,params,leaves", [
    (2, {}, 31),
    (3, {}, 31),
    (2, {"use_missing": False}, 31),  # missing type None: NaN goes where 0.0 goes
    (2, {}, 5),
    (2, {}, 100),  # more than 8 byte planes: the leaf found plane by plane
])
def test_byte_kernel_scores_bit_for_bit_like_lightgbm(n_classes, params, leaves):
    # every row of more than one chunk (CHUNK rows), on and around every threshold, NaN, +-0, +-inf
    X, score = _data(n=4000, seed=6)
    booster = _fit(X, score, n_classes, rounds=8, num_leaves=leaves, min_data_in_leaf=3, **params)
    tp = TreePredictor(booster)
    assert tp.kernel_ == "auto"
    tp.kernel_ = "binned"
    rows = np.vstack([X, _edge_rows(X, booster)])
    assert len(rows) > binned.CHUNK
    for Xt in (rows, rows.astype(np.float32), np.asfortranarray(rows)):
        np.testing.assert_array_equal(tp.raw(Xt), booster.predict(Xt, raw_score=True).reshape(len(Xt), -1))
    trees = tp.trees_using([0, 2])  # a what-if's subset: its trees only, in order
    got = tp.raw(rows, trees=trees)
    tp.kernel_ = "bitvector"
    np.testing.assert_array_equal(got, tp.raw(rows, trees=trees))


def test_byte_kernel_with_an_infinite_threshold():
    # a split that sends every finite value left has threshold inf in the text model: +inf goes right
    X, score = _data(seed=7)
    text = _fit(X, score, rounds=3, num_leaves=8).model_to_string()
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("tree_sizes="))  # offsets change
    head, rest = text.split("threshold=", 1)
    first, tail = rest.split(" ", 1)
    booster = lgb.Booster(model_str=f"{head}threshold=inf {tail}")
    tp = TreePredictor(booster)
    assert np.isinf(tp.threshold_).any()
    rows = np.vstack([X, _edge_rows(X, booster)])
    rows[:50, :] = np.inf
    for kernel in ("binned", "bitvector"):
        tp.kernel_ = kernel
        for Xt in (rows, rows.astype(np.float32)):
            np.testing.assert_array_equal(tp.raw(Xt)[:, 0], booster.predict(Xt, raw_score=True))


def test_each_call_takes_the_byte_kernel_only_for_many_deep_trees():
    X, score = _data(seed=8)
    deep = TreePredictor(_fit(X, score, rounds=60, num_leaves=63, min_data_in_leaf=3))
    every, fill = np.arange(deep.n_trees_), np.arange(len(deep.used_features_))
    assert deep.kernel_for(every, fill) == "binned"  # > 150 splits per feature read, 62 a tree
    few = deep.trees_using([1])[:3]  # a what-if on three trees: binning would cost more than it saves
    assert deep.kernel_for(few, fill[:2]) == "bitvector"
    assert deep.kernel_for(every[:0], fill[:0]) == "bitvector"  # no trees: nothing to bin for
    shallow = TreePredictor(_fit(X, score, rounds=60, num_leaves=5))
    assert shallow.kernel_for(np.arange(shallow.n_trees_), fill) == "bitvector"
    zero = TreePredictor(_fit(X, score, rounds=60, num_leaves=63, min_data_in_leaf=3, zero_as_missing=True))
    assert zero.kernel_ == "bitvector"  # zero-as-missing splits: the float kernel only


def test_bin_tables_rank_each_features_distinct_thresholds_and_refuse_too_many():
    feature = np.array([0, 0, 1, 0, 1, 0])
    thr = np.array([0.5, -1.0, 2.0, 0.5, np.inf, 9.0])
    split = np.array([0, 1, 2, 3, 4])  # node 5 is a leaf: its threshold is not a split's
    edges, rank, count = binned.bin_tables(feature, thr, split, 2)
    assert list(count) == [2, 2]
    np.testing.assert_array_equal(edges[0, :3], [-1.0, 0.5, np.inf])
    np.testing.assert_array_equal(edges[1, :3], [2.0, np.inf, np.inf])
    assert list(rank[split]) == [1, 0, 0, 1, 1]
    many = np.arange(binned.MAX_THRESHOLDS + 1, dtype=np.float64)
    assert binned.bin_tables(np.zeros(len(many), dtype=np.int64), many, np.arange(len(many)), 1) is None
    assert binned.bin_tables(np.zeros(len(many) - 1, dtype=np.int64), many[:-1], np.arange(len(many) - 1), 1)

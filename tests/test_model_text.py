"""Model texts LightGBM writes pass the structure check unchanged, whatever their kind."""

import re

import lightgbm as lgb
import numpy as np
import pytest

from riskml.exceptions import ModelError
from riskml.store.model_text import check_model_text


@pytest.mark.parametrize("params", [
    {"objective": "binary"},
    {"objective": "multiclass", "num_class": 3},
    {"objective": "binary", "linear_tree": True},
    {"objective": "binary", "min_data_in_leaf": 10_000},  # trees of a single leaf
])
def test_every_kind_of_model_lightgbm_writes_passes(params):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    X[:, 3] = rng.integers(0, 6, 600)  # a categorical column
    X[rng.random(600) < 0.1, 0] = np.nan
    y = (X[:, 0] + 3 * (X[:, 3] == 2) + rng.normal(size=600) > 0.5).astype(int)
    if params["objective"] == "multiclass":
        y = y + (X[:, 1] > 1)
    data = lgb.Dataset(X, y, categorical_feature=[3] if not params.get("linear_tree") else "auto")
    booster = lgb.train({**params, "verbose": -1, "num_leaves": 7, "min_data_per_group": 5, "cat_smooth": 1},
                        data, num_boost_round=5)
    text = booster.model_to_string()
    if params.get("min_data_in_leaf") is None and not params.get("linear_tree"):
        assert re.search(r"num_cat=[1-9]", text)  # a categorical split is checked too
    check_model_text(text, "m.txt")
    with pytest.raises(ModelError, match="m.txt: not a whole"):
        check_model_text(text[: text.find("end of trees")], "m.txt")

"""The tabular data source: config checks, categoricals, missing values, both split kinds, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from riskml import train
from riskml.io import files as io
from riskml.store import model_store
from riskml.exceptions import ConfigError
from riskml.sources import load_tabular
from riskml.training.tabular import from_frame

CSV = Path(__file__).parent / "data" / "credit_small.csv"
BASE = {"id_column": "customer_id", "target_column": "outcome", "negative_class": "good",
        "factors": {"overdue": ["days_past_due"], "multi_lending": ["other_lenders", "debt_to_income"]}}


def tabular_cfg(tmp: Path, *overrides: str):
    with initialize_config_module("riskml.conf", version_base="1.3"):
        return compose("train", overrides=[
            "data=tabular", f"data.path={CSV}", "data.id_column=customer_id", "data.target_column=outcome",
            "data.negative_class=good", "+data.factors={overdue: [days_past_due], multi_lending: [other_lenders]}",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models", "split.n_splits=3", "eval.plots=false", *overrides])


def test_the_made_up_table_has_what_the_tabular_path_must_handle():
    df = pd.read_csv(CSV)
    assert 300 <= len(df) <= 1000
    assert df[["income", "region"]].isna().any().all()
    assert not pd.api.types.is_numeric_dtype(df["region"]) and set(df["outcome"]) == {"good", "default"}


def test_from_frame_types_factors_and_directions():
    ds = from_frame(pd.read_csv(CSV), BASE, source="credit_small.csv", digest="d")
    assert ds.classes == ["good", "default"]  # the negative class first: label 0 is "normal"
    assert ds.y.tolist()[:5] == [1, 1, 1, 0, 0]
    assert isinstance(ds.X["region"].dtype, pd.CategoricalDtype)
    assert ds.categories["region"] == ["east", "north", "south", "west"]
    assert ds.X["region"].isna().sum() == 34 and ds.X["income"].isna().sum() == 36
    assert ds.X["income"].dtype == np.float32
    assert ds.feature_factors["days_past_due"] == "overdue"
    assert ds.feature_factors["region"] == "other"  # unmapped columns form the "other" factor
    assert "customer_id" not in ds.X and "outcome" not in ds.X
    # directions: catalogue signals keep theirs, categoricals and unknown columns are unconstrained
    assert ds.feature_directions["external_score"] == -1 and ds.feature_directions["days_past_due"] == 1
    assert ds.feature_directions["region"] == 0 and ds.feature_directions["application_month"] == 0


@pytest.mark.parametrize("change, key, match", [
    ({"target_column": "nope"}, "data.target_column", "nope"),
    ({"id_column": "cust"}, "data.id_column", "cust"),
    ({"time_column": "when"}, "data.time_column", "when"),
    ({"factors": {"overdue": ["dpd_typo"]}}, "data.factors.overdue", "dpd_typo"),
    ({"negative_class": "fine"}, "data.negative_class", "fine"),
])
def test_bad_tabular_config_names_key_and_value(change, key, match):
    with pytest.raises(ConfigError, match=match) as e:
        from_frame(pd.read_csv(CSV), {**BASE, **change}, source="t.csv", digest="")
    assert e.value.key == key


def test_a_one_class_target_is_refused():
    df = pd.read_csv(CSV).assign(outcome="good")
    with pytest.raises(ConfigError, match=r"at least two classes.*only \['good'\]"):
        from_frame(df, BASE, source="t.csv", digest="")


def test_a_column_in_two_factors_is_refused():
    cfg = {**BASE, "factors": {"overdue": ["days_past_due"], "multi_lending": ["days_past_due"]}}
    with pytest.raises(ConfigError, match="one factor only"):
        from_frame(pd.read_csv(CSV), cfg, source="t.csv", digest="")


def test_load_tabular_digest_is_the_file_hash(tmp_path):
    ds = load_tabular({**BASE, "path": str(CSV)}, base=tmp_path)
    assert ds.digest == io.sha256_file(CSV) and ds.kind == "tabular"


@pytest.mark.slow
def test_kfold_end_to_end_reports_mean_and_spread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train.run(tabular_cfg(tmp_path, "model=lightgbm", "model.min_data_in_leaf=10",
                                       "model.num_boost_round=60"))
    folds = result.fold_metrics
    assert len(folds) == 3 and result.metrics["n_folds"] == 3
    aucs = [f["roc_auc_adverse"] for f in folds]
    assert result.metrics["roc_auc_adverse"] == pytest.approx(np.mean(aucs))
    assert result.metrics["roc_auc_adverse_std"] == pytest.approx(np.std(aucs, ddof=1))
    assert result.metrics["roc_auc_adverse"] > 0.6  # the made-up target depends on the features
    booster, manifest = model_store.load_model_dir(result.model_dir)
    assert manifest["categories"]["region"] == ["east", "north", "south", "west"]
    assert manifest["classes"] == ["good", "default"] and manifest["target"] == "outcome"
    # the exported model reproduces the run's probabilities from raw strings (categorical codes by level)
    X = result.dataset.X.head(20)
    raw = X.assign(region=X["region"].astype(object), employment=X["employment"].astype(object))
    raw = raw.astype({c: "category" for c in ("region", "employment")})
    for c, levels in manifest["categories"].items():
        raw[c] = pd.Categorical(raw[c].astype(object), categories=levels)
    np.testing.assert_allclose(booster.predict(raw), result.model.predict_proba(X)[:, 1], rtol=1e-12)


@pytest.mark.slow
def test_time_column_gives_an_out_of_time_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train.run(tabular_cfg(tmp_path, "model=logistic", "data.time_column=application_month",
                                   "split.time_test_fraction=0.25"))
    assert "n_folds" not in result.metrics and "roc_auc_adverse_std" not in result.metrics
    months = result.dataset.time
    test_share = result.metrics["n_test"] / len(months)
    assert 0.15 < test_share < 0.4
    assert "application_month" not in result.dataset.X  # a time column is not a feature


# --- misuse that used to pass silently ------------------------------------------------------------

def _table(**cols) -> pd.DataFrame:
    n = 60
    rng = np.random.default_rng(0)
    base = {"id": np.arange(n), "y": np.where(rng.random(n) < 0.3, "default", "good"),
            "dpd": rng.integers(0, 90, n).astype(float)}
    return pd.DataFrame({**base, **cols})


def test_text_labels_need_the_normal_class_named():
    df = _table()
    with pytest.raises(ConfigError, match=r"data.negative_class.*text labels"):
        from_frame(df, {"id_column": "id", "target_column": "y"}, source="t.csv", digest="")
    ds = from_frame(df, {"id_column": "id", "target_column": "y", "negative_class": "good"}, source="t", digest="")
    assert ds.classes == ["good", "default"] and (ds.y == (df["y"] == "default").to_numpy()).all()
    numeric = df.assign(y=(df["y"] == "default").astype(int))
    assert from_frame(numeric, {"id_column": "id", "target_column": "y"}, source="t", digest="").classes == ["0", "1"]


def test_one_unknown_cell_keeps_a_numeric_column_numeric_and_says_so():
    df = _table().astype({"dpd": object})
    df.loc[7, "dpd"] = "unknown"
    cfg = {"id_column": "id", "target_column": "y", "negative_class": "good", "directions": {"dpd": 1}}
    ds = from_frame(df, cfg, source="t.csv", digest="")
    assert ds.X["dpd"].dtype == np.float32 and np.isnan(ds.X["dpd"].iloc[7]) and ds.feature_directions["dpd"] == 1
    assert any("'dpd': 1 non-numeric cell(s)" in w and "'unknown'" in w for w in ds.meta["warnings"])


def test_unknown_factor_ids_unparseable_times_tiny_tables_and_empty_features():
    df = _table(empty=np.nan, month=["2024-01"] * 59 + ["not a date"])
    cfg = {"id_column": "id", "target_column": "y", "negative_class": "good"}
    with pytest.raises(ConfigError, match=r"data.factors.overdo.*factor id"):
        from_frame(df, {**cfg, "factors": {"overdo": ["dpd"]}}, source="t", digest="")
    with pytest.raises(ConfigError, match=r"data.time_column.*row 59 has 'not a date'"):
        from_frame(df, {**cfg, "time_column": "month"}, source="t", digest="")
    ds = from_frame(df.drop(columns="month"), cfg, source="t", digest="")
    assert any("only 60 labelled rows" in w for w in ds.meta["warnings"])
    assert any("'empty' has no value" in w for w in ds.meta["warnings"])

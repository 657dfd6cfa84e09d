"""``riskml.compare``: the table of runs (differing params, key metrics, sorted)."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from riskml import compare
from riskml.store import tracking
from riskml.exceptions import ConfigError


def raw_runs() -> pd.DataFrame:
    """What ``mlflow.search_runs`` returns, for three runs."""
    return pd.DataFrame({
        "run_id": ["aaaaaaaa1111", "bbbbbbbb2222", "cccccccc3333"],
        "status": ["FINISHED"] * 3,
        "tags.mlflow.runName": ["a", "b", "c"],
        "params.model.name": ["lightgbm", "lightgbm", "logistic"],
        "params.model.num_leaves": ["15", "63", None],
        "params.seed": ["0", "0", "0"],  # equal everywhere: says nothing, no column
        "params.model.C": [None, None, "1.0"],  # one model's setting, equal where set: no column
        "params.tracking.uri": ["x", "y", "z"],  # differs by design: no column
        "metrics.roc_auc_adverse": [0.81, 0.84, 0.80],
        "metrics.ece": [0.004, 0.003, 0.010],
    })


def test_table_keeps_differing_params_and_sorts_by_the_metric():
    out = compare.table(raw_runs(), metrics=["roc_auc_adverse", "ece", "ks"], sort_by="roc_auc_adverse")
    assert list(out.columns) == ["run_id", "run_name", "model", "model.num_leaves", "roc_auc_adverse", "ece"]
    assert out["run_name"].tolist() == ["b", "a", "c"]
    assert out["run_id"].tolist()[0] == "bbbbbbbb"
    asc = compare.table(raw_runs(), metrics=["ece"], sort_by="ece", ascending=True)
    assert asc["ece"].tolist() == [0.003, 0.004, 0.010]


def test_sorting_by_a_metric_not_shown_still_works_and_unknown_fails():
    out = compare.table(raw_runs(), metrics=["ece"], sort_by="roc_auc_adverse")
    assert out["run_name"].tolist() == ["b", "a", "c"]
    with pytest.raises(ConfigError, match="sort_by.*'auc'.*roc_auc_adverse"):
        compare.table(raw_runs(), metrics=["ece"], sort_by="auc")


def test_run_reads_the_store(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp_id = tracking.setup(uri, "cmp")
    for leaves, auc in ((15, 0.81), (63, 0.84)):
        with tracking.start_run(exp_id):
            tracking.log_params({"model.name": "lightgbm", "model.num_leaves": leaves})
            tracking.log_metrics({"roc_auc_adverse": auc})
    with initialize_config_module("riskml.conf", version_base="1.3"):
        cfg = compose("compare", overrides=["experiment=cmp", f"tracking.uri={uri}"])
    out = compare.run(cfg)
    assert out["model.num_leaves"].tolist() == ["63", "15"]
    assert out["roc_auc_adverse"].tolist() == [0.84, 0.81]
    printed = capsys.readouterr().out
    assert "experiment 'cmp': 2 run(s), sorted by roc_auc_adverse" in printed
    with pytest.raises(ConfigError, match="nope"):
        compare.run({**dict(cfg), "experiment": "nope", "tracking": {"uri": uri}})

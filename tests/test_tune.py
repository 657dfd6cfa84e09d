"""``riskml.tune``: Optuna trials as nested MLflow runs; the SQLite study resumes."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from hydra import compose, initialize_config_module

from riskml import tune
from riskml.exceptions import ConfigError

CSV = Path(__file__).parent / "data" / "credit_small.csv"


def tune_cfg(tmp: Path, n_trials: int):
    train = ["data=tabular", f"data.path={CSV}", "data.id_column=customer_id", "data.target_column=outcome",
             "data.negative_class=good", "split.n_splits=2", "model=lightgbm", "model.num_boost_round=30",
             "model.min_data_in_leaf=10"]  # a fixed LightGBM: data=tabular defaults to model=auto
    with initialize_config_module("riskml.conf", version_base="1.3"):
        cfg = compose("tune", overrides=[f"n_trials={n_trials}", f"storage=sqlite:///{tmp}/optuna.db",
                                         f"tracking.uri=sqlite:///{tmp}/mlflow.db", "study_name=unit"])
    cfg.overrides = train
    cfg.search_space = {"model.num_leaves": {"type": "int", "low": 4, "high": 16},
                        "model.monotone": {"type": "categorical", "choices": [True, False]}}
    return cfg


def test_suggest_rejects_an_unknown_type():
    study = optuna.create_study()
    with pytest.raises(ConfigError, match="search_space.x.type"):
        tune.suggest(study.ask(), {"x": {"type": "gaussian"}})


@pytest.mark.slow
def test_trials_are_nested_runs_and_the_study_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = tune.run(tune_cfg(tmp_path, 2))
    assert first.n_complete == 2
    again = tune.run(tune_cfg(tmp_path, 3))  # same study: only the missing trial runs
    assert again.n_complete == 3 and again.parent_run_id == first.parent_run_id

    study = optuna.load_study(study_name="unit", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 3
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["riskml_tune"])
    children = runs[runs["tags.mlflow.parentRunId"] == first.parent_run_id]
    assert len(children) == 3 and len(runs) == 4
    assert sorted(children["tags.mlflow.runName"]) == ["trial-0", "trial-1", "trial-2"]
    # each trial's value is its run's metric, and the trials never touched the registry or models/
    # (selected on the validation slice, never on the test set)
    by_run = dict(zip(children["run_id"], children["metrics.valid_roc_auc_adverse"]))
    assert not np.allclose(children["metrics.valid_roc_auc_adverse"], children["metrics.roc_auc_adverse"])
    for t in study.trials:
        assert t.value == pytest.approx(by_run[t.user_attrs["mlflow_run_id"]])
    assert again.best_value == pytest.approx(max(by_run.values()))
    assert not mlflow.MlflowClient().search_registered_models()
    assert not (tmp_path / "models").exists()

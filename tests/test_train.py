"""``riskml.train``: splits, bad configs failing before training, the synthetic run end to end,
the leakage guard, and a Hydra multirun landing one run per job in one experiment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from riskml import explain, train
from riskml.io import files as io
from riskml.store import model_store
from riskml.training.datasets import kfold_splits, out_of_time_split, time_cut
from riskml.exceptions import ConfigError, LeakageError

CSV = Path(__file__).parent / "data" / "credit_small.csv"
TABULAR = ["data=tabular", f"data.path={CSV}", "data.id_column=customer_id", "data.target_column=outcome",
           "data.negative_class=good", "eval.plots=false", "split.n_splits=3"]


def cfg_for(tmp: Path, *overrides: str):
    store = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models"]
    if not any(o.startswith("data=") for o in overrides):
        store.append(f"data.data_dir={tmp}/data")
    with initialize_config_module("riskml.conf", version_base="1.3"):
        return compose("train", overrides=[*store, *overrides])


SMALL = ["data.n_borrowers=2000", "model.num_boost_round=60", "eval.oracle_max_rows=400", "eval.oracle_n_paths=40",
         "eval.whatif_max_cases=150", "eval.whatif_n_paths=40"]


# --- splits ---------------------------------------------------------------------------------------

def test_out_of_time_split_keeps_time_order_and_borrowers_apart():
    borrower = np.repeat(np.arange(100), 10)
    month = np.tile(np.arange(10), 100)
    cut = time_cut(month, test_months=3)
    assert cut == 6
    f = out_of_time_split(month, borrower, cut=cut, valid_fraction=0.2, seed=0, test_entity_fraction=0.3)
    assert month[f.train].max() <= 6 < month[f.test].min()
    assert not set(borrower[f.test]) & set(borrower[np.concatenate([f.train, f.valid])])
    assert not set(borrower[f.train]) & set(borrower[f.valid])
    # held-out share: 30 of 100 borrowers give the test rows (3 late months each), 70 train
    assert len(np.unique(borrower[f.test])) == 30 and len(f.test) == 90
    assert len(f.train) + len(f.valid) == 70 * 7
    # no held-out share: every late row is test and its borrowers leave training
    active = np.isin(borrower, np.arange(40)) | (month <= 6)  # borrowers 40.. stop after month 6
    f = out_of_time_split(month[active], borrower[active], cut=cut, valid_fraction=0.2, seed=0)
    assert len(f.test) == 40 * 3 and len(f.train) + len(f.valid) == 60 * 7
    with pytest.raises(ConfigError, match="train rows 0"):
        out_of_time_split(month, borrower, cut=cut, valid_fraction=0.2, seed=0)
    with pytest.raises(ConfigError, match="split.test_months"):
        time_cut(month, test_months=10)


def test_kfold_is_stratified_and_entity_disjoint():
    y = np.array([0] * 80 + [1] * 20)
    groups = np.arange(100)
    folds = kfold_splits(y, groups, n_splits=4, valid_fraction=0.25, seed=0)
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(100))
    assert [int(y[f.test].sum()) for f in folds] == [5, 5, 5, 5]
    with pytest.raises(ConfigError, match="split.n_splits"):
        kfold_splits(y[:83], groups[:83], n_splits=4, valid_fraction=0.2, seed=0)  # 3 positives < 4 folds


# --- bad config fails before training (no tracking store is even created) --------------------------

@pytest.mark.parametrize("overrides, key, match", [
    (["model=lightgbm", "model.name=xgboost"], "model.name", "xgboost"),
    ([*TABULAR, "data.target_column=defaulted"], "data.target_column", "defaulted"),
    ([*TABULAR, "+data.factors={overdue: [dpd]}"], "data.factors.overdue", "dpd"),
    ([*TABULAR, "data.kind=spreadsheet"], "data.kind", "spreadsheet"),
    (["target.name=churn"], "target", "churn"),
    (["seed=abc"], "seed", "abc"),
    (["model.num_leaves=1"], "model.num_leaves", "1"),
    (["model.learning_rate=-1"], "model.learning_rate", "-1"),
    (["model.num_boost_round=0"], "model.num_boost_round", "0"),
    (["model=logistic"], "model.name", "target=system"),
    (["eval.cache=maybe"], "eval.cache", "maybe"),
    (["eval.whatif_n_paths=1"], "eval.whatif_n_paths", "1"),
    (["eval.whatif=sometimes"], "eval.whatif", "sometimes"),
    (["eval.whatif_learn=[churn_3m]"], "eval.whatif_learn", "churn_3m"),
    (["report.iv_binning=cart"], "report.iv_binning", "cart"),
    (["report.profile=maybe"], "report.profile", "maybe"),
    (["report.profile_state_rows=abc"], "report.profile_state_rows", "abc"),
    (["report.profile_cycle_months=0"], "report.profile_cycle_months", "0"),
    (["report.tolerance=2"], "report.tolerance", "strictly between 0 and 1"),
    (["split.test_months=abc"], "split.test_months", "abc"),
    (["split.valid_fraction=1.5"], "split.valid_fraction", "strictly between 0 and 1"),
    (["+test_month=3"], "test_month", "a \\+key adds a key riskml never reads"),
])
def test_bad_config_fails_before_training(tmp_path, overrides, key, match):
    with pytest.raises(ConfigError, match=match) as e:
        train.run(cfg_for(tmp_path, *overrides))
    assert e.value.key == key
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "data").exists()


def test_one_class_target_fails_before_training(tmp_path):
    one = tmp_path / "one.csv"
    pd.read_csv(CSV).assign(outcome="good").to_csv(one, index=False)
    with pytest.raises(ConfigError, match="at least two classes"):
        train.run(cfg_for(tmp_path, *TABULAR, f"data.path={one}"))
    assert not (tmp_path / "mlflow.db").exists()


# --- leakage guard --------------------------------------------------------------------------------

def test_leakage_guard_names_the_feature_and_fails_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    leaky = tmp_path / "leaky.csv"
    df = pd.read_csv(CSV)
    df["collections_flag"] = (df["outcome"] == "default").astype(int)  # the label in disguise
    df.to_csv(leaky, index=False)
    with pytest.raises(LeakageError, match=r"collections_flag \(AUC 1.0000\)"):
        train.run(cfg_for(tmp_path, *TABULAR, f"data.path={leaky}", "model=logistic"))
    failed = mlflow.search_runs(experiment_names=["riskml"])
    assert failed["status"].tolist() == ["FAILED"]
    assert "collections_flag" in failed["tags.riskml.leakage"].iloc[0]

    result = train.run(cfg_for(tmp_path, *TABULAR, f"data.path={leaky}", "model=logistic", "leakage.allow=true"))
    assert [f for f, _ in result.leaks] == ["collections_flag"]
    assert result.metrics["leakage_features"] == 1.0


# --- synthetic end to end -------------------------------------------------------------------------

@pytest.mark.slow
def test_synthetic_lightgbm_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train.run(cfg_for(tmp_path, *SMALL, "target=status_3m"))
    m, ds, test = result.metrics, result.dataset, result.test_index

    # metrics equal their hand-computed values on the scored test rows
    p = result.model.predict_proba(ds.X.iloc[test])
    adverse = (ds.y[test] > 0).astype(int)
    assert m["roc_auc_adverse"] == pytest.approx(roc_auc_score(adverse, 1 - p[:, 0]))
    assert m["brier"] == pytest.approx(np.mean((1 - p[:, 0] - adverse) ** 2))
    assert m["gini"] == pytest.approx(2 * m["roc_auc_adverse"] - 1)
    assert 0.5 < m["oracle_auc_adverse"] <= 1 and m["oracle_rows"] == 400
    assert m["auc_gap_to_oracle"] == pytest.approx(m["oracle_auc_adverse"] - m["model_auc_adverse_oracle_rows"])
    assert -0.15 < m["auc_gap_to_oracle"] < 0.25
    # explanation fidelity: the top reason of each adverse test snapshot against its true cause
    cause = ds.cause.iloc[test].reset_index(drop=True)
    rows = np.flatnonzero(cause.notna().to_numpy() & (ds.y[test] > 0))
    expl = explain.FactorExplainer(result.model.booster, ds.feature_factors)
    adv = explain.adverse_contributions(expl.contributions(ds.X.iloc[test[rows]]), p[rows],
                                        adverse_classes=range(1, len(ds.classes)))
    top = explain.top_reasons(adv, expl.factors, k=1)
    top1 = np.full(len(rows), "none", dtype=object)
    top1[top["row"].to_numpy()] = top["factor"].astype(object).to_numpy()
    hits = top1 == cause.iloc[rows].astype(str).to_numpy()
    assert m["fidelity_events"] == len(rows) > 20
    assert m["fidelity_top1"] == pytest.approx(hits.mean()) and m["fidelity_top1"] > 0.6  # far above chance
    confusion = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=result.run_id,
                                                                artifact_path="fidelity_confusion.csv",
                                                                dst_path=str(tmp_path / "art")), index_col=0)
    assert confusion.to_numpy().sum() == len(rows)
    # and on a fresh portfolio per scenario: metrics and one confusion table with every scenario
    scen = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=result.run_id,
                                                           artifact_path="fidelity_scenarios_confusion.csv",
                                                           dst_path=str(tmp_path / "art")), index_col=[0, 1, 2])
    assert set(scen.index.get_level_values("scenario")) == {"baseline", "tightening", "maintenance"}
    for name in ("baseline", "tightening", "maintenance"):
        assert scen.loc[("adverse", name)].to_numpy().sum() == m[f"fidelity_adverse_{name}_events"] > 20
        assert 0.6 < m[f"fidelity_adverse_{name}_top1"] <= 1
    # the what-if against the simulator following the advice: per factor, on the test set and a tightening
    what = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="whatif_per_factor.csv",
                                                           dst_path=str(tmp_path / "art")), index_col=[0, 1])
    assert set(what.index.get_level_values("data")) == {"test", "tightening"}
    assert m["whatif_cases"] == what.loc[("test", "overall"), "cases"] > 100
    assert sum(m[f"whatif_cases_{f}"] for f in ("overdue", "multi_lending", "abnormal_use", "score_decline")
               if f"whatif_cases_{f}" in m) == m["whatif_cases"]
    assert 0 <= m["whatif_mae"] < 0.1 and 0 <= m["whatif_tightening_mae"] < 0.15
    assert 0.5 < m["valid_roc_auc_adverse"] <= 1  # what tuning selects on
    # out of time: the test snapshots are later than every training snapshot, and borrowers do not cross
    (fold,) = train.make_folds(ds, {"seed": 0, "split": cfg_for(tmp_path).split})
    np.testing.assert_array_equal(fold.test, test)
    assert ds.time[fold.train].max() < ds.time[test].min() and ds.time[test].max() == ds.time.max()
    assert not set(ds.groups[test]) & set(ds.groups[np.concatenate([fold.train, fold.valid])])
    assert ds.classes == ["normal", "suspended", "closed"]

    run = mlflow.get_run(result.run_id)
    assert run.data.params["model.num_leaves"] == str(cfg_for(tmp_path).model.num_leaves)  # the flattened config
    assert run.data.params["data.n_borrowers"] == "2000"
    assert run.data.tags["riskml.data_digest"] == ds.digest
    assert run.inputs.dataset_inputs[0].dataset.digest == ds.digest[:36]
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert arts == {"plots/roc.png", "plots/calibration.png", "plots/importance_by_factor.png"}

    # registered as the target's model, champion, exported with a manifest that scoring can use
    assert result.registration.name == "riskml_status" and result.registration.promoted
    booster, manifest = model_store.load_model_dir(tmp_path / "models" / "riskml_status")
    assert model_store.registered_version(tmp_path / "models" / "riskml_status")["model_version"] == 1
    assert manifest["target"] == "status_3m" and manifest["horizon"] == 3
    assert manifest["data_digest"] == ds.digest and manifest["windows"] == [3, 6, 12]
    assert set(manifest["feature_factors"].values()) <= {*__import__("riskml.factors").factors.CATALOGUE}
    pyfunc = mlflow.pyfunc.load_model(result.model_uri)
    out = pyfunc.predict(ds.X.iloc[test[:10]].astype("float64"))
    assert list(out.columns) == ["p_normal", "p_suspended", "p_closed"]
    np.testing.assert_allclose(out.to_numpy(), p[:10], rtol=1e-9)

    # the data set is reused, not regenerated; a manifest that disagrees fails when asked to
    manifest_file = tmp_path / "data" / "default" / "manifest.json"
    stamp = manifest_file.stat().st_mtime_ns
    with pytest.raises(ConfigError, match="data.n_borrowers"):
        train.run(cfg_for(tmp_path, *SMALL, "target=status_3m", "data.n_borrowers=2500", "data.on_mismatch=fail"))
    assert manifest_file.stat().st_mtime_ns == stamp
    assert json.loads(manifest_file.read_text())["sim_config"]["n_borrowers"] == 2000

    # a second, worse run does not take the alias (and does not overwrite the export)
    worse = train.run(cfg_for(tmp_path, *SMALL, "target=status_3m", "model.num_boost_round=1",
                              "model.learning_rate=0.01"))
    assert worse.registration.version == 2 and not worse.registration.promoted
    assert model_store.registered_version(tmp_path / "models" / "riskml_status")["model_version"] == 1


@pytest.mark.slow
def test_multirun_logs_one_run_per_job_in_one_experiment(tmp_path):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "riskml.train", "-m", "model=logistic,hist_gbm", *TABULAR,
           f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.experiment=sweep"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["sweep"])
    assert sorted(runs["params.model.name"]) == ["hist_gbm", "logistic"]
    assert set(runs["status"]) == {"FINISHED"}
    assert runs["experiment_id"].nunique() == 1
    assert not (tmp_path / "models").exists()  # baselines are never exported


def test_a_data_set_from_another_simulator_version_is_regenerated(tmp_path):
    from riskml.sources import load_synthetic

    cfg = cfg_for(tmp_path, "data.n_borrowers=600")
    data_cfg = OmegaConf.to_container(cfg.data)
    load_synthetic(data_cfg, target="adverse_3m", horizon=3, base=tmp_path)
    manifest_file = tmp_path / "data" / "default" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["sim_config"]["engine"]["retired_param"] = 0.8  # what an older riskml wrote
    manifest_file.write_text(json.dumps(manifest))
    ds = load_synthetic(data_cfg, target="adverse_3m", horizon=3, base=tmp_path)
    assert "retired_param" not in json.loads(manifest_file.read_text())["sim_config"]["engine"]
    assert ds.meta["n_borrowers"] > 0


def test_two_trains_creating_one_new_store_at_once_both_succeed(tmp_path):
    code = ("import sys; from riskml.store import tracking; "
            "print(tracking.setup('sqlite:///' + sys.argv[1] + '/mlflow.db', 'riskml'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-2000:] for _, e in outs]
    assert len({o.strip() for o, _ in outs}) == 1  # one experiment, the same id for all

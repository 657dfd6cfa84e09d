"""``data=panel``: training on a lender's own panel (CSV, no truth, no manifest): rejects with their
reason, conservation of borrowers, the absent-cause case, every target, and predict on the model."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from riskml import predict, train
from riskml.sources import read_panel
from riskml.exceptions import SchemaError
from riskml.simulate import SimConfig, simulate

FAST = ["eval.plots=false", "model.num_boost_round=60", "model.min_data_in_leaf=50"]


@pytest.fixture(scope="module")
def lender(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A simulated panel written as a lender would have it: CSV, rows shuffled, no truth, no manifest."""
    tmp = tmp_path_factory.mktemp("lender")
    panel = simulate(SimConfig(n_borrowers=1500, n_months=24, seed=5)).panel
    panel = panel.sample(frac=1.0, random_state=1).reset_index(drop=True)  # months in any order
    path = tmp / "panel.csv"
    panel.to_csv(path, index=False)
    return path, panel


def cfg_for(tmp: Path, data_path: Path, *overrides: str):
    with initialize_config_module("riskml.conf", version_base="1.3"):
        return compose("train", overrides=["data=panel", f"data.path={data_path}",
                                           f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models",
                                           *FAST, *overrides])


def with_bad_rows(panel: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, dict[int, str]]:
    """The panel as strings with five bad rows; returns it and row -> expected reason."""
    raw = panel.astype(str).replace({"nan": "", "<NA>": "", "None": ""})
    bad = {3: ("drawn", "lots", "drawn is not numeric"), 10: ("balance", "-5", "balance below 0"),
           20: ("status", "frozen", "status not one of"), 30: ("cause", "bad_luck", "cause not one of"),
           40: ("borrower_id", "", "borrower_id is missing")}
    if "cause" not in raw.columns:  # a panel without causes cannot have a bad one
        del bad[30]
    for row, (col, value, _) in bad.items():
        raw.loc[row, col] = value
    dup = raw.iloc[[50]].copy()  # a second copy of one borrower-month: both rows are rejected
    raw = pd.concat([raw, dup], ignore_index=True)
    raw.to_csv(path, index=False)
    reasons = {r: why for r, (_, _, why) in bad.items()}
    reasons.update({50: "duplicate (borrower_id, month)", len(raw) - 1: "duplicate (borrower_id, month)"})
    # the row that lost its id leaves a hole in its borrower's months: the month after it is a gap
    b, m = panel.loc[40, "borrower_id"], panel.loc[40, "month"]
    after = panel.index[(panel["borrower_id"] == b) & (panel["month"] == m + 1)]
    if len(after) and ((panel["borrower_id"] == b) & (panel["month"] == m - 1)).any() and after[0] not in reasons:
        reasons[int(after[0])] = "month gap"
    return raw, reasons


def test_bad_rows_leave_their_borrower_out_with_the_reason(lender, tmp_path):
    path, panel = lender
    raw, reasons = with_bad_rows(panel, tmp_path / "bad.csv")
    checked = read_panel(tmp_path / "bad.csv")
    rej = checked.rejects.sort_values("row").reset_index(drop=True)
    assert rej["row"].tolist() == sorted(reasons)
    for r, why in reasons.items():
        assert rej.loc[rej["row"] == r, "reason"].iloc[0].startswith(why)
    assert (rej["file"] == str(tmp_path / "bad.csv")).all()
    assert rej.loc[rej["row"] == 40, "borrower_id"].isna().all()  # no usable id: a reject without a borrower
    bad_ids = {int(panel.loc[r, "borrower_id"]) for r in reasons if r not in (40, len(raw) - 1)}
    c = checked.counts
    assert c["rejected_borrowers"] == len(bad_ids) and c["rejected_rows"] == len(reasons)
    assert c["input_borrowers"] == panel["borrower_id"].nunique() == c["used_borrowers"] + c["rejected_borrowers"]
    assert c["input_rows"] == len(raw) and c["rows_without_borrower_id"] == 1
    # every row of a rejected borrower is out (its history would have a hole); all others are in, sorted
    assert not set(checked.panel["borrower_id"]) & bad_ids
    kept = panel[~panel["borrower_id"].isin(bad_ids)]
    assert c["used_rows"] == len(checked.panel) == len(kept) - (40 in kept.index)
    assert checked.panel[["borrower_id", "month"]].equals(
        checked.panel[["borrower_id", "month"]].sort_values(["borrower_id", "month"]).reset_index(drop=True))


def test_a_missing_required_column_stops_before_anything_is_written(lender, tmp_path):
    path, panel = lender
    short = tmp_path / "short.csv"
    panel.drop(columns=["days_past_due"]).to_csv(short, index=False)
    with pytest.raises(SchemaError, match=r"short.csv: missing required panel column\(s\) \['days_past_due'\]"):
        train.run(cfg_for(tmp_path, short))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "models").exists()


@pytest.mark.slow
def test_train_without_cause_says_what_was_not_measured_and_predict_uses_the_model(lender, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, panel = lender
    no_cause = tmp_path / "no_cause.csv"
    _, reasons = with_bad_rows(panel.drop(columns=["cause"]), no_cause)
    result = train.run(cfg_for(tmp_path, no_cause, "target=adverse_3m"))
    m, ds = result.metrics, result.dataset
    assert ds.kind == "panel" and ds.cause is None
    assert not any(k.startswith(("oracle", "fidelity", "auc_gap")) for k in m)  # no fake numbers
    tags = mlflow.get_run(result.run_id).data.tags
    assert tags["riskml.fidelity"] == "not measured: the panel has no cause column"
    assert tags["riskml.oracle"].startswith("not available")
    assert m["panel_input_borrowers"] == m["panel_used_borrowers"] + m["panel_rejected_borrowers"]
    assert m["panel_rejected_rows"] == len(reasons)
    rejects = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="rejects.csv",
                                                              dst_path=str(tmp_path / "art")))
    assert len(rejects) == m["panel_rejected_rows"] and set(rejects.columns) == {"borrower_id", "file", "row",
                                                                                  "reason"}
    # the out-of-time split with held-out borrowers of simulated data
    (fold,) = train.make_folds(ds, cfg_for(tmp_path, no_cause))
    assert ds.time[fold.train].max() < ds.time[fold.test].min()
    assert not set(ds.groups[fold.test]) & set(ds.groups[np.concatenate([fold.train, fold.valid])])
    assert 0.7 < m["roc_auc_adverse"] <= 1
    # the scoring system trains on the panel too, and predict scores new histories of the same lender with it
    system = train.run(cfg_for(tmp_path, no_cause))
    assert system.registration.name == "riskml" and system.model_dir.is_dir()
    assert system.parts["adverse"].dataset.kind == "panel"
    new = tmp_path / "new.csv"
    simulate(SimConfig(n_borrowers=200, n_months=12, seed=11)).panel.drop(columns=["cause"]).to_csv(new, index=False)
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        pcfg = compose("predict", overrides=[f"input={new}", f"output={tmp_path}/scores.csv",
                                             f"model={system.model_dir}"])
    out = predict.run(pcfg)
    assert out.summary["scored_borrowers"] == 200 and out.summary["rejected_borrowers"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("target", ["status_3m", "recovery_6m"])
def test_every_target_trains_on_a_panel_with_its_recorded_cause(lender, tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    path, _ = lender
    result = train.run(cfg_for(tmp_path, path, f"target={target}"))
    tags = mlflow.get_run(result.run_id).data.tags
    assert result.dataset.cause is not None and result.metrics["panel_rejected_rows"] == 0
    # fidelity: the top reason against the cause the lender recorded (the first change's on the adverse
    # side, the one that stands in the way on the recovery side)
    assert tags["riskml.fidelity"] == "measured against the cause the lender recorded"
    assert 0 < result.metrics["fidelity_top1"] <= 1 and result.metrics["fidelity_events"] > 0
    assert result.dataset.classes == {"status_3m": ["normal", "suspended", "closed"],
                                      "recovery_6m": ["not_recovered", "recovered"]}[target]
    assert result.registration.name == {"status_3m": "riskml_status", "recovery_6m": "riskml_recovery"}[target]

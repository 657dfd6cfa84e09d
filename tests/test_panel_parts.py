"""A lender's panel read as it is: a folder whose parts differ in an optional column, a borrower whose months
have a gap, a first borrower with a rejected row, and the settings a train checks before any fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from riskml import predict, train
from riskml.exceptions import ConfigError
from riskml.simulate import SimConfig, simulate
from riskml.sources import read_panel

FAST = ["eval.plots=false", "model.num_boost_round=30", "model.min_data_in_leaf=30", "report.enabled=false"]


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return simulate(SimConfig(n_borrowers=800, n_months=24, seed=3)).panel


def two_parts(panel: pd.DataFrame, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The panel as two parts: the first without ``cause``, the second with it (fraud closures among them)."""
    ids = np.sort(panel["borrower_id"].unique())
    first, second = ids[: len(ids) // 2], ids[len(ids) // 2:]
    folder.mkdir()
    panel[panel["borrower_id"].isin(first)].drop(columns="cause").to_parquet(folder / "part-0.parquet")
    panel[panel["borrower_id"].isin(second)].to_parquet(folder / "part-1.parquet")
    return first, second


def test_a_part_without_cause_keeps_the_cause_of_the_other_parts(panel, tmp_path):
    first, second = two_parts(panel, tmp_path / "parts")
    got = read_panel(tmp_path / "parts").panel
    assert got["cause"].notna().any()
    mine = got[got["borrower_id"].isin(second)].set_index(["borrower_id", "month"])["cause"].astype(str)
    want = panel[panel["borrower_id"].isin(second)].set_index(["borrower_id", "month"])["cause"].astype(str)
    pd.testing.assert_series_equal(mine.sort_index(), want.sort_index(), check_names=False)
    assert got[got["borrower_id"].isin(first)]["cause"].isna().all()  # missing for its own part's rows only


def predict_cfg(models: Path, inp, out):
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        return compose("predict", overrides=[f"input={inp}", f"output={out}", f"model={models}/models/riskml"])


def test_predict_on_parts_scores_the_second_part_as_on_its_own(small_system, panel, tmp_path):
    _, second = two_parts(panel, tmp_path / "parts")
    both = predict.run(predict_cfg(small_system, tmp_path / "parts", tmp_path / "both.parquet"))
    alone = predict.run(predict_cfg(small_system, tmp_path / "parts/part-1.parquet", tmp_path / "alone.parquet"))
    b = pd.read_parquet(both.output).set_index("borrower_id").loc[second]
    a = pd.read_parquet(alone.output).set_index("borrower_id").loc[second]
    assert (a["p_recovery_6m"].notna()).any()
    np.testing.assert_allclose(b["p_recovery_6m"].to_numpy(), a["p_recovery_6m"].to_numpy(), equal_nan=True)


def with_gaps(panel: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, str]]:
    """Three borrowers whose months are not one row a month: YYYYMM months over a year's end, a missing
    month, a row at month 100000 after the others; borrower -> the reason its reject starts with."""
    ids = np.sort(panel["borrower_id"].unique())
    out = panel.copy()
    yyyymm = out["borrower_id"] == ids[0]
    months = out.loc[yyyymm, "month"].to_numpy()
    out.loc[yyyymm, "month"] = np.where(months < 6, 202407 + months, 202501 + months - 6)
    out = out[~((out["borrower_id"] == ids[1]) & (out["month"] == 7))]
    far = out[(out["borrower_id"] == ids[2]) & (out["month"] == 13)].copy()
    far["month"] = 100000
    out = pd.concat([out, far], ignore_index=True)
    return out.reset_index(drop=True), {int(ids[0]): "month above", int(ids[1]): "month gap",
                                        int(ids[2]): "month above"}


def test_a_month_gap_is_a_reject_with_its_reason(panel, tmp_path):
    raw, bad = with_gaps(panel)
    raw.to_parquet(tmp_path / "gaps.parquet")
    checked = read_panel(tmp_path / "gaps.parquet")
    gap = checked.rejects[checked.rejects["reason"].str.startswith("month gap")]
    assert gap["borrower_id"].astype(int).tolist() == [b for b, why in bad.items() if why == "month gap"]
    assert len(gap) == 1  # the first month after the gap
    assert set(checked.rejects["borrower_id"].astype(int)) == set(bad)
    assert not checked.panel["borrower_id"].isin(list(bad)).any()
    assert checked.counts["used_borrowers"] == panel["borrower_id"].nunique() - 3


def test_predict_rejects_a_borrower_with_a_month_gap(small_system, panel, tmp_path):
    raw, bad = with_gaps(panel)
    raw.to_parquet(tmp_path / "gaps.parquet")
    out = predict.run(predict_cfg(small_system, tmp_path / "gaps.parquet", tmp_path / "s.parquet"))
    rej = pd.read_parquet(out.rejects)
    assert set(rej.loc[rej["reason"].str.startswith("month gap"), "borrower_id"].astype(int)) == \
        {b for b, why in bad.items() if why == "month gap"}
    assert set(rej["borrower_id"].astype(int)) == set(bad)
    assert not pd.read_parquet(out.output)["borrower_id"].isin(list(bad)).any()


def cfg_for(tmp: Path, data_path: Path, *overrides: str):
    with initialize_config_module("riskml.conf", version_base="1.3"):
        return compose("train", overrides=["data=panel", f"data.path={data_path}",
                                           f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models",
                                           *FAST, *overrides])


def test_a_system_trains_when_its_first_borrower_holds_a_rejected_row(panel, tmp_path):
    raw = panel.astype({"status": str}).sort_values(["borrower_id", "month"]).reset_index(drop=True)
    raw.loc[0, "status"] = "frozen"  # the first borrower of the file is rejected
    raw.to_csv(tmp_path / "panel.csv", index=False)
    # a small panel: a role with few events may look leaky; the point here is that the train finishes
    result = train.run(cfg_for(tmp_path, tmp_path / "panel.csv", "data.min_history=3", "leakage.allow=true"))
    assert result.model_dir is not None and (result.model_dir / "system.json").is_file()


@pytest.mark.parametrize("override,key", [("register.metric=roc_auc_adverse_typo", "register.metric"),
                                          ("export.dir={tmp}/a_file/models", "export.dir")])
def test_what_fails_at_the_end_of_a_train_fails_before_any_fit(panel, tmp_path, override, key, monkeypatch):
    panel.to_parquet(tmp_path / "panel.parquet")
    (tmp_path / "a_file").write_text("not a folder")
    override = override.format(tmp=tmp_path)
    monkeypatch.setattr(train, "run_system", lambda *a, **k: pytest.fail("trained before the check"))
    with pytest.raises(ConfigError, match=key):
        train.run(cfg_for(tmp_path, tmp_path / "panel.parquet", override))

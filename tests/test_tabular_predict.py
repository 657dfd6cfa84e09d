"""``riskml.predict`` on a table with a ``data=tabular`` model: probabilities, reasons in the user's
factors, rejects, unseen categories, a table that does not fit the model, kill and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import killed_on_call
from hydra import compose, initialize_config_module

from riskml import factors, predict, train
from riskml.batch import table_job
from riskml.io.files import sha256_file
from riskml.exceptions import ModelError

CSV = Path(__file__).parent / "data" / "credit_small.csv"
FACTORS = "data.factors={overdue: [days_past_due], multi_lending: [other_lenders, debt_to_income], bureau: [external_score]}"
CUSTOM = "data.custom_factors=[bureau]"  # a factor of the lender's own


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A model=auto model (a LightGBM-and-scorecard blend) trained on the made-up credit table."""
    tmp = tmp_path_factory.mktemp("tabular")
    with initialize_config_module("riskml.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=tabular", f"data.path={CSV}", "data.id_column=customer_id", "data.target_column=outcome",
            "data.negative_class=good", FACTORS, CUSTOM, "split.n_splits=2", "model.inner_folds=3", "eval.plots=false",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models"])
    return train.run(cfg)


def predict_cfg(model_dir: Path, inp: Path, out: Path, *overrides: str):
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        return compose("predict", overrides=[f"input={inp}", f"output={out}", f"model={model_dir}", *overrides])


def test_a_table_is_scored_with_reasons_in_the_users_factors(tabular, tmp_path):
    result = predict.run(predict_cfg(tabular.model_dir, CSV, tmp_path / "s.parquet"))
    df, raw = pd.read_parquet(result.output), pd.read_csv(CSV)
    assert df["customer_id"].tolist() == raw["customer_id"].astype(str).tolist()  # one row per input row, in order
    np.testing.assert_allclose(df["p_good"] + df["p_default"], 1, atol=1e-12)
    # the probabilities are the trained model's on the same rows (categoricals by level, missing as missing)
    np.testing.assert_allclose(df["p_adverse"], tabular.model.predict_proba(tabular.dataset.X)[:, 1], rtol=1e-9)
    assert df["risk_band"].isin(list("ABCDE")).all()
    mapped = {"overdue", "multi_lending", "bureau"}
    reasons = pd.concat([df[f"reason_{i}"] for i in (1, 2, 3)]).dropna()
    assert set(reasons) <= mapped and "bureau" in set(reasons)  # never "other" unless asked
    for i in (1, 2, 3):
        fid = df[f"reason_{i}"].astype(object)  # dictionary-encoded columns read as categoricals
        documented = fid.isin(list(factors.CAUSES))
        assert (df.loc[documented, f"reason_{i}_advice"].astype(object) == fid[documented].map(
            lambda f: factors.CATALOGUE[f].advice)).all()
        assert df.loc[fid == "bureau", f"reason_{i}_advice"].isna().all()  # the user's own factor: none
        assert df.loc[fid == "bureau", f"reason_{i}_label"].astype(object).eq("bureau").all()
        assert (df[f"reason_{i}_contribution"].dropna() > 0).all()
    both = df["reason_2_contribution"].notna()
    assert (df.loc[both, "reason_1_contribution"] >= df.loc[both, "reason_2_contribution"]).all()
    s = result.summary
    assert s["input_rows"] == s["scored_rows"] == len(raw) and s["rejected_rows"] == 0
    assert s["unseen_categories"] == {}
    other = pd.read_parquet(predict.run(predict_cfg(tabular.model_dir, CSV, tmp_path / "o.parquet",
                                                    "include_other=true")).output)
    assert "other" in set(pd.concat([other[f"reason_{i}"] for i in (1, 2, 3)]).dropna())


def test_bad_rows_are_rejected_and_unseen_categories_reported(tabular, tmp_path):
    raw = pd.read_csv(CSV, dtype=str)
    raw.loc[2, "days_past_due"] = "lots"
    raw.loc[5, "customer_id"] = ""
    raw.loc[7, "region"] = "central"
    raw.loc[9, "external_score"] = "inf"
    inp = tmp_path / "bad.csv"
    raw.to_csv(inp, index=False)
    result = predict.run(predict_cfg(tabular.model_dir, inp, tmp_path / "s.csv", "format=csv"))
    rej = pd.read_csv(result.rejects)
    assert rej["row"].tolist() == [2, 5, 9]
    assert rej["reason"].tolist() == ["days_past_due is not numeric", "customer_id is missing",
                                      "external_score is not a finite number"]
    assert (rej["file"] == str(inp)).all()
    s = result.summary
    assert s["input_rows"] == len(raw) == s["scored_rows"] + s["rejected_rows"] and s["rejected_rows"] == 3
    assert s["unseen_categories"] == {"region": {"central": 1}}
    df = pd.read_csv(result.output, dtype={"customer_id": str})
    row = df[df["customer_id"] == raw.loc[7, "customer_id"]]
    assert row["unseen_categories"].tolist() == ["region=central"]
    # an unseen level is scored as a missing one
    missing = raw.iloc[[7]].assign(region="")
    (tmp_path / "m").mkdir()
    missing.to_csv(tmp_path / "m" / "one.csv", index=False)
    one = pd.read_csv(predict.run(predict_cfg(tabular.model_dir, tmp_path / "m" / "one.csv", tmp_path / "m" / "o.csv",
                                              "format=csv")).output)
    assert one["p_adverse"].iloc[0] == pytest.approx(row["p_adverse"].iloc[0], rel=1e-12)


def test_a_table_missing_a_model_column_stops_before_anything_is_written(tabular, tmp_path):
    inp = tmp_path / "short.csv"
    pd.read_csv(CSV).drop(columns=["income"]).to_csv(inp, index=False)
    out = tmp_path / "out" / "s.parquet"
    with pytest.raises(ModelError, match=r"short.csv: the model 'riskml_tabular' needs column\(s\) \['income'\]"):
        predict.run(predict_cfg(tabular.model_dir, inp, out))
    assert not out.parent.exists()


def test_a_killed_table_job_resumes_to_the_same_output(tabular, tmp_path, monkeypatch):
    raw = pd.read_csv(CSV)
    big = pd.concat([raw.assign(customer_id=raw["customer_id"] + 10_000 * i) for i in range(8)], ignore_index=True)
    inp = tmp_path / "big.parquet"
    big.to_parquet(inp)
    clean = predict.run(predict_cfg(tabular.model_dir, inp, tmp_path / "clean" / "s.parquet", "bucket_rows=1000"))
    assert clean.summary["buckets"] == 4 and clean.summary["scored_rows"] == len(big)
    real = table_job.score_table
    monkeypatch.setattr(table_job, "score_table", killed_on_call(real, 3))
    out = tmp_path / "killed" / "s.parquet"
    with pytest.raises(KeyboardInterrupt):
        predict.run(predict_cfg(tabular.model_dir, inp, out, "bucket_rows=1000"))
    assert not out.exists() and not out.with_name("s.summary.json").exists()
    monkeypatch.setattr(table_job, "score_table", real)
    again = predict.run(predict_cfg(tabular.model_dir, inp, out, "bucket_rows=1000"))
    assert again.summary["resumed_buckets"] == 2
    assert sha256_file(again.output) == sha256_file(clean.output)


def test_a_table_job_keeps_the_history_jobs_guarantees(tabular, tmp_path, monkeypatch):
    """The table job runs in the history job's frame: one job at a time on an output, an earlier summary
    removed before any work, and conservation checked before the output is renamed into place (a
    BatchError, never an AssertionError, and nothing under the output's name)."""
    from riskml.exceptions import BatchError, InputError
    from riskml.io.files import job_lock

    out = tmp_path / "t.parquet"
    with job_lock(out, what="riskml.predict job"):  # another job holds the output
        with pytest.raises(InputError, match="another riskml.predict job"):
            predict.run(predict_cfg(tabular.model_dir, CSV, out))
    assert not out.exists()
    stale = tmp_path / "t.summary.json"
    stale.write_text('{"claims": "an earlier job"}')
    real = table_job.score_table

    def drops_a_row(good, *args, **kwargs):  # a scorer that loses a row: conservation must catch it
        return real(good, *args, **kwargs).iloc[1:]
    monkeypatch.setattr(table_job, "score_table", drops_a_row)
    with pytest.raises(BatchError, match="expected each input row exactly once"):
        predict.run(predict_cfg(tabular.model_dir, CSV, out))
    assert not out.exists() and not stale.exists()  # no output under its name, and no summary speaking of one

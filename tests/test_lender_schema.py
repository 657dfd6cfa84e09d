"""``data.schema``: a lender's panel in its own names, state and cause codes, YYYY-MM months and any subset of
behaviour columns - the schema checked before any data, a system trained on it, and its files scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from hydra import compose, initialize_config_module

from riskml import predict, train
from riskml.exceptions import ConfigError
from riskml.io.lender import LenderSchema, load_schema, month_index
from riskml.simulate import SimConfig, simulate
from riskml.sources import read_panel
from riskml.store.model_store import open_system
from riskml.store.pyfunc_system import score_rows

STATES = {"normal": "ACTIVE", "suspended": "FROZEN", "closed": "CLOSED"}
CODES = {"overdue": "OD", "agreement_violation": "FR", "multi_lending": "ML", "abnormal_use": "AU",
         "score_decline": "SD", "policy_tightening": "PT", "maintenance": "MT"}
DROPPED = ("invest_share", "utility_on_time", "policy_index", "maintenance")
FAST = ["eval.plots=false", "model.num_boost_round=40", "model.min_data_in_leaf=30", "report.enabled=false"]


def lender_frame(panel: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The panel as a lender has it, and its schema: renamed ids and states, YYYY-MM months, cause codes,
    four behaviour columns dropped, the rest under other names, and one column the schema does not name."""
    months = np.asarray(pd.period_range("2022-01", periods=int(panel["month"].max()) + 1, freq="M").astype(str))
    out = pd.DataFrame({"account_id": panel["borrower_id"].to_numpy(),
                        "period": months[panel["month"].to_numpy()],
                        "state": panel["status"].astype(str).map(STATES).to_numpy(),
                        "reason_code": panel["cause"].astype(object).map(CODES).to_numpy()})
    keep = [c for c in panel.columns if c not in ("borrower_id", "month", "status", "cause", *DROPPED)]
    for c in keep:
        out[f"x_{c}"] = panel[c].to_numpy()
    out["pay_status"] = np.minimum(panel["days_past_due"].to_numpy() // 30, 6)  # a signal of its own
    out["branch"] = 7
    schema = {"id": "account_id", "month": "period",
              "status": {"column": "state", **{s: [c] for s, c in STATES.items()}},
              "cause": {"column": "reason_code", "values": {v: k for k, v in CODES.items()}},
              "columns": {**{f"x_{c}": {"as": c} for c in keep},
                          "pay_status": {"factor": "overdue", "direction": 1, "rectified": 0}}}
    return out, schema


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return simulate(SimConfig(n_borrowers=700, n_months=24, seed=4)).panel


@pytest.fixture(scope="module")
def lender(panel, tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("lender")
    frame, schema = lender_frame(panel)
    frame.to_csv(tmp / "lender.csv", index=False)
    (tmp / "schema.yaml").write_text(yaml.safe_dump(schema))
    return tmp / "lender.csv", tmp / "schema.yaml", frame


def cfg_for(tmp: Path, data_path: Path, *overrides: str):
    with initialize_config_module("riskml.conf", version_base="1.3"):
        return compose("train", overrides=["data=panel", f"data.path={data_path}",
                                           f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models",
                                           *FAST, *overrides])


@pytest.fixture(scope="module")
def system(lender, tmp_path_factory):
    """A scoring system trained on the lender's file in its own schema."""
    path, schema, _ = lender
    tmp = tmp_path_factory.mktemp("lender_system")
    return train.run(cfg_for(tmp, path, f"data.schema={schema}", "report.enabled=true")), tmp


# --- the schema, checked before any data ----------------------------------------------------------------------
def good_schema() -> dict:
    return {"id": "account_id", "month": "period", "status": {"column": "state", "normal": ["current"],
                                                               "suspended": ["late"]},
            "columns": {"pay_status": {"factor": "overdue", "direction": 1, "rectified": 0},
                        "bureau": {"as": "external_score"}}}


def broken(change) -> dict:
    s = good_schema()
    change(s)
    return s


BAD = {
    "a code mapped to two states": (lambda s: s["status"].update(closed=["late"]), r"status.closed.*late.*one state"),
    "a direction not in -1/0/1": (lambda s: s["columns"]["pay_status"].update(direction=2),
                                  r"columns.pay_status.direction.*-1, 0 or 1"),
    "an unknown factor id": (lambda s: s["columns"]["pay_status"].update(factor="late_fees"),
                             r"columns.pay_status.factor.*late_fees.*custom_factors"),
    "the id column mapped as a signal": (lambda s: s["columns"].update(account_id={"factor": "other"}),
                                         r"columns.account_id.*schema's id column"),
    "the month column mapped as a signal": (lambda s: s["columns"].update(period={"as": "income"}),
                                            r"columns.period.*schema's month column"),
    "an unknown contract column": (lambda s: s["columns"].update(bureau={"as": "fico"}),
                                   r"columns.bureau.as.*fico.*behaviour column"),
    "a cause code to no documented factor": (lambda s: s.update(cause={"column": "why", "values": {"X": "luck"}}),
                                             r"cause.values.X.*luck"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_schema_is_one_line_naming_its_key_before_any_data_is_read(case, tmp_path, monkeypatch):
    change, message = BAD[case]
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(broken(change)))
    monkeypatch.setattr("riskml.sources.read_panel", lambda *a, **k: pytest.fail("data read before the check"))
    with pytest.raises(ConfigError, match=message) as err:
        train.run(cfg_for(tmp_path, tmp_path / "no_such_panel.csv", f"data.schema={tmp_path / 'schema.yaml'}"))
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schema.yaml"]  # nothing written


def test_a_column_the_schema_names_but_the_file_lacks_is_one_line(lender, tmp_path):
    path, schema, frame = lender
    frame.drop(columns="x_balance").to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(ConfigError, match=r"data.schema .*x_balance.*a column of .*l.csv"):
        train.run(cfg_for(tmp_path, tmp_path / "l.csv", f"data.schema={schema}"))
    assert not (tmp_path / "mlflow.db").exists()


def test_a_file_column_the_schema_does_not_name_is_warned_once_and_unused(lender, caplog):
    path, schema, _ = lender
    s = load_schema(schema)
    with caplog.at_level("WARNING"):
        read_panel(path, s)
        read_panel(path, s)
    said = [r for r in caplog.records if "branch" in r.getMessage()]
    assert len(said) <= 1  # once per file (the module's fixture may have said it already)


def test_months_as_text_become_one_index_and_codes_map_to_states():
    np.testing.assert_array_equal(month_index(pd.Series(["2023-11", "2023-12", "2024-01", None, "soon"])),
                                  [53 * 12 + 10, 53 * 12 + 11, 54 * 12, np.nan, np.nan])
    np.testing.assert_array_equal(month_index(pd.Series(["2024-01-31", "2024-02-29"])), [54 * 12, 54 * 12 + 1])
    s = LenderSchema.from_dict(good_schema())
    t = s.to_contract(pa.table({"account_id": [1, 1], "period": ["2024-01", "2024-02"], "state": ["current", "gone"],
                                "bureau": [700.0, 650.0], "pay_status": [0, 1]}))
    assert t.column_names == ["borrower_id", "month", "status", "external_score", "lender__pay_status"]
    assert t.column("status").to_pylist() == ["normal", "gone"]  # an unmapped code stays, for the row check


def test_predictions_in_the_lenders_terms_read_back_in_riskmls():
    schema = LenderSchema.from_dict(good_schema())
    ours = pd.DataFrame({"borrower_id": [7, 9], "as_of_month": np.array([635, 659], dtype=np.int32),
                         "p_adverse": [0.1, 0.2]})
    theirs = schema.from_contract(ours, text_months=True)
    assert list(theirs.columns) == ["account_id", "as_of_month", "p_adverse"]
    assert theirs["as_of_month"].tolist() == ["2022-12", "2024-12"]
    back = schema.contract_predictions(theirs)
    assert back["borrower_id"].tolist() == [7, 9] and back["as_of_month"].tolist() == [635, 659]
    whole = schema.from_contract(ours)  # whole-number months stay numbers
    assert whole["as_of_month"].tolist() == [635, 659]


def test_a_state_code_not_in_the_map_rejects_its_borrower(lender, tmp_path):
    path, schema, frame = lender
    bad = frame.copy()
    bad.loc[5, "state"] = "WRITTEN_OFF"
    bad.to_csv(tmp_path / "l.csv", index=False)
    checked = read_panel(tmp_path / "l.csv", load_schema(schema))
    assert checked.rejects["row"].tolist() == [5]
    assert checked.rejects["reason"].iloc[0] == "state 'WRITTEN_OFF' is not a state code of the schema (one of " \
                                                "['ACTIVE', 'FROZEN', 'CLOSED'])"
    assert not checked.panel["borrower_id"].eq(frame.loc[5, "account_id"]).any()


def test_months_above_a_signals_threshold_are_counted_where_the_schema_gives_one():
    from riskml.features import build_snapshots
    from riskml.features.windows import rectify

    rng = np.random.default_rng(3)
    n, months = 40, 14
    panel = pd.DataFrame({"borrower_id": np.repeat(np.arange(n), months), "month": np.tile(np.arange(months), n),
                          "status": "normal", "lender__pay": rng.integers(0, 3, n * months).astype(np.float32)})
    sig = {"factor": "overdue", "direction": 1, "rectified": 0.0}
    plain = build_snapshots(panel, target="adverse_3m", signals={"pay": sig})
    assert not [c for c in plain.X.columns if c.startswith("lender__pay_cnt")]  # no threshold given: no count
    snaps = build_snapshots(panel, target="adverse_3m", signals={"pay": {**sig, "above": 1.0}})
    got = snaps.X["lender__pay_cnt_12m"].to_numpy()
    want = (panel["lender__pay"] > 1).groupby(panel["borrower_id"]).transform(
        lambda s: s.rolling(12, min_periods=1).sum())
    want = panel.assign(w=want).set_index(["borrower_id", "month"])["w"]
    keys = pd.MultiIndex.from_frame(snaps.keys[["borrower_id", "month"]])
    assert np.array_equal(got, want.loc[keys].to_numpy(dtype=np.float32)) and got.max() > 0
    assert snaps.feature_factors["lender__pay_cnt_3m"] == "overdue" and snaps.feature_directions[
        "lender__pay_cnt_3m"] == 1
    specs = build_snapshots.__globals__["feature_specs"]((3, 6, 12), {"pay": {**sig, "above": 1.0}})
    assert (rectify(snaps.X, "overdue", specs)["lender__pay_cnt_12m"] == 0).all()  # the what-if: no bad month
    # no leakage: the lender's features at month t read months <= t only
    later = panel.assign(lender__pay=np.where(panel["month"] >= 9, 9.0, panel["lender__pay"]).astype(np.float32))
    moved = build_snapshots(later, target="adverse_3m", signals={"pay": {**sig, "above": 1.0}})
    own = [c for c in snaps.X.columns if c.startswith("lender__")]
    before = (snaps.keys["month"] < 9).to_numpy()
    assert before.any() and np.array_equal(snaps.X.loc[before, own].to_numpy(), moved.X.loc[before, own].to_numpy(),
                                           equal_nan=True)
    assert not np.array_equal(snaps.X.loc[~before, own].to_numpy(), moved.X.loc[~before, own].to_numpy(),
                              equal_nan=True)
    with pytest.raises(ConfigError, match=r"columns.pay_status.above.*'high'"):
        LenderSchema.from_dict(broken(lambda s: s["columns"]["pay_status"].update(above="high")))


# --- a system trained in the lender's schema ------------------------------------------------------------------
def test_features_needing_a_missing_column_are_left_out_and_the_factors_said(system):
    result, _ = system
    sysinfo = open_system(result.model_dir).info
    assert sysinfo["schema"]["id"] == "account_id"
    features = result.parts["adverse"].dataset.X.columns
    assert not [f for f in features if f.startswith(DROPPED) or f in ("acceptance_gap", "reviews_past_acceptance_line")]
    assert "days_past_due" in features
    # the lender's own column: its generic plan, tagged with its factor, its direction a monotone constraint
    own = [f for f in features if f.startswith("lender__pay_status")]
    assert own == ["lender__pay_status", "lender__pay_status_mean_3m", "lender__pay_status_max_12m",
                   "lender__pay_status_chg_3m"]
    ds = result.parts["adverse"].dataset
    assert {ds.feature_factors[f] for f in own} == {"overdue"} and {ds.feature_directions[f] for f in own} == {1}
    explained = ds.meta["factors_explained"]
    assert set(explained) == set(ds.feature_factors.values()) - {"other"}  # a factor without a feature: never
    # the platform's factors stay only through the lender's recorded causes, not through signals it lacks
    policy = [f for f, k in ds.feature_factors.items() if k == "policy_tightening"]
    assert policy == ["past_cause_policy_tightening_12m"]


def test_predict_takes_the_lenders_file_and_rejects_name_its_rows(system, lender, tmp_path):
    result, _ = system
    path, _, frame = lender
    bad = frame.copy()
    bad.loc[3, "state"] = "WRITTEN_OFF"
    bad.to_csv(tmp_path / "new.csv", index=False)
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        cfg = compose("predict", overrides=[f"input={tmp_path / 'new.csv'}", f"output={tmp_path / 's.parquet'}",
                                            f"model={result.model_dir}"])
    out = predict.run(cfg)
    rej = pd.read_parquet(out.rejects)
    assert rej["file"].tolist() == [str(tmp_path / "new.csv")] and rej["row"].tolist() == [3]
    assert rej["reason"].iloc[0].startswith("state 'WRITTEN_OFF' is not a state code of the schema")
    scored = pd.read_parquet(out.output)
    assert len(scored) + 1 == frame["account_id"].nunique()
    assert not (tmp_path / ".s.parquet.lender").exists()  # the translation's work folder is gone
    # answered in the lender's terms: its id name, its months as YYYY-MM (each account's last month)
    assert scored.columns[0] == "account_id" and "borrower_id" not in scored.columns
    last = frame.drop(index=3).groupby("account_id")["period"].max()
    assert scored.set_index("account_id")["as_of_month"].to_dict() == last.loc[scored["account_id"]].to_dict()
    assert "account_id" in rej.columns and "borrower_id" not in rej.columns


def test_predict_at_a_lenders_month_answers_in_its_names_in_csv_too(system, lender, tmp_path):
    result, _ = system
    path, _, frame = lender
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        cfg = compose("predict", overrides=[f"input={path}", f"output={tmp_path / 's.csv'}", "as_of=2023-06",
                                            f"model={result.model_dir}"])
    scored = pd.read_csv(predict.run(cfg).output)
    on_book = frame.loc[frame["period"] == "2023-06", "account_id"]
    assert sorted(scored["account_id"]) == sorted(on_book) and set(scored["as_of_month"]) == {"2023-06"}


def test_a_killed_job_on_the_lenders_files_resumes_to_the_same_output(system, lender, tmp_path, monkeypatch):
    from conftest import kill_on_call
    from riskml.io.files import sha256_file

    result, _ = system
    path, _, _ = lender

    def run(out: Path):
        with initialize_config_module("riskml.conf.predict", version_base="1.3"):
            return predict.run(compose("predict", overrides=[f"input={path}", f"output={out}", "bucket_rows=1000",
                                                             f"model={result.model_dir}"]))
    clean = run(tmp_path / "clean" / "s.parquet")
    out = tmp_path / "killed" / "s.parquet"
    real = predict.score_histories
    kill_on_call(monkeypatch, predict, "score_histories", 3)
    with pytest.raises(KeyboardInterrupt):
        run(out)
    done = len(list((out.parent / ".s.parquet.work" / "parts").glob("scored-*")))
    assert 2 <= done < clean.summary["buckets"] and (out.parent / ".s.parquet.lender").is_dir()
    monkeypatch.setattr(predict, "score_histories", real)
    again = run(out)
    assert again.summary["resumed_buckets"] == done  # the translation reused, so the job's buckets are too
    assert sha256_file(again.output) == sha256_file(clean.output)
    assert not (out.parent / ".s.parquet.lender").exists()


def test_the_served_model_takes_lender_rows_and_answers_with_the_lenders_id(system, lender, panel):
    result, _ = system
    _, _, frame = lender
    sysobj = open_system(result.model_dir)
    rows = frame[frame["account_id"].isin([3, 4])].drop(columns="branch")
    out = score_rows(sysobj, rows)
    assert "account_id" in out.columns and "borrower_id" not in out.columns
    assert sorted(out["account_id"]) == [3, 4]
    assert out.set_index("account_id")["as_of_month"].to_dict() == rows.groupby("account_id")["period"].max().to_dict()
    # the lender's own signal is read: worse pay status in every month never lowers P(adverse) (direction 1)
    worse = score_rows(sysobj, rows.assign(pay_status=6)).set_index("account_id")
    base = out.set_index("account_id")
    normal = base.index[base["status"] == "normal"]
    assert len(normal) and (worse.loc[normal, "p_adverse"] >= base.loc[normal, "p_adverse"] - 1e-12).all()
    ranks = sysobj.adverse.features
    assert "lender__pay_status" in ranks


@pytest.mark.server
def test_mlflow_models_serve_answers_a_lenders_rows_in_its_names(system, lender, tmp_path):
    import json
    import os
    import sys
    import urllib.request

    from conftest import free_port, serving

    result, store = system
    _, _, frame = lender
    port, venv_bin = free_port(), str(Path(sys.executable).parent)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"}
    cmd = [f"{venv_bin}/mlflow", "models", "serve", "-m", result.model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    rows = frame[frame["account_id"].isin([3, 4, 5])].drop(columns="branch")
    with serving(cmd, port, what="mlflow models serve", cwd=tmp_path, env=env) as url:
        body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            served = pd.DataFrame(json.loads(r.read())["predictions"])
    assert "account_id" in served.columns and "borrower_id" not in served.columns
    local = score_rows(open_system(result.model_dir), rows)
    assert served["account_id"].tolist() == local["account_id"].tolist() == [3, 4, 5]
    assert served["as_of_month"].tolist() == rows.groupby("account_id")["period"].max().tolist()
    np.testing.assert_allclose(served["p_adverse"].astype(float), local["p_adverse"].astype(float), rtol=1e-12)


def test_a_short_panel_names_the_settings_that_fit(tmp_path):
    short = simulate(SimConfig(n_borrowers=200, n_months=6, seed=2)).panel
    short.to_parquet(tmp_path / "short.parquet")
    with pytest.raises(ConfigError, match=r"data.min_history.*target.recovery_horizon \(6\).*6 months: "
                                          r"data.min_history <= 0, or target.recovery_horizon <= 3"):
        train.run(cfg_for(tmp_path, tmp_path / "short.parquet", "data.min_history=3"))
    with pytest.raises(ConfigError, match=r"data.min_history.*target.horizon \(3\).*data.min_history <= 3"):
        train.run(cfg_for(tmp_path, tmp_path / "short.parquet", "target=adverse_3m", "data.min_history=4"))
    assert not (tmp_path / "mlflow.db").exists()


def test_monitor_reads_the_lenders_file_at_a_lenders_month(system, lender, tmp_path):
    from riskml import monitor

    result, store = system
    path, _, frame = lender
    with initialize_config_module("riskml.conf.monitor", version_base="1.3"):
        cfg = compose("monitor", overrides=[f"input={path}", f"model={result.model_dir}", f"output={tmp_path}/mon",
                                            "as_of=2023-06", f"tracking_uri=sqlite:///{store}/mlflow.db"])
    got = monitor.run(cfg)
    normal_then = frame[(frame["period"] == "2023-06") & (frame["state"] == "ACTIVE")]["account_id"].nunique()
    assert got.document["as_of"] == (2023 - 1970) * 12 + 5 and got.document["n_scored"] == normal_then
    assert got.document["as_of_month"] == "2023-06" and got.document["input"] == str(path)  # the lender's terms
    assert got.document["backtest"] is not None  # the file runs past June by the model's horizon
    assert not [p for p in (tmp_path / "mon").iterdir() if p.is_dir()]  # the translation's work folder is gone


def test_the_readme_table_of_factors_by_columns_is_what_the_features_give():
    from riskml.factors import CAUSES
    from riskml.features import feature_specs
    from riskml.features.windows import available

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    card = {"credit_limit", "balance", "repaid", "days_past_due"}
    specs = available(feature_specs(), card)
    factors = {s.factor for s in specs if s.column not in ("status", "cause")} - {"other"}
    assert factors == {"overdue"}
    assert f"| limit, bill (`balance`), payment (`repaid`), repayment status (`days_past_due`) | {len(specs)} | " \
           "overdue |" in readme
    bigger = card | {"overdue_amount", "external_score", "other_lenders", "recent_applications", "debt_to_income"}
    got = {s.factor for s in available(feature_specs(), bigger) if s.column not in ("status", "cause")} - {"other"}
    assert sorted(got, key=CAUSES.index) == ["overdue", "multi_lending", "score_decline"]
    assert f"| {len(available(feature_specs(), bigger))} | + multi-lending |" in readme


def test_a_file_in_riskmls_own_names_still_scores_with_the_lenders_system(system, panel):
    result, _ = system
    sysobj = open_system(result.model_dir)
    rows = panel[panel["borrower_id"].isin([3, 4])]
    out = score_rows(sysobj, rows)
    assert sorted(out["borrower_id"]) == [3, 4]  # its own signal absent: those features read as missing

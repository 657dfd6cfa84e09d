"""Monitoring: PSI by hand, a fresh baseline portfolio raises no feature alarm (several seeds), a
tightening portfolio alarms on the policy index, the back-test matches the simulator's own outcomes,
and ``riskml.monitor`` end to end (JSON, HTML, MLflow run, exit code)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from riskml import monitor, predict, train
from riskml.exceptions import ConfigError, ModelError
from riskml.explain.scoring import ScoringModel, score_histories
from riskml.io.files import read_json, write_parquet
from riskml.store.model_store import load_model_dir, write_system_dir
from riskml.features.snapshots import build_features, build_snapshots
from riskml.monitoring.backtest import backtest, realised_outcomes
from riskml.monitoring.drift import Thresholds, drift, psi, rate_change
from riskml.monitoring.migration import band_migration
from riskml.monitoring.mix import TOO_OLD, age_groups, like_with_like
from riskml.monitoring.profile import (batch_shares, numeric_bins, numeric_shares, platform_columns, platform_wide,
                                      score_rows)
from riskml.simulate import SimConfig, simulate
from riskml.measure.scale import Bands, PointsScale

N = 3000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("monitor")
    with initialize_config_module("riskml.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models", f"data.data_dir={tmp}/data",
            f"data.n_borrowers={N}", "model.num_boost_round=80", "model.min_data_in_leaf=50",
            "eval.oracle=false", "eval.plots=false", "eval.fidelity=false", "eval.whatif=false",
            "register.enabled=false"])  # monitoring reads the model and its profile, not the evaluation
    train.run(cfg)
    return tmp / "models" / "riskml"  # the scoring system; monitoring watches its adverse model


@pytest.fixture(scope="module")
def loaded(model_dir):
    return (ScoringModel(*load_model_dir(model_dir / "adverse")),
            read_json(model_dir / "adverse" / "reference_profile.json"))


def _drift_of(panel: pd.DataFrame, model: ScoringModel, profile: dict, as_of: int, *, with_view: bool = False):
    snaps = build_features(panel[panel["month"] <= as_of], as_of=as_of, windows=model.windows)
    normal = (snaps.keys["status"] == "normal").to_numpy()
    X = snaps.X[normal].reset_index(drop=True)
    scored = score_rows(model.proba, model.explainer, X)
    view, shares = like_with_like(profile, X, scored)
    d = drift(view, shares, Thresholds())
    return (d, view) if with_view else (d, snaps.keys[normal], scored)


def test_psi_hand_computed():
    assert psi([0.5, 0.5], [0.6, 0.4]) == pytest.approx(0.1 * np.log(1.2) + 0.1 * np.log(1.25), rel=1e-12)
    assert psi([0.25] * 4, [0.25] * 4) == 0.0
    # an empty bin counts as a share of eps = 1e-4, not as infinity
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(
        -0.1 * np.log(0.8) + (0.1 - 1e-4) * np.log(0.1 / 1e-4), rel=1e-12)
    t = Thresholds()
    assert [t.level(v) for v in (0.05, 0.1, 0.2, 0.25)] == ["ok", "watch", "watch", "act"]
    with pytest.raises(ConfigError, match="thresholds.act"):
        Thresholds.from_config({"watch": 0.3, "act": 0.2})
    with pytest.raises(ConfigError, match="thresholds.rate_act"):
        Thresholds.from_config({"watch": 0.1, "act": 0.25, "rate_watch": 0.3, "rate_act": 0.2})
    # the expected adverse rate's change counts either way: 30% more risk, or a fifth less (1.25x the other way)
    assert rate_change(0.02, 0.026) == pytest.approx(0.3) and rate_change(0.02, 0.016) == pytest.approx(0.25)
    assert [t.rate_level(v) for v in (0.05, 0.1, 0.2, 0.25, float("nan"))] == ["ok", "watch", "watch", "act", "ok"]


def test_bins_for_numbers_missing_values_and_platform_columns():
    x = np.r_[np.arange(10.0), np.nan]
    b = numeric_bins(x, n_bins=2)
    assert b["kind"] == "numeric" and numeric_shares(x, b["edges"]) == pytest.approx([5 / 11, 5 / 11, 1 / 11])
    months = np.repeat([1, 2, 3], 4)
    policy = np.repeat([0.3, 0.35, 0.4], 4)  # one value per month: a platform-wide column
    b = numeric_bins(policy, months=months)
    assert b["kind"] == "platform"
    assert numeric_shares([0.32] * 5, b["edges"]) == [0.0, 1.0, 0.0, 0.0]   # inside the training range
    assert numeric_shares([0.6] * 5, b["edges"]) == [0.0, 0.0, 1.0, 0.0]    # above it


def test_platform_columns_are_the_columns_platform_wide_finds_one_by_one():
    months = np.repeat([1, 2, 3], 4)
    X = pd.DataFrame({"policy": np.repeat([0.3, 0.35, 0.4], 4),                     # one value a month
                      "flag": np.repeat([True, False, True], 4),                    # a bool, one value a month
                      "gappy": np.r_[[np.nan] * 4, [0.5] * 4, [0.7, 0.7, np.nan, 0.7]],  # missing counts as no spread
                      "income": np.arange(12.0),                                    # varies inside a month
                      "kind": pd.Categorical(list("abab" * 3))})
    found = platform_columns(X, months)
    assert found == {c for c in ("policy", "flag", "gappy", "income")
                     if platform_wide(X[c].to_numpy(np.float64), months)} == {"policy", "flag", "gappy"}
    assert platform_columns(X, np.ones(12)) == set() and platform_columns(X, None) == set()


def test_fresh_baseline_portfolios_are_quiet_months_later(loaded):
    """Scored at the reference month, and 6 and 12 months later: the book has grown older and the policy
    cycle has moved on, yet compared with the training month of the same phase of the cycle, at its age mix,
    nothing alarms: no feature, no factor (the model's policy factor follows the phase), not the reason mix,
    the score or the expected adverse rate."""
    model, profile = loaded
    as_of = profile["months"][-1]
    cycle = SimConfig().policy_period
    assert [p["month"] for p in profile["platform_state"]["phases"]] == list(range(as_of - cycle + 1, as_of))
    watch = 0
    for seed in (11, 12):
        panel = simulate(SimConfig(n_borrowers=N, n_months=as_of + 13, seed=seed)).panel
        for t in (as_of, as_of + 6, as_of + 12):
            d, view = _drift_of(panel, model, profile, t, with_view=True)
            assert view["months"] == [t - cycle * ((t - as_of + cycle - 1) // cycle)], (t, view["months"])
            assert d.levels["features"] != "act", (t, d.features.head())
            assert d.levels["score"] == "ok", (t, d.score_psi)
            assert d.level in ("ok", "watch"), (t, d.levels, d.factors.head(), d.rate_change)
            watch += int((d.features["level"] == "watch").sum())
    # false alarms over 2 seeds x 3 months x every feature: none at act; at watch at most 1%
    assert watch <= 0.01 * 6 * len(profile["features"])


def test_the_reference_keeps_its_age_mix_and_a_batch_is_compared_at_it(loaded):
    model, profile = loaded
    age = profile["age"]
    assert age["column"] == "months_on_book" and age["min"] == 5  # the youngest snapshot: min_history - 1
    assert sum(age["ref"]) == pytest.approx(1.0) and len(age["ref"]) == len(age["edges"]) + 1
    # an older book, taken as it is, shifts the age itself and what comes with it; at the reference's mix it does not
    as_of = profile["months"][-1]
    panel = simulate(SimConfig(n_borrowers=N, n_months=as_of + 13, seed=14)).panel
    snaps = build_features(panel[panel["month"] <= as_of + 12], as_of=as_of + 12, windows=model.windows)
    X = snaps.X[(snaps.keys["status"] == "normal").to_numpy()].reset_index(drop=True)
    scored = score_rows(model.proba, model.explainer, X)
    own = drift(profile, batch_shares(profile, X, scored), Thresholds())
    like = drift(*like_with_like(profile, X, scored), Thresholds())
    psi_of = lambda d, f: float(d.features.set_index("feature").loc[f, "psi"])
    assert psi_of(own, "months_on_book") > 0.25 and psi_of(like, "months_on_book") < 0.05
    # its reference is the training month of the same phase a cycle earlier, a younger book: the accounts older
    # than all of that month's are left out of the comparison, not piled into its oldest bin
    view, _ = like_with_like(profile, X, scored)
    older = X["months_on_book"].to_numpy() > view["age"]["max"]
    assert view["months"][0] < as_of and older.any() and np.array_equal(age_groups(view, X) == TOO_OLD, older)


def test_tightening_portfolio_alarms_on_the_policy_index_and_the_score(loaded):
    model, profile = loaded
    as_of = profile["months"][-1]
    panel = simulate(SimConfig(n_borrowers=N, seed=21, scenario="tightening", tighten_month=as_of - 4)).panel
    d, _, _ = _drift_of(panel, model, profile, as_of)
    act = set(d.features.loc[d.features["level"] == "act", "feature"])
    assert "policy_index" in act and d.features.loc[d.features["level"] == "act", "factor"].eq(
        "policy_tightening").all(), d.features.head()
    # the model reads the platform's policy (policy index, acceptance gap): its factor and the score move too
    assert d.factors.set_index("factor").loc["policy_tightening", "level"] == "act"
    assert d.levels["score"] == "act" and d.score_psi > 0.25, d.score_psi  # measured 0.73-0.77 (baseline 0.007-0.029)
    # the expected adverse rate, against the training month nearest the tightening (the cycle's peak)
    assert d.levels["rate"] == "act" and d.rate > d.reference_rate, (d.rate, d.reference_rate)
    assert d.level == "act"


def test_band_migration_counts_the_bands_predict_serves_at_both_months(loaded):
    model, profile = loaded
    as_of = profile["months"][-1]
    scale, bands = PointsScale(**profile["points"]), Bands.from_config(profile["bands"])
    panel = simulate(SimConfig(n_borrowers=N, seed=51)).panel
    m = band_migration(panel, model, scale, bands, to_month=as_of, months=1)
    # the independent path: riskml.predict's scoring, each month from its own histories
    served = {t: score_histories(panel[panel["month"] <= t], model, as_of=t, scale=scale, bands=bands,
                                 what_if=False).set_index("borrower_id")["risk_band"] for t in (as_of - 1, as_of)}
    want = pd.crosstab(served[as_of - 1], served[as_of])
    assert m.counts.loc[want.index, want.columns].equals(want.astype(np.int64).rename_axis(index=None, columns=None))
    both = int((panel.groupby("borrower_id")["month"].min() <= as_of - 1).sum())  # accounts open at both months
    assert m.counts.to_numpy().sum() == want.to_numpy().sum() == both
    moves = m.moves()
    assert moves["stayed"] + moves["worse"] + moves["better"] == moves["accounts"] == both
    assert m.labels == [*bands.labels, "suspended", "closed"] and np.allclose(m.shares().sum(axis=1)[
        m.counts.sum(axis=1) > 0], 1.0)
    # no account at both months: an empty matrix of the same labels, not an error
    empty = band_migration(panel, model, scale, bands, to_month=as_of, months=1, now=pd.Series([], dtype=object))
    assert empty.labels == m.labels and empty.counts.to_numpy().sum() == 0 and empty.moves()["accounts"] == 0
    # the platform tightens at the later month: accounts move to riskier bands, far more than on the baseline
    tight = simulate(SimConfig(n_borrowers=N, seed=51, scenario="tightening", tighten_month=as_of)).panel
    worse = band_migration(tight, model, scale, bands, to_month=as_of, months=1).moves()["worse"]
    assert worse > 1.3 * moves["worse"], (worse, moves)  # measured 464-508 against 280-289


def test_backtest_agrees_with_the_simulators_outcomes(loaded):
    model, profile = loaded
    sim = simulate(SimConfig(n_borrowers=N, seed=31)).panel
    as_of = 20
    _, keys, scored = _drift_of(sim, model, profile, as_of)
    realised = realised_outcomes(sim, keys["borrower_id"], as_of=as_of, horizon=3)
    snaps = build_snapshots(sim, target="adverse_3m", horizon=3)
    at = snaps.keys["month"].to_numpy() == as_of
    truth = pd.Series(snaps.y[at], index=snaps.keys.loc[at, "borrower_id"].to_numpy())
    assert realised.notna().all()
    # the accounts with a snapshot (months on book >= min_history - 1) have the snapshot's label
    has = keys["borrower_id"].isin(truth.index).to_numpy()
    assert has.mean() > 0.7
    assert realised[has].to_numpy(np.int64).tolist() == truth.reindex(keys["borrower_id"][has]).astype(int).tolist()
    bands = np.array(["low" if p < 0.05 else "high" for p in scored.p_adverse], dtype=object)
    table, m = backtest(scored.p_adverse, realised, bands, ["low", "high"])
    assert m["n"] == len(keys) and m["events"] == int(realised.sum())
    assert m["auc"] > 0.8
    assert abs(m["predicted_rate"] - m["observed_rate"]) < 0.02
    # a horizon past the end of the histories gives no outcome rather than a wrong one
    assert realised_outcomes(sim, keys["borrower_id"], as_of=46, horizon=3).isna().all()


def _monitor_cfg(tmp: Path, model_dir: Path, *overrides: str):
    with initialize_config_module("riskml.conf.monitor", version_base="1.3"):
        return compose("monitor", overrides=[f"model={model_dir}", f"output={tmp}/report",
                                             f"tracking_uri=sqlite:///{tmp}/mlflow.db", *overrides])


def test_monitor_entry_point_writes_json_html_and_an_mlflow_run(model_dir, loaded, tmp_path):
    _, profile = loaded
    as_of = profile["months"][-1]
    panel = simulate(SimConfig(n_borrowers=2000, seed=41, scenario="tightening", tighten_month=as_of - 4)).panel
    write_parquet(panel, tmp_path / "panel.parquet")
    result = monitor.run(_monitor_cfg(tmp_path, model_dir, f"input={tmp_path / 'panel.parquet'}", f"as_of={as_of}"))
    doc = json.loads(result.json_path.read_text())
    assert result.level == doc["level"] == "act" and result.exit_code == monitor.EXIT_ALARM
    assert doc["backtest"]["n"] > 0 and 0.5 < doc["backtest"]["auc"] <= 1.0   # histories run past as_of
    html = result.html_path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html and "Back-test" in html
    mig = doc["migration"]
    assert (mig["from_month"], mig["to_month"]) == (as_of - 1, as_of) and f"Band migration, month {as_of - 1}" in html
    assert sum(map(sum, mig["counts"])) == mig["accounts"] == int((panel.groupby("borrower_id")["month"].min()
                                                                  <= as_of - 1).sum())
    # read bucket by bucket (whole borrowers), the report is the whole batch's: the same PSIs, counts, back-test
    small = monitor.run(_monitor_cfg(tmp_path / "b", model_dir, f"input={tmp_path / 'panel.parquet'}",
                                     f"as_of={as_of}", "bucket_rows=5000", "tracking.enabled=false"))
    d2 = small.document
    assert d2["migration"]["counts"] == mig["counts"] and d2["backtest"] == doc["backtest"]
    assert d2["n_scored"] == doc["n_scored"] and d2["mean_p_adverse"] == pytest.approx(doc["mean_p_adverse"], abs=1e-12)
    for key in ("score_psi", "bands_psi", "reasons_psi", "max_feature_psi"):
        assert d2["drift"][key] == pytest.approx(doc["drift"][key], abs=1e-9), key
    assert [f["psi"] for f in d2["features"]] == pytest.approx([f["psi"] for f in doc["features"]], abs=1e-9)
    # the predictions riskml.predict served, with the histories for the accounts' ages: the same score and reason
    # drift; predictions only: no features or back-test, and the batch's own age mix
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        pcfg = compose("predict", overrides=[f"input={tmp_path / 'panel.parquet'}", f"output={tmp_path / 'p.parquet'}",
                                             f"model={model_dir}", f"as_of={as_of}"])
    predict.run(pcfg)
    both = monitor.run(_monitor_cfg(tmp_path / "pi", model_dir, f"predictions={tmp_path / 'p.parquet'}",
                                    f"input={tmp_path / 'panel.parquet'}", "tracking.enabled=false")).document
    assert both["n_scored"] == doc["n_scored"] and both["age_mix"] == doc["age_mix"] == "reference's"
    assert both["drift"]["score_psi"] == pytest.approx(doc["drift"]["score_psi"], abs=1e-9)
    assert both["drift"]["reasons_psi"] == pytest.approx(doc["drift"]["reasons_psi"], abs=1e-9)
    served = monitor.run(_monitor_cfg(tmp_path / "p", model_dir, f"predictions={tmp_path / 'p.parquet'}",
                                      "tracking.enabled=false")).document
    assert served["as_of"] == as_of and served["n_scored"] == doc["n_scored"] and served["backtest"] is None
    assert served["age_mix"] == "batch's own" and served["drift"]["score_psi"] is not None
    assert served["features"] == [] and served["migration"] is None
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["riskml.monitor_level"] == "act" and run.data.tags["riskml.model_name"] == "riskml"
    assert run.data.metrics["max_feature_psi"] >= 0.25
    # never: the same report, exit 0
    again = monitor.run(_monitor_cfg(tmp_path, model_dir, f"input={tmp_path / 'panel.parquet'}", f"as_of={as_of}",
                                     "fail_on=never", "tracking.enabled=false"))
    assert again.exit_code == 0 and again.run_id is None


def test_monitor_rejects_bad_config_and_a_model_without_profile(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="fail_on"):
        monitor.run(_monitor_cfg(tmp_path, model_dir, "input=x.parquet", "fail_on=sometimes"))
    # a second job on the same output fails at once instead of mixing into (or deleting) the first's work
    from riskml.io.files import job_lock
    from riskml.exceptions import InputError
    write_parquet(simulate(SimConfig(n_borrowers=50, seed=1)).panel, tmp_path / "busy.parquet")
    with job_lock(tmp_path / "report" / "monitor.json", what="riskml.monitor job"):
        with pytest.raises(InputError, match=r"another riskml.monitor job .* is writing it now"):
            monitor.run(_monitor_cfg(tmp_path, model_dir, f"input={tmp_path / 'busy.parquet'}"))
    with pytest.raises(ConfigError, match=r"config key 'as_of'.*99.*0\.\.47"):  # past the input's months
        monitor.run(_monitor_cfg(tmp_path, model_dir, f"input={tmp_path / 'busy.parquet'}", "as_of=99"))
    with pytest.raises(ConfigError, match=r"config key 'treshold'"):  # a +key riskml never reads
        monitor.run(_monitor_cfg(tmp_path, model_dir, "input=x.parquet", "+treshold=0.3"))
    with pytest.raises(ConfigError, match=r"config key 'bucket_rows'.*10"):
        monitor.run(_monitor_cfg(tmp_path, model_dir, "input=x.parquet", "bucket_rows=10"))
    with pytest.raises(ConfigError, match=r"config key 'migration_months'.*-1"):
        monitor.run(_monitor_cfg(tmp_path, model_dir, "input=x.parquet", "migration_months=-1"))
    # a system exported before profiles were saved: the same models, no reference_profile.json
    parts = {r: load_model_dir(model_dir / r) for r in ("adverse", "status", "recovery")}
    bare = write_system_dir({r: (b.model_to_string(), m) for r, (b, m) in parts.items()}, {"name": "old"},
                            tmp_path / "bare")
    with pytest.raises(ModelError, match="reference_profile.json"):
        monitor.run(_monitor_cfg(tmp_path, bare, "input=x.parquet"))


def test_the_monitor_checks_whose_and_which_month_predictions_it_reads(model_dir, loaded, tmp_path):
    _, profile = loaded
    as_of = profile["months"][-1]
    write_parquet(simulate(SimConfig(n_borrowers=300, seed=42)).panel, tmp_path / "panel.parquet")
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        pcfg = compose("predict", overrides=[f"input={tmp_path / 'panel.parquet'}", f"output={tmp_path / 'p.parquet'}",
                                             f"model={model_dir}", f"as_of={as_of}", "what_if=false"])
    predict.run(pcfg)
    preds = pd.read_parquet(tmp_path / "p.parquet")
    preds.assign(model_name="another_model").to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ModelError, match=r"predictions.*'another_model'.*expected the monitored model"):
        monitor.run(_monitor_cfg(tmp_path, model_dir, f"predictions={tmp_path / 'other.parquet'}",
                                 "tracking.enabled=false"))
    with pytest.raises(ConfigError, match=rf"config key 'as_of': got {as_of - 2}.*a month the predictions"):
        monitor.run(_monitor_cfg(tmp_path, model_dir, f"predictions={tmp_path / 'p.parquet'}", f"as_of={as_of - 2}",
                                 "tracking.enabled=false"))
    assert not (tmp_path / "report" / "monitor.json").exists()  # nothing reported of what was not asked


@pytest.mark.parametrize("accounts", ["one borrower", "all down"])
def test_too_few_accounts_is_said_and_never_a_psi_level(model_dir, loaded, tmp_path, accounts):
    _, profile = loaded
    as_of = profile["months"][-1]
    panel = simulate(SimConfig(n_borrowers=300, seed=43)).panel
    if accounts == "one borrower":
        panel = panel[panel["borrower_id"] == panel.loc[panel["status"].eq("normal") & panel["month"].eq(as_of),
                                                        "borrower_id"].iloc[0]]
    else:
        panel = panel.assign(status=pd.Categorical(["suspended"] * len(panel), dtype=panel["status"].dtype))
    write_parquet(panel, tmp_path / "panel.parquet")
    result = monitor.run(_monitor_cfg(tmp_path, model_dir, f"input={tmp_path / 'panel.parquet'}", f"as_of={as_of}",
                                      "tracking.enabled=false"))
    doc = result.document
    assert doc["level"] == "too_few_accounts" and doc["min_accounts"] == 200
    assert set(doc["levels"].values()) == {"too_few_accounts"}
    assert result.exit_code == monitor.EXIT_TOO_FEW and "too_few_accounts" in result.html_path.read_text()

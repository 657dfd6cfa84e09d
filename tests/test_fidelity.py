"""Explanation fidelity on both sides, per cause and per scenario, on fresh portfolios the model never saw;
the recovery side's platform rules (maintenance, fraud and policy closures) in batch scoring; the what-if
against the simulator following the advice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from riskml import factors
from riskml.explain import advice_for, recovery, scoring
from riskml.features import build_snapshots
from riskml.simulate import SimConfig, simulate
from riskml.training.datasets import from_snapshots, valid_mask
from riskml.training.fit import fit
from riskml.training.models import FittedModel, build_manifest
from riskml.evaluation.steps import scenario_fidelity
from riskml.evaluation.whatif import model_after, whatif_metrics
from riskml.features.windows import feature_specs
from riskml.io.eval_cache import EvalCache

N = 8_000  # borrowers to train on, and in each fresh scenario portfolio
TARGETS = ("adverse_3m", "recovery_6m")


@pytest.fixture(scope="module")
def cfg() -> dict:
    with initialize_config_module("riskml.conf", version_base="1.3"):
        return OmegaConf.to_container(compose("train"), resolve=True)


@pytest.fixture(scope="module")
def trained(cfg) -> dict[str, tuple[FittedModel, object, dict]]:
    """The default LightGBM on a baseline portfolio (its mild policy cycle included), per side."""
    sim = SimConfig(n_borrowers=N, seed=3)
    panel = simulate(sim).panel
    out = {}
    for target in TARGETS:
        run_cfg = {**cfg, "target": {"name": target, "horizon": 6 if target == "recovery_6m" else 3}}
        ds = from_snapshots(build_snapshots(panel, target=target), target=target, digest="test", source="test",
                            sim=sim, meta={"windows": [3, 6, 12]})
        rows = np.arange(len(ds.y))
        valid = valid_mask(ds.groups, rows, 0.2, seed=0)
        model = fit(cfg["model"], ds.X.iloc[rows[~valid]], ds.y[rows[~valid]], classes=ds.classes,
                    X_valid=ds.X.iloc[rows[valid]], y_valid=ds.y[rows[valid]],
                    feature_directions=ds.feature_directions, seed=0, num_threads=2)
        out[target] = (model, ds, run_cfg)
    return out


@pytest.fixture(scope="module")
def reports(trained) -> dict:
    return {t: scenario_fidelity(*trained[t]) for t in TARGETS}


@pytest.mark.slow
@pytest.mark.parametrize("target, side", [("adverse_3m", "adverse"), ("recovery_6m", "recovery")])
def test_every_cause_is_found_in_every_scenario_on_both_sides(reports, target, side):
    """The fidelity targets: top-1 >= 0.90 overall per side and scenario, >= 0.75 per cause with >= 50 events."""
    rep = reports[target]
    per = rep.per_cause.loc[side]
    assert set(per.index.get_level_values("scenario")) == {"baseline", "tightening", "maintenance"}
    for scenario in ("baseline", "tightening", "maintenance"):
        assert rep.metrics[f"fidelity_{side}_{scenario}_top1"] >= 0.90, per.loc[scenario]
        judged = per.loc[scenario][per.loc[scenario]["judged"]]
        assert (judged["top1_rate"] >= 0.75).all(), judged
        assert rep.metrics[f"fidelity_{side}_{scenario}_events"] == per.loc[scenario]["n_events"].sum()
    # the platform-side causes are there to be found, with enough events to be judged
    tight, maint = per.loc["tightening"], per.loc["maintenance"]
    assert tight.loc["policy_tightening", "n_events"] > 1.5 * per.loc["baseline"].loc["policy_tightening", "n_events"]
    assert tight.loc["policy_tightening", "judged"] and tight.loc["policy_tightening", "top1_rate"] >= 0.75
    if side == "recovery":
        assert maint.loc["maintenance", "judged"] and maint.loc["maintenance", "top1_rate"] >= 0.75
        assert maint.loc["maintenance", "n_events"] > 10 * per.loc["baseline"].loc["maintenance", "n_events"]
    else:  # a maintenance suspension is not adverse: never a first-change cause
        assert "maintenance" not in maint.index


@pytest.mark.slow
def test_the_confusion_table_adds_up_to_the_events_and_the_rule_share_is_reported(reports):
    for target, side in (("adverse_3m", "adverse"), ("recovery_6m", "recovery")):
        rep = reports[target]
        conf, per = rep.confusion.loc[side], rep.per_cause.loc[side]
        for scenario in ("baseline", "tightening", "maintenance"):
            c, p = conf.loc[scenario], per.loc[scenario]
            assert c.to_numpy().sum() == p["n_events"].sum()
            hits = [c.loc[cause, cause] for cause in p.index]
            np.testing.assert_allclose(hits, (p["top1_rate"] * p["n_events"]).to_numpy(), atol=1e-6)
        if side == "adverse":
            assert (per["by_rule"] == 0).all()
        else:  # platform-side and permanent closures are explained by the cause on record, always
            for cause in ("policy_tightening", "agreement_violation", "maintenance"):
                assert (per.xs(cause, level="cause")["by_rule"] == 1).all()
            assert (per.xs("score_decline", level="cause")["by_rule"] < 0.5).all()  # mostly the model's


def scoring_model(trained, target: str) -> scoring.ScoringModel:
    model, ds, cfg = trained[target]
    manifest = build_manifest(model, feature_factors=ds.feature_factors, feature_directions=ds.feature_directions,
                              categories={}, target=target, horizon=int(cfg["target"]["horizon"]),
                              windows=[3, 6, 12], metrics={}, data_digest="test", data_kind="synthetic", name=target)
    return scoring.ScoringModel(model.booster, manifest)


@pytest.fixture(scope="module")
def down_rows(trained) -> pd.DataFrame:
    """Batch scoring of a fresh maintenance-scenario portfolio at its outage month, down accounts only."""
    # (month 40 of the default 48: a mature book, most of the portfolio's accounts open)
    panel = simulate(SimConfig(n_borrowers=4000, seed=11, scenario="maintenance", maintenance_months=(40,))).panel
    out = scoring.score_histories(panel, scoring_model(trained, "adverse_3m"), scoring_model(trained, "recovery_6m"),
                                  as_of=40, what_if=False)
    cause = panel[panel["month"] == 40].set_index("borrower_id")["cause"].astype(object)
    out["cause"] = cause.reindex(out["borrower_id"]).to_numpy()
    return out[out["status"] != "normal"].reset_index(drop=True)


@pytest.mark.slow
def test_a_fraud_closure_is_permanent_and_says_so(down_rows):
    fraud = down_rows[down_rows["cause"] == "agreement_violation"]
    assert len(fraud) > 20 and (fraud["status"] == "closed").all()
    assert (fraud["p_recovery_6m"] == 0.0).all()
    assert (fraud["reason_1"] == "agreement_violation").all() and not fraud["reason_1_actionable"].any()
    assert fraud["reason_1_advice"].str.contains("permanent").all()
    assert fraud[["reason_2", "reason_3"]].isna().all().all()


@pytest.mark.slow
def test_an_outage_suspension_is_maintenance_that_clears_by_itself(down_rows):
    maint = down_rows[down_rows["cause"] == "maintenance"]
    assert len(maint) > 1000  # half the open book in the outage month
    assert (maint["p_recovery_6m"] == 1.0).all()
    assert (maint["reason_1"] == "maintenance").all() and not maint["reason_1_actionable"].any()
    assert (maint["reason_1_advice"].astype(str) == advice_for("maintenance")[1]).all()
    assert "comes back by itself" in factors.CATALOGUE["maintenance"].advice
    # every other down account keeps the model's probability and a documented reason
    rest = down_rows[~down_rows["cause"].isin(["maintenance", "agreement_violation"])]
    assert rest["p_recovery_6m"].between(0, 1).all() and (rest["p_recovery_6m"] < 1).all()
    assert rest["reason_1"].isin(factors.CAUSES).all()
    policy = rest[rest["cause"] == "policy_tightening"]
    assert (policy["reason_1"] == "policy_tightening").all()


def test_the_recovery_rule_hand_computed():
    status = ["suspended", "suspended", "suspended", "closed", "closed", "closed", "suspended"]
    cause = [None, None, "overdue", "agreement_violation", "policy_tightening", "overdue", "abnormal_use"]
    maint = [1, 1, 1, 0, 0, 0, 0]
    months = [1, 4, 1, 7, 2, 5, 3]         # the second went down 4 months ago: not this outage
    explained = [True, True, True, True, True, True, False]
    factor, p = recovery.recovery_rule(status, cause, maint, months, explained)
    assert factor.tolist() == ["maintenance", None, None, "agreement_violation", "policy_tightening", None,
                               "abnormal_use"]
    assert p[[0, 3]].tolist() == [1.0, 0.0] and np.isnan(p[[1, 2, 4, 5, 6]]).all()
    # the platform-side factors are never a learned reason on the recovery side
    c = np.array([[-0.5, -0.9, -0.2, 0.1]])
    np.testing.assert_array_equal(recovery.recovery_side(c, ["overdue", "policy_tightening", "maintenance", "other"]),
                                  [[-0.5, 0.0, 0.0, 0.1]])


def _whatif_cfg(cfg: dict, target: str, learn: bool) -> dict:
    ev = {**cfg["eval"], "whatif_max_cases": 400, "whatif_n_paths": 60, "whatif_scenarios": {},
          "whatif_fit_cases": 1500, "whatif_fit_n_paths": 30, "whatif_learn": [target] if learn else []}
    return {**cfg, "eval": ev}


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_the_what_if_agrees_with_the_simulator_following_the_advice(trained, target):
    """p_after against the oracle under intervention: the rectified rescoring on the adverse side, the what-if
    learned from intervention data on the recovery side (where rescoring claims recoveries that take months)."""
    model, ds, run_cfg = trained[target]
    late = ds.keys["month"].to_numpy() >= ds.keys["month"].max() - 3
    test, learn = np.flatnonzero(late), np.flatnonzero(~late)
    rescored = whatif_metrics(model, ds, test, model.predict_proba(ds.X.iloc[test]),
                              _whatif_cfg(run_cfg, target, False), cache=EvalCache(None))
    m = rescored.metrics
    if target == "adverse_3m":
        assert m["whatif_cases"] > 800 and m["whatif_mae"] <= 0.03 and m["whatif_direction"] >= 0.95, m
        return
    shipped = dataclasses.replace(model)  # the fixture's model stays as it was
    learned = whatif_metrics(shipped, ds, test, proba := shipped.predict_proba(ds.X.iloc[test]),
                             _whatif_cfg(run_cfg, target, True), cache=EvalCache(None), learn_rows=learn)
    assert shipped.whatif is not None and model.whatif is None
    n = learned.metrics
    assert n["whatif_cases"] == m["whatif_cases"] > 300
    assert n["whatif_mae"] < 0.6 * m["whatif_mae"], (n, m)  # rescoring claims too much, too soon
    assert n["whatif_direction"] >= 0.95 and abs(learned.per_factor.loc[("test", "overall"), "bias"]) < 0.05
    # batch scoring gives the p_after that was measured: the learned what-if travels in the manifest
    trained_copy = {target: (shipped, ds, run_cfg)}
    sm = scoring_model(trained_copy, target)
    X = ds.X.iloc[test[:300]]
    rows = np.flatnonzero(ds.keys["status"].iloc[test[:300]].astype(str).to_numpy() != "normal")
    raw, p = sm.score(sm.matrix(X)[rows])
    for factor in ("overdue", "multi_lending"):
        want = model_after(shipped, feature_specs((3, 6, 12)))(X.iloc[rows], factor)
        got = sm.what_if(sm.matrix(X)[rows], raw, factor)
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert (got >= 1 - p[:, 0] - 1e-9).all()  # advice never lowers P(recovery)

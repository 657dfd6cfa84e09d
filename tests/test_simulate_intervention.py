"""The oracle under intervention: the true outcome had the borrower followed one factor's advice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskml.exceptions import ConfigError, SchemaError
from riskml.simulate import SimConfig, oracle, simulate
from riskml.simulate.intervention import ACTIONABLE, follow_advice

# accounts open over the first 6 months: a book of mixed ages, all of them on book at T0
CFG = SimConfig(n_borrowers=6000, n_months=16, seed=5, block_size=1024, open_months=6)
T0, H, N = 10, 3, 60


@pytest.fixture(scope="module")
def snap():
    p = simulate(CFG).panel
    return p[p["month"] == T0].reset_index(drop=True)


def _keys(rows: pd.DataFrame, factor) -> pd.DataFrame:
    return pd.DataFrame({"borrower_id": rows["borrower_id"].to_numpy(), "month": rows["month"].to_numpy(),
                         "factor": factor})


def test_following_no_advice_is_the_plain_oracle(snap):
    rows = snap.iloc[::4].reset_index(drop=True)
    factor = np.where(np.arange(len(rows)) % 2 == 0, None, np.array(ACTIONABLE * len(rows))[:len(rows)])
    out = follow_advice(CFG, _keys(rows, factor), horizon=H, n_paths=N, seed=3)
    plain = oracle(CFG, rows[["borrower_id", "month"]], horizon=H, n_paths=N, seed=3)
    none = pd.isna(factor)
    # the same draws: a borrower who follows nothing has the plain oracle's futures, path for path,
    # whatever the others in the batch follow
    assert np.allclose(out.loc[none, "p_adverse"], 1 - plain.loc[none, "p_normal"], rtol=0, atol=1e-12)
    assert np.allclose(out["p_adverse_before"], 1 - plain["p_normal"], rtol=0, atol=1e-12)
    # and on other draws it agrees within the standard errors
    other = oracle(CFG, rows.loc[none, ["borrower_id", "month"]], horizon=H, n_paths=N, seed=11)
    d = out.loc[none, "p_adverse"].to_numpy() - (1 - other["p_normal"].to_numpy())
    se = np.sqrt(out.loc[none, "se_adverse"].to_numpy() ** 2 + other["se_normal"].to_numpy() ** 2)
    assert abs(d.mean()) < 4 * np.sqrt((se ** 2).sum()) / len(d)
    assert (np.abs(d) <= 4 * se + 1e-9).mean() > 0.99


@pytest.mark.parametrize("factor", ACTIONABLE)
def test_following_advice_never_raises_the_risk_of_its_own_cause(snap, factor):
    rows = snap[snap["status"] == "normal"].reset_index(drop=True)
    out = follow_advice(CFG, _keys(rows, factor), horizon=H, n_paths=N, seed=1)
    d = out["p_own_cause"] - out["p_own_cause_before"]
    assert (d <= 4 * out["se_d_own_cause"] + 1e-9).all(), out.loc[d.idxmax()]
    at_risk = out["p_own_cause_before"] > 0.1
    assert at_risk.sum() >= 10, factor  # the advice is tried where the cause is a real risk
    # and there it lowers that risk by more than the noise: at once for arrears and abnormal use (both
    # hazards need this month's signal), over months for the others (lenders paid off one a month, a score
    # that climbs 35% of the way a month)
    at, before = out.loc[at_risk], out.loc[at_risk, "p_own_cause_before"]
    assert (at["p_own_cause"] - before).mean() < -4 * np.sqrt((at["se_d_own_cause"] ** 2).sum()) / len(at)
    if factor in ("overdue", "abnormal_use"):
        assert at["p_own_cause"].mean() < 0.1 * before.mean()
    # the borrower's overall risk falls with it on average
    assert out["p_adverse"].mean() < out["p_adverse_before"].mean()


def test_a_fraud_closure_stays_closed_whatever_the_borrower_does(snap):
    fraud = snap[(snap["status"] == "closed") & (snap["cause"] == "agreement_violation")]
    assert len(fraud) >= 5
    for factor in ACTIONABLE:
        out = follow_advice(CFG, _keys(fraud, factor), horizon=6, n_paths=N, seed=2)
        assert (out["p_recovery"] == 0).all() and (out["p_recovery_before"] == 0).all()


def test_advice_brings_suspended_lines_back_sooner(snap):
    # a line suspended for arrears or many lenders comes back once its cause is rectified: following the
    # advice must raise P(recovery within 6 months), by more than the noise
    for cause in ("overdue", "multi_lending"):
        rows = snap[(snap["status"] == "suspended") & (snap["cause"] == cause)]
        assert len(rows) >= 10, cause
        out = follow_advice(CFG, _keys(rows, cause), horizon=6, n_paths=N, seed=4)
        gain = out["p_recovery"] - out["p_recovery_before"]
        assert gain.mean() > 4 * np.sqrt((out["se_d_recovery"] ** 2).sum()) / len(out), cause


def test_bad_keys_are_refused(snap):
    rows = snap.iloc[:3]
    with pytest.raises(ConfigError, match="policy_tightening"):
        follow_advice(CFG, _keys(rows, "policy_tightening"), horizon=H, n_paths=N)
    with pytest.raises(SchemaError, match="factor"):
        follow_advice(CFG, rows[["borrower_id", "month"]], horizon=H, n_paths=N)

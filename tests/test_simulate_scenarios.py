"""Scenarios: tightening closes marginal accounts; a maintenance month."""

from __future__ import annotations

import numpy as np
import pytest

from riskml.factors import CAUSES
from riskml.simulate import SimConfig, simulate
from riskml.simulate.engine import Env
from riskml.simulate.summary import adverse_events

N, T, M = 12_000, 24, 12
#: one cohort opened at month 0: the review is recomputed by hand on a regular borrower x month grid, and the
#: runs compare the same accounts month for month
COHORT = {"open_months": 1}
PT, MT, ML, SD = (CAUSES.index(c) for c in ("policy_tightening", "maintenance", "multi_lending", "score_decline"))


@pytest.fixture(scope="session")
def runs():
    base = SimConfig(n_borrowers=N, n_months=T, seed=5, **COHORT)
    tight = SimConfig(n_borrowers=N, n_months=T, seed=5, scenario="tightening", tighten_month=M, tighten_level=0.5,
                      **COHORT)
    maint = SimConfig(n_borrowers=N, n_months=T, seed=5, scenario="maintenance", maintenance_months=(M,), **COHORT)
    out = {}
    for name, cfg in (("baseline", base), ("tightening", tight), ("maintenance", maint)):
        p = simulate(cfg).panel
        p["event"] = adverse_events(p)
        out[name] = p
    return out


def test_policy_index_steps_up_at_the_configured_month():
    env = Env.build(SimConfig(n_months=24, scenario="tightening", tighten_month=10, tighten_level=0.8))
    assert np.all(env.policy[10:24] == np.float32(0.8))
    assert np.all(env.policy[:10] < 0.5)


def reviews(p) -> np.ndarray:
    """The platform's month-end review grade per row, recomputed by hand from the panel's columns: the
    published grade (DOMAIN: the platform scores arrears, lenders, debt, the external score), averaged
    over the last 6 months of each borrower's history."""
    g = (p["days_past_due"] / 30 + 0.4 * p["other_lenders"] + 2 * p["debt_to_income"]
         + (620 - p["external_score"]) / 40).to_numpy().reshape(-1, T)
    c = np.cumsum(np.pad(g, ((0, 0), (1, 0))), axis=1)
    lo = np.maximum(np.arange(T) - 5, 0)
    return ((c[:, 1:] - c[:, lo]) / (np.arange(T) - lo + 1)).ravel()


def test_tightening_closes_marginal_accounts_a_normal_period_keeps(runs):
    b, t = runs["baseline"], runs["tightening"]
    # before the step the two runs are the same data (same seed, same path)
    before_b, before_t = b[b["month"] < M], t[t["month"] < M]
    assert (before_b["status"].to_numpy() == before_t["status"].to_numpy()).all()
    # after it, the tightened platform closes for policy; the normal period (back at its neutral index) does not
    after = lambda p: np.flatnonzero(((p["month"] >= M + 2) & (p["event"] == PT)).to_numpy())
    closed = after(t)
    assert len(closed) > 1000 and len(after(b)) == 0
    assert (t["status"].to_numpy()[closed] == "closed").all()
    assert (t["policy_index"].to_numpy()[closed - 1] == np.float32(0.5)).all()
    # marginal: at the three month-end reviews before the closure the account sat between that month's
    # tightened line (1.0 - 5 x (policy - 0.3): 0 at the step's 0.5) and the normal period's line (1.0)
    rv = reviews(t)
    line = 1.0 - 5 * np.maximum(t["policy_index"].to_numpy() - 0.3, 0)
    for k in (1, 2, 3):
        assert ((rv[closed - k] > line[closed - k] - 1e-4) & (rv[closed - k] <= 1.0 + 1e-4)).all()  # float32
    # ... which a normal period keeps: the very same accounts are still open that month in the baseline run
    assert (b["status"].to_numpy()[closed] == "normal").mean() > 0.95
    # moderate risk: riskier than the open book, less risky than the accounts the cause rules act on
    open_ = np.flatnonzero(((t["month"] >= M) & (t["status"] == "normal")).to_numpy())
    ruled = np.flatnonzero((t["month"] >= M).to_numpy() & np.isin(t["event"].to_numpy(), [ML, SD]))
    assert np.median(rv[open_]) + 0.5 < np.median(rv[closed - 1]) < np.median(rv[ruled - 1]) - 1.0


def test_maintenance_month_suspends_regardless_of_risk_and_clears(runs):
    p = runs["maintenance"]
    m = p[p["month"] == M]
    assert (m["maintenance"] == 1).all()
    hit = m["event"] == MT
    open_before = p[p["month"] == M - 1]["status"].to_numpy() == "normal"
    share = hit.sum() / open_before.sum()
    assert 0.35 < share < 0.6  # outage_share 0.5 of open lines, less those another cause took first
    # regardless of risk: hit rate is the same for low- and high-score accounts
    hit, score = hit[open_before], m["external_score"][open_before]
    lo, hi = hit[score < score.median()].mean(), hit[score >= score.median()].mean()
    assert abs(lo - hi) < 0.05
    # it lasts exactly that month
    nxt = p[p["month"] == M + 1]
    was_hit = (m["event"] == MT).to_numpy()
    still = ((nxt["status"] == "suspended") & (nxt["cause"] == "maintenance") & (nxt["maintenance"] == 0)).to_numpy()
    assert was_hit.sum() > 1000 and not (still & was_hit).any()

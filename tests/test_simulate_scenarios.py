"""Scenarios (issue #2, point 6): tightening closes marginal accounts; a maintenance month."""

from __future__ import annotations

import numpy as np
import pytest

from riskml.factors import CAUSES
from riskml.simulate import SimConfig, simulate
from riskml.simulate.engine import Env
from riskml.simulate.summary import adverse_events

N, T, M = 12_000, 24, 12
PT, MT = CAUSES.index("policy_tightening"), CAUSES.index("maintenance")


@pytest.fixture(scope="session")
def runs():
    base = SimConfig(n_borrowers=N, n_months=T, seed=5)
    tight = SimConfig(n_borrowers=N, n_months=T, seed=5, scenario="tightening", tighten_month=M, tighten_level=0.6)
    maint = SimConfig(n_borrowers=N, n_months=T, seed=5, scenario="maintenance", maintenance_months=(M,))
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


def test_tightening_closes_marginal_accounts_a_normal_period_keeps(runs):
    b, t = runs["baseline"], runs["tightening"]
    after = lambda p: p[(p["month"] >= M) & (p["event"] == PT)]
    assert len(after(t)) > 2.5 * len(after(b))
    # before the step the two runs are the same data (same seed, same path)
    before_b, before_t = b[b["month"] < M], t[t["month"] < M]
    assert (before_b["status"].to_numpy() == before_t["status"].to_numpy()).all()
    # the closed accounts are marginal: riskier signals than the open book, not the riskiest only
    closed = after(t)
    open_rows = t[(t["month"] >= M) & (t["status"] == "normal")]
    assert closed["other_lenders"].mean() > 2 * open_rows["other_lenders"].mean()
    assert closed["external_score"].mean() < open_rows["external_score"].mean() - 40
    assert (closed["status"] == "closed").all()
    assert (t.loc[closed.index, "policy_index"] == np.float32(0.6)).all()


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

"""The oracle: true outcome probabilities from the hidden state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskml.exceptions import SchemaError
from riskml.platform import effective_status
from riskml.schema import STATUSES
from riskml.simulate import SimConfig, oracle, oracle_cause, simulate
from riskml.simulate.oracle import replay_states

CFG = SimConfig(n_borrowers=16_000, n_months=24, seed=21, block_size=1024)  # accounts open every month
T0, H = 16, 3


@pytest.fixture(scope="session")
def sim():
    p = simulate(CFG).panel
    keys = p.loc[p["month"] == T0, ["borrower_id", "month"]].reset_index(drop=True)
    fut = p[(p["month"] > T0) & (p["month"] <= T0 + H)]
    # the label rule: a maintenance suspension counts as normal
    eff = effective_status(fut["status"].cat.codes.to_numpy(), fut["cause"].cat.codes.to_numpy())
    worst = pd.Series(eff).groupby(fut["borrower_id"].to_numpy()).max().reindex(keys["borrower_id"]).to_numpy()
    o = oracle(CFG, keys, horizon=H, n_paths=100, seed=1)
    return p, keys, worst, o


def test_replay_rebuilds_the_exact_state(sim):
    p, _, _, _ = sim
    rows = p[p["month"].isin([0, 7, 15])].sample(500, random_state=0).reset_index(drop=True)
    st = replay_states(CFG, rows[["borrower_id", "month"]])
    assert (st.arrays["status"] == rows["status"].cat.codes.to_numpy()).all()
    assert np.array_equal(st.arrays["limit"], rows["credit_limit"].to_numpy())
    assert np.array_equal(st.arrays["balance"], rows["balance"].to_numpy())


def test_oracle_shape_and_probabilities(sim):
    _, keys, _, o = sim
    assert list(o.columns) == ["borrower_id", "month", *(f"p_{s}" for s in STATUSES), *(f"se_{s}" for s in STATUSES)]
    assert (o["borrower_id"].to_numpy() == keys["borrower_id"].to_numpy()).all()
    assert np.allclose(o[[f"p_{s}" for s in STATUSES]].sum(axis=1), 1)
    # hand check of the standard error: p = 0.1 over 100 paths -> sqrt(0.1 * 0.9 / 100) = 0.03
    row = o[np.isclose(o["p_suspended"], 0.1)].iloc[0]
    assert row["se_suspended"] == pytest.approx(0.03)
    # a line closed for fraud never reopens; other closed lines reopen rarely
    snap = sim[0].loc[sim[0]["month"] == T0]
    fraud = (snap["cause"] == "agreement_violation").to_numpy()
    closed = (snap["status"] == "closed").to_numpy()
    assert fraud.sum() > 10 and (o.loc[fraud, "p_closed"] == 1).all()
    assert o.loc[closed, "p_closed"].mean() > 0.9


def test_oracle_matches_realised_frequencies(sim):
    _, _, worst, o = sim
    for code, name in enumerate(STATUSES):
        p = o[f"p_{name}"].to_numpy()
        real = (worst == code).astype(float)
        se = np.sqrt(np.var(real - p) / len(p))  # the realised outcome is a Bernoulli(p) draw
        assert abs(real.mean() - p.mean()) < 4 * se + 1e-4, (name, real.mean(), p.mean())
    # calibration in bins of the oracle's adverse probability
    adverse = 1 - o["p_normal"].to_numpy()
    real = (worst > 0).astype(float)
    bins = np.digitize(adverse, [0.02, 0.05, 0.15, 0.4])
    for b in np.unique(bins):
        m = bins == b
        if m.sum() < 200:
            continue
        se = np.sqrt(adverse[m].mean() * (1 - adverse[m].mean()) / m.sum())
        assert abs(real[m].mean() - adverse[m].mean()) < 4 * se + 0.01


def test_oracle_separates_well_but_not_perfectly(sim):
    from sklearn.metrics import roc_auc_score

    p, keys, worst, o = sim
    open_ = p.loc[p["month"] == T0, "status"].to_numpy() == "normal"
    auc = roc_auc_score(worst[open_] > 0, 1 - o["p_normal"].to_numpy()[open_])
    assert 0.75 < auc < 0.95


def test_oracle_is_deterministic_and_causes_sum_to_one(sim):
    p, keys, _, _ = sim
    open_ = p.loc[p["month"] == T0, "status"].to_numpy() == "normal"
    k = keys[open_].iloc[:300].reset_index(drop=True)
    a = oracle(CFG, k, horizon=2, n_paths=50, seed=3)
    b = oracle(CFG, k, horizon=2, n_paths=50, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = oracle_cause(CFG, k, horizon=2, n_paths=50, seed=3)
    assert np.allclose(c.drop(columns=["borrower_id", "month"]).sum(axis=1), 1)
    # no adverse decision on any path <=> worst status stays normal for lines open at t
    assert (c["p_none"] <= a["p_normal"] + 1e-9).all()


def test_oracle_rejects_bad_keys():
    with pytest.raises(SchemaError, match="month 99"):
        oracle(CFG, pd.DataFrame({"borrower_id": [1], "month": [99]}), horizon=2)
    with pytest.raises(SchemaError, match="borrower_id"):
        oracle(CFG, pd.DataFrame({"month": [3]}), horizon=2)


def test_oracle_follows_the_label_rule_maintenance_is_not_adverse():
    # an outage right after t suspends half of the open lines, yet the oracle's adverse probability
    # is the baseline's: maintenance suspensions count as normal, as in the labels
    base = SimConfig(n_borrowers=2000, n_months=T0 + 4, seed=4, block_size=512)
    outage = SimConfig.from_dict({**base.to_dict(), "scenario": "maintenance", "maintenance_months": [T0 + 1]})
    p = simulate(outage).panel
    m = p[p["month"] == T0 + 1]
    assert ((m["status"] == "suspended") & (m["cause"] == "maintenance")).mean() > 0.3
    open_ = p.loc[p["month"] == T0, "status"].to_numpy() == "normal"
    keys = p.loc[p["month"] == T0, ["borrower_id", "month"]][open_].iloc[:400].reset_index(drop=True)
    ob = oracle(base, keys, horizon=2, n_paths=60, seed=2)
    oo = oracle(outage, keys, horizon=2, n_paths=60, seed=2)
    assert abs(oo["p_normal"].mean() - ob["p_normal"].mean()) < 0.01
    c = oracle_cause(outage, keys, horizon=2, n_paths=60, seed=2)
    assert (c["p_maintenance"] == 0).all()


def test_oracle_on_accounts_of_every_age(sim):
    """Accounts open every month, so at T0 the book holds every age from a first month to T0 months on
    book: the replay rebuilds each one's state exactly, and the oracle is as right for the young
    accounts as for the seasoned ones."""
    p, keys, worst, o = sim
    snap = p[p["month"] == T0].reset_index(drop=True)
    age = snap["months_on_book"].to_numpy()
    assert set(age) == set(range(T0 + 1))
    one_per_age = snap.groupby("months_on_book").head(3).reset_index(drop=True)
    st = replay_states(CFG, one_per_age[["borrower_id", "month"]])
    assert np.array_equal(st.arrays["balance"], one_per_age["balance"].to_numpy())
    assert np.array_equal(st.arrays["score"], one_per_age["external_score"].to_numpy())
    open_ = snap["status"].to_numpy() == "normal"
    adverse, real = 1 - o["p_normal"].to_numpy(), (worst > 0).astype(float)
    for lo, hi in ((0, 3), (4, 9), (10, T0)):
        m = open_ & (age >= lo) & (age <= hi)
        assert m.sum() > 1500
        se = np.sqrt(np.var(real[m] - adverse[m]) / m.sum())
        assert abs(real[m].mean() - adverse[m].mean()) < 4 * se + 1e-3, (lo, hi, real[m].mean(), adverse[m].mean())
    # a month before the account opened has no state to rebuild
    late = snap.loc[age == 0, "borrower_id"].iloc[:1]
    with pytest.raises(SchemaError, match=f"borrower {late.iloc[0]}, which opened in month {T0}"):
        oracle(CFG, pd.DataFrame({"borrower_id": late, "month": [T0 - 1]}), horizon=2)

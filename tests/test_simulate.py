"""The simulator's domain facts on a baseline simulation."""

from __future__ import annotations

import pandas as pd
import pytest

from riskml.factors import CAUSES
from riskml.schema import BORROWER_TYPES, PANEL, require_columns, row_problems
from riskml.simulate import SimConfig, simulate
from riskml.simulate.book import schedule
from riskml.simulate.summary import Summary, adverse_events

N, T = 20_000, 48  # the default book: accounts open every month


@pytest.fixture(scope="session")
def base():
    res = simulate(SimConfig(n_borrowers=N, n_months=T, seed=11))
    p = res.panel
    p["event"] = adverse_events(p)
    p["status_code"] = p["status"].cat.codes
    p["prev_status"] = p.groupby("borrower_id")["status_code"].shift(1).fillna(0).astype(int)
    p["cause_s"] = p["cause"].astype("string")
    p["type"] = res.truth.set_index("borrower_id")["borrower_type"].reindex(p["borrower_id"]).to_numpy()
    return res, p


def events(p: pd.DataFrame, cause: str, kind: str | None = None) -> pd.DataFrame:
    """New decisions of one cause; kind: 'cut', 'suspend' or 'close'."""
    e = p[p["event"] == CAUSES.index(cause)]
    code = {"cut": 0, "suspend": 1, "close": 2}
    return e if kind is None else e[e["status_code"] == code[kind]]


def test_panel_follows_the_contract(base):
    res, _ = base
    p = res.panel[list(PANEL.names)]
    require_columns(p, PANEL, source="simulated panel")
    assert row_problems(p).isna().all()
    # every account has a row each month from its opening to the end, months on book counting from 0
    opened = p.groupby("borrower_id")["month"].min()
    assert len(p) == int((T - opened).sum())
    assert p["borrower_id"].is_monotonic_increasing
    assert (p.groupby("borrower_id")["month"].apply(lambda m: list(m) == list(range(m.iloc[0], T)))).all()
    assert (p["months_on_book"] == p["month"] - opened.reindex(p["borrower_id"]).to_numpy()).all()
    assert opened.value_counts().reindex(range(T), fill_value=0).tolist() == schedule(SimConfig(n_borrowers=N,
                                                                                                n_months=T)).tolist()
    # cause is set whenever the line is not normal, and on a normal month only with a limit cut
    assert p.loc[p["status"] != "normal", "cause"].notna().all()
    normal_cause = p[(p["status"] == "normal") & p["cause"].notna()]
    prev_limit = p.groupby("borrower_id")["credit_limit"].shift(1).loc[normal_cause.index]
    assert (normal_cause["credit_limit"] < prev_limit).all()
    # suspended and closed lines keep their rows and cannot draw (maintenance clears before the month)
    prev = p.groupby("borrower_id")[["status", "cause"]].shift(1)
    blocked = prev["status"].isin(["suspended", "closed"]) & (prev["cause"] != "maintenance")
    assert blocked.sum() > 1000 and (p.loc[blocked, "drawn"] == 0).all()
    assert (p.loc[~blocked, "drawn"] > 0).mean() > 0.5


def test_all_seven_causes_occur(base):
    _, p = base
    counts = pd.Series(p["event"][p["event"] >= 0]).map(dict(enumerate(CAUSES))).value_counts()
    assert set(counts.index) == set(CAUSES)


def test_overdue_escalates_from_cut_to_suspension_to_closure(base):
    _, p = base
    cut, susp, close = (events(p, "overdue", k) for k in ("cut", "suspend", "close"))
    assert len(cut) > 50 and len(susp) > 50 and len(close) > 20
    for e in (cut, susp, close):  # overdue decisions need arrears
        assert (e["days_past_due"] > 0).all()
    assert cut["days_past_due"].median() < susp["days_past_due"].median() < close["days_past_due"].median()
    assert cut["overdue_amount"].median() < close["overdue_amount"].median()
    # a suspension with fewer than 60 days past due comes only after a limit cut
    early = susp[susp["days_past_due"] < 60]
    peak = p.groupby("borrower_id")["credit_limit"].cummax().loc[early.index]
    assert (early["credit_limit"] < peak).all()


def test_multi_lending_suspends_many_lenders_and_high_debt(base):
    _, p = base
    e = events(p, "multi_lending")
    assert len(e) > 100
    assert (e["status_code"] == 1).all()  # suspension only
    assert e["other_lenders"].mean() > 3 * p["other_lenders"].mean()
    assert e["debt_to_income"].median() > 1.5 * p["debt_to_income"].median()


def test_abnormal_use_suspends_and_closes_when_repeated(base):
    _, p = base
    e = events(p, "abnormal_use")
    assert e["invest_share"].mean() > 5 * p["invest_share"].mean()
    assert ((e["invest_share"] > 0.25) | (e["rapid_draws"] >= 3)).mean() > 0.8
    closes = events(p, "abnormal_use", "close")
    assert len(closes) > 5
    susp = events(p, "abnormal_use", "suspend")
    first_susp = susp.groupby("borrower_id")["month"].min()
    earlier = first_susp.reindex(closes["borrower_id"]).to_numpy() < closes["month"].to_numpy()
    assert earlier.all()  # every closure repeats an earlier abnormal-use suspension


def test_score_decline_cuts_then_suspends_on_low_or_falling_score(base):
    _, p = base
    e = events(p, "score_decline")
    assert (e["status_code"] < 2).all()  # cut or suspension, never a closure
    assert e["external_score"].mean() < p["external_score"].mean() - 60
    susp = events(p, "score_decline", "suspend")
    peak = p.groupby("borrower_id")["credit_limit"].cummax().loc[susp.index]
    assert (susp["credit_limit"] < peak).all()  # the limit was cut first


def test_fraud_closes_at_once_and_for_good(base):
    _, p = base
    e = events(p, "agreement_violation")
    assert len(e) > 50
    assert (e["status_code"] == 2).all() and (e["fraud_flag"] == 1).all()
    closed_for_fraud = p[p["cause_s"] == "agreement_violation"]
    after = p.merge(e[["borrower_id", "month"]].rename(columns={"month": "m0"}), on="borrower_id")
    after = after[after["month"] >= after["m0"]]
    assert (after["status"] == "closed").all()
    assert len(closed_for_fraud) == len(after)
    assert (p.loc[e.index, "type"] == "fraudster").mean() > 0.7


def test_maintenance_suspends_one_month_and_clears(base):
    _, p = base
    e = events(p, "maintenance")
    assert len(e) > 50 and (e["status_code"] == 1).all() and (e["maintenance"] == 1).all()
    nxt = p.loc[e.index + 1]
    # it clears the next month, unless a new outage hits that month too (rare: 1 in 20,000 borrower's
    # 48 months here)
    assert not ((nxt["status"] == "suspended") & (nxt["cause_s"] == "maintenance") & (nxt["maintenance"] == 0)).any()


def test_recovery_after_rectification(base):
    _, p = base
    back = p[(p["prev_status"] == 1) & (p["status_code"] == 0)]
    assert len(back) > 200
    prev = p.loc[back.index - 1]
    od = prev["cause_s"].to_numpy() == "overdue"
    assert od.sum() > 20 and (back["days_past_due"].to_numpy()[od] == 0).all()  # arrears repaid
    ml = prev["cause_s"].to_numpy() == "multi_lending"
    assert (back["other_lenders"].to_numpy()[ml] <= 3).all()


def test_closed_lines_reopen_rarely_after_six_clean_months_never_after_fraud(base):
    _, p = base
    reopen = p[(p["prev_status"] == 2) & (p["status_code"] == 0)]
    closures = p[(p["prev_status"] < 2) & (p["status_code"] == 2)]
    # a policy closure reopens on the policy's terms (test_a_policy_closure_reopens_once_the_line_takes_it_back)
    policy = (p.loc[reopen.index - 1, "cause_s"] == "policy_tightening").to_numpy()
    reopen, closures = reopen[~policy], closures[closures["cause_s"] != "policy_tightening"]
    assert 0 < len(reopen) < 0.25 * len(closures)
    pairs = pd.merge_asof(reopen[["month", "borrower_id"]].sort_values("month"),
                          closures[["month", "borrower_id"]].rename(columns={"month": "closed_at"}).sort_values("closed_at"),
                          left_on="month", right_on="closed_at", by="borrower_id", allow_exact_matches=False)
    assert pairs["closed_at"].notna().all()
    assert (pairs["month"] - pairs["closed_at"] >= 6).all()
    assert (p.loc[reopen.index - 1, "cause_s"] != "agreement_violation").all()


def test_a_policy_closure_reopens_once_the_line_takes_it_back(base):
    """Reopened only when last month's review sat inside last month's acceptance line (the features' gap
    <= 0, or the normal period's line); the tightened line keeps the rest closed."""
    from riskml.features import build_features

    _, p = base
    was_policy = (p["prev_status"] == 2) & (p.groupby("borrower_id")["cause_s"].shift(1) == "policy_tightening")
    back = p[was_policy & (p["status_code"] == 0)]
    assert len(back) > 50
    checked = 0
    for month, rows in back.groupby("month"):
        x = build_features(p[p["borrower_id"].isin(rows["borrower_id"])], as_of=int(month) - 1).X
        tight = p.loc[rows.index - 1, "policy_index"].to_numpy() > 0.3 + 1e-6
        assert (x["acceptance_gap"].to_numpy()[tight] <= 1e-5).all()  # accepted by the tightened line
        checked += tight.sum()
    assert checked > 20
    # and while the line stays tight, accounts it does not accept stay closed
    still = p[was_policy & (p["status_code"] == 2) & (p["month"] == 32)]  # the cycle's second tight spell
    x = build_features(p[p["borrower_id"].isin(still["borrower_id"])], as_of=31).X
    assert (x["acceptance_gap"] > 0).sum() > 20


def test_default_rates_are_realistic(base):
    res, _ = base
    s = Summary()
    s.add(res.panel)
    d = s.to_dict()
    assert 0.08 <= d["share_suspended_at_least_once"] <= 0.20
    assert 0.02 <= d["share_closed_at_least_once"] <= 0.06
    total = sum(s.events.values())
    for cause, k in s.events.items():
        if cause != "maintenance":
            assert k / total >= 0.03, (cause, k / total)


def test_rates_are_configurable():
    cfg = SimConfig(n_borrowers=4000, n_months=12, seed=3)
    hot = SimConfig.from_dict({**cfg.to_dict(), "engine": {"multi_bias": -6.0}})
    ev = [pd.Series(adverse_events(simulate(c).panel)) for c in (cfg, hot)]
    ml = CAUSES.index("multi_lending")
    assert (ev[1] == ml).sum() > 3 * (ev[0] == ml).sum()


def test_hidden_types_drive_behaviour_and_stay_hidden(base):
    res, p = base
    assert set(res.panel.columns) & set(res.truth.columns) == {"borrower_id"}
    share = res.truth["borrower_type"].value_counts(normalize=True)
    for t, want in zip(BORROWER_TYPES, SimConfig().type_mix):
        assert abs(share[t] - want) < 0.02
    by = p.groupby("type", observed=True)
    assert by["invest_share"].mean().idxmax() == "speculator"
    assert by["fraud_flag"].mean().idxmax() == "fraudster"
    assert by["other_lenders"].mean()["stretched"] > 3 * by["other_lenders"].mean()["steady"]
    cv = (p.groupby("borrower_id")["income"].std() / p.groupby("borrower_id")["income"].mean())
    cv_by = cv.groupby(res.truth.set_index("borrower_id")["borrower_type"], observed=True).mean()
    assert cv_by.idxmax() == "shock_prone"
    # types overlap: some steady borrowers are suspended, many stretched never are
    susp = (p["status_code"] == 1).groupby(p["borrower_id"]).any()
    by_type = susp.groupby(res.truth.set_index("borrower_id")["borrower_type"], observed=True).mean()
    assert 0.02 < by_type["steady"] < by_type["stretched"] < 0.9


def test_adverse_events_hand_computed():
    p = pd.DataFrame({
        "borrower_id": [0, 0, 0, 0, 1, 1],
        "credit_limit": [100.0, 60.0, 60.0, 60.0, 50.0, 50.0],
        "status": pd.Categorical(["normal", "normal", "suspended", "closed", "suspended", "normal"],
                                 categories=["normal", "suspended", "closed"]),
        "cause": pd.Categorical([None, "overdue", "overdue", "overdue", "maintenance", None], categories=CAUSES),
    })
    od = CAUSES.index("overdue")
    # cut, suspension, escalation; borrower 1's first month is not an event (no previous month)
    assert adverse_events(p).tolist() == [-1, od, od, od, -1, -1]


def test_panel_dtypes_are_the_contract(base):
    from riskml.schema import cast

    res, _ = base
    assert res.panel[list(PANEL.names)].dtypes.equals(cast(res.panel[list(PANEL.names)], PANEL).dtypes)

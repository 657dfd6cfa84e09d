"""The platform's risk engine and the one month step shared by generator and oracle.

Each documented cause has a monthly hazard driven by its own observable
signals and their recent history (decayed counts of past months, all of them
functions of panel columns), so the platform acts on warnings it has seen for
a while, as the sources describe. The escalation ladders:

* ``overdue``: a limit cut at the first arrears; suspension only once arrears
  persist (from 60 days past due, likely from 90-120); closure when a
  suspended line's arrears keep growing.
* ``score_decline``: a cut on a first drop; the next score-decline decision
  (the score stays low or keeps falling) suspends.
* ``abnormal_use``: found in a month with an abnormal transaction, the
  likelier the more such months came before (speculators persist); closure on
  a repeat.
* ``multi_lending``: lenders and applications that pile up over months.
* ``agreement_violation``: fraud is confirmed in a flagged month, the likelier
  the more anomaly flags came before; immediate, permanent closure.
* ``policy_tightening``: while the platform tightens (the policy index above
  neutral) it closes *marginal* accounts: past the acceptance line the index
  moves in, inside the line of a normal period, at three month-end reviews in
  a row (``riskml.platform``).
* ``maintenance``: random, whatever the risk; ends by itself.

When several causes fire in a month the engine records the one whose signal
is strongest (the highest hazard; fraud always first, maintenance only when no
risk cause fired). Suspended lines come back once their cause is rectified
(arrears and abnormal use once the warning has faded from the record), closed
lines rarely and only after clean months, policy closures once the line in
force takes them back, fraud closures never, maintenance after one month.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any

import numpy as np

from riskml.factors import CAUSES
from riskml import platform as acceptance
from riskml.simulate import behaviour as bh
from riskml.simulate.config import SimConfig
from riskml.simulate.population import State

F32 = np.float32
OD, ML, AB, SD, PT, AV, MT = (CAUSES.index(c) for c in (
    "overdue", "multi_lending", "abnormal_use", "score_decline", "policy_tightening", "agreement_violation",
    "maintenance"))
NORMAL, SUSPENDED, CLOSED = 0, 1, 2


@dataclass(frozen=True)
class Env:
    """Platform-wide paths known in advance: policy index and outage months, per month."""

    policy: np.ndarray
    outage: np.ndarray

    @staticmethod
    def build(cfg: SimConfig, n_months: int | None = None) -> "Env":
        n = (n_months or cfg.n_months) + 64  # room for oracle horizons past the panel end
        m = np.arange(n)
        policy = cfg.policy_base + cfg.policy_amplitude * np.sin(2 * np.pi * m / cfg.policy_period)
        if cfg.tighten_month is not None:
            policy = np.where(m >= cfg.tighten_month, cfg.tighten_level, policy)
        outage = np.isin(m, np.asarray(cfg.maintenance_months, dtype=int))
        return Env(np.clip(policy, 0, 1).astype(F32), outage)


def _expit(x: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-x))).astype(F32)


def hazards(a: dict, rows: dict, U: np.ndarray, outage: np.ndarray | bool, cfg: SimConfig) -> np.ndarray:
    """Monthly probability of each cause firing, shape (7, n).

    Each cause reads its own signals only, this month's and their memories
    (decayed counts of past months, all functions of panel columns), so the
    platform acts on warnings it has seen for a while: arrears that persist,
    investing that repeats, applications that pile up, a score that stays
    low, anomaly flags that recur, an account past the acceptance line review after review.
    """
    e = cfg.engine
    n = len(a["status"])
    dpd = rows["days_past_due"].astype(F32)
    base = a["base_limit"]
    score = rows["external_score"]
    drop = a["score_lag3"] - score
    h = np.empty((len(CAUSES), n), dtype=F32)
    # overdue: arrears on an uncut line -> limit cut (see step); 60+ days -> suspension
    h[OD] = np.where(dpd >= 60, _expit(e.overdue_bias + e.overdue_dpd * (dpd - 60) / 30
                                       + e.overdue_amount * rows["overdue_amount"] / base + e.overdue_late * a["late"]),
                     np.where((dpd > 0) & (a["limit"] >= base * F32(0.999)), F32(e.overdue_cut), F32(0)))
    h[ML] = _expit(e.multi_bias + e.multi_lenders * rows["other_lenders"].astype(F32)
                   + e.multi_dti * np.maximum(rows["debt_to_income"] - F32(0.5), 0) + e.multi_apps * a["apps_n"])
    # abnormal use: found in a month with an abnormal transaction, the likelier the more such months came before
    now = (rows["invest_share"] > 0.2) | (rows["rapid_draws"] >= 3)
    h[AB] = now * _expit(e.abnormal_bias + e.abnormal_invest * a["inv_n"] + e.abnormal_rapid * a["rapid_n"])
    h[SD] = _expit(e.score_bias + e.score_level * (600 - score) / 40 + e.score_drop * np.maximum(drop, 0) / 20
                   + e.score_low * a["low_n"])
    # policy: in a tightening period the platform closes marginal accounts - past its acceptance line, which
    # the policy index moves in, but inside the line of a normal period (beyond that the cause rules above act
    # anyway) - once they have been past it at REVIEWS month-end reviews in a row. The rule is the platform's
    # own and published (riskml.platform), so the features can measure it.
    h[PT] = (a["past_line"] >= acceptance.REVIEWS) * F32(e.policy_rate)
    # fraud is confirmed in a flagged month, the likelier the more flags came before
    earlier = a["flags"] - rows["fraud_flag"]
    h[AV] = rows["fraud_flag"] * _expit(e.fraud_bias + e.fraud_flags * earlier)
    # maintenance hits accounts at random, whatever their risk
    h[MT] = rows["maintenance"] * (U[bh.U_OUTAGE] < np.where(outage, F32(cfg.outage_share), F32(1.0)))
    return np.minimum(h, 1)


def step(s: State, month: int | np.ndarray, U: np.ndarray, Z: np.ndarray, cfg: SimConfig,
         env: Env, opening: np.ndarray | None = None) -> tuple[State, dict[str, np.ndarray]]:
    """Advance borrowers and platform by one month, in place.

    The month's behaviour (``behaviour.behave``), then the platform's decisions on open lines
    (:func:`_decide`), on suspended and closed ones (:func:`_rectify`), their effect on status,
    cause and limit (:func:`_apply`) and the month-end review of the acceptance grade (:func:`_review`).

    Args:
        s: the state at the end of the previous month (updated in place).
        month: the month being simulated (a scalar, or one per element for the oracle).
        U: uniforms, shape (``behaviour.N_UNIFORM``, n).
        Z: standard normals, shape (``behaviour.N_NORMAL``, n).
        cfg: the simulation config.
        env: the policy and outage paths.
        opening: per element, whether the account opens this month (its first observed month, in which the
            platform decides nothing yet); ``None``: the accounts opened at month 0.

    Returns:
        ``(s, rows)``: the state and the month's panel columns (without ids),
        plus ``event``: the cause code of a new adverse decision (-1: none).
    """
    a = s.arrays
    e = cfg.engine
    # a maintenance suspension ends by itself after one month
    back = (a["status"] == SUSPENDED) & (a["cause"] == MT)
    a["status"] = np.where(back, NORMAL, a["status"]).astype(np.int8)
    a["cause"] = np.where(back, -1, a["cause"]).astype(np.int8)
    policy, outage = env.policy[month], env.outage[month]
    policy_seen = env.policy[np.maximum(np.asarray(month) - 1, 0)]
    rows = bh.behave(s, U, Z, policy, outage, cfg.maintenance_rate, e.fraud_false_flag)
    # an account's first observed month (its opening) has no decision yet
    active = np.asarray(month) >= 1 if opening is None else ~np.asarray(opening)
    h = hazards(a, rows, U, outage, cfg)
    fired = (U[bh.U_HAZARD:bh.U_HAZARD + len(CAUSES)] < h) & active
    decisions = _decide(a, rows, h, fired, e)
    changes = _rectify(a, rows, U, fired, active, policy_seen, e)
    new_status, new_cause, limit, event, do_cut = _apply(a, U, decisions, changes, e)
    _review(a, rows, policy)
    rows["credit_limit"] = limit
    rows["status"] = new_status
    rows["cause"] = np.where(new_status != NORMAL, new_cause, np.where(do_cut, event, -1)).astype(np.int8)
    rows["event"] = event
    return s, rows


def _decide(a: dict[str, np.ndarray], rows: dict[str, np.ndarray], h: np.ndarray, fired: np.ndarray,
            e: Any) -> tuple[np.ndarray, ...]:
    """Decisions on open lines: the cause recorded, and whether it closes, cuts or suspends the line.

    Returns ``(chosen, strikes, do_close, do_cut, do_susp, warned)``.
    """
    # the cause recorded is the fired one whose signal is strongest (highest hazard); fraud first,
    # maintenance only when no risk cause fired
    strength = np.where(fired, h, F32(-1))
    strength[AV] = np.where(fired[AV], F32(2), F32(-1))
    strength[MT] = np.where(fired[MT], F32(0), F32(-1))
    chosen = np.where(fired.any(axis=0), strength.argmax(axis=0), -1).astype(np.int8)
    limit, base = a["limit"], a["base_limit"]
    dpd = rows["days_past_due"]
    is_open = a["status"] == NORMAL
    uncut = limit >= base * F32(0.999)
    # abnormal-use decisions count; the repeat closes instead of suspending
    strikes = (a["strikes"] + (is_open & (chosen == AB))).astype(np.int8)
    repeat = strikes >= e.abnormal_repeat
    do_close = is_open & ((chosen == AV) | (chosen == PT) | ((chosen == AB) & repeat))
    # first arrears and a first score drop cut the limit; arrears under 60 days never suspend
    # (a score-decline warning is its own rung: the next score-decline decision suspends, whatever cut the
    # line before; the warning lapses once the limit is fully restored)
    warned = a["sd_warn"] > 0
    do_cut = is_open & ((((chosen == OD) & (dpd < 60)) & uncut) | ((chosen == SD) & ~warned))
    chosen = np.where(is_open & (chosen == OD) & (dpd < 60) & ~uncut, np.int8(-1), chosen).astype(np.int8)
    do_susp = is_open & (chosen >= 0) & ~do_close & ~do_cut
    return chosen, strikes, do_close, do_cut, do_susp, warned


def _rectify(a: dict[str, np.ndarray], rows: dict[str, np.ndarray], U: np.ndarray, fired: np.ndarray,
             active: np.ndarray, policy_seen: np.ndarray, e: Any) -> tuple[np.ndarray, ...]:
    """Suspended lines escalate (fraud, growing arrears) or recover once the cause is rectified; closed
    lines reopen after clean months (never after fraud), a policy closure once the line accepts it again.

    Returns ``(susp_close, susp_cause, clean, recover, reopen)``.
    """
    status, cause, base = a["status"], a["cause"], a["base_limit"]
    dpd = rows["days_past_due"]
    is_susp, is_closed = status == SUSPENDED, status == CLOSED
    esc_h = _expit(e.escalate_bias + e.escalate_dpd * (dpd.astype(F32) - 90) / 30
                   + e.escalate_amount * rows["overdue_amount"] / base)
    escalate = is_susp & (cause == OD) & (dpd > 0) & (U[bh.U_ESCALATE] < esc_h) & active
    susp_close = is_susp & (fired[AV] | escalate)
    susp_cause = np.where(fired[AV], AV, OD).astype(np.int8)
    drop = a["score_lag3"] - rows["external_score"]
    # (arrears and abnormal use count as rectified once the warning has faded from the record: months of
    # on-time payment, months without investing or rapid draws - not merely a month a suspended line
    # could not be drawn in)
    rectified = np.select(
        [cause == OD, cause == ML, cause == AB, cause == SD],
        [(dpd == 0) & (a["late"] < e.rectify_late), (rows["other_lenders"] <= 3) & (rows["debt_to_income"] < 0.5),
         (rows["invest_share"] < 0.1) & (rows["rapid_draws"] <= 2) & (a["inv_n"] < e.rectify_invest)
         & (a["rapid_n"] < e.rectify_rapid),
         (rows["external_score"] >= 600) & (drop < 10)], False)
    clean_now = ((dpd == 0) & (rows["invest_share"] < 0.1) & (rows["rapid_draws"] <= 2)
                 & (rows["other_lenders"] <= 4) & (drop < 15) & (rows["fraud_flag"] == 0)
                 & (rows["debt_to_income"] < 0.6))
    clean = np.where(clean_now, np.minimum(a["clean"] + 1, 1000), 0).astype(np.int16)
    recover = is_susp & ~susp_close & rectified & (U[bh.U_RECOVER] < e.recover) & active
    accepted = a["review"] <= acceptance.line(policy_seen)  # last month-end's review, last month's line
    reopen = np.where(cause == PT, accepted & (U[bh.U_REOPEN] < e.policy_reopen),
                      (cause != AV) & (clean >= e.reopen_clean_months) & (U[bh.U_REOPEN] < e.reopen))
    reopen &= is_closed & active
    return susp_close, susp_cause, clean, recover, reopen


def _apply(a: dict[str, np.ndarray], U: np.ndarray, decisions: tuple[np.ndarray, ...],
           changes: tuple[np.ndarray, ...], e: Any) -> tuple[np.ndarray, ...]:
    """The month's decisions applied to status, cause, limit and the repair and warning counters.

    Returns ``(new_status, new_cause, limit, event, do_cut)``.
    """
    chosen, strikes, do_close, do_cut, do_susp, warned = decisions
    susp_close, susp_cause, clean, recover, reopen = changes
    status, cause, limit, base = a["status"], a["cause"], a["limit"], a["base_limit"]
    is_open = status == NORMAL
    new_status = np.select([do_close | susp_close, do_susp, recover | reopen], [CLOSED, SUSPENDED, NORMAL],
                           status).astype(np.int8)
    event = np.select([is_open & (chosen >= 0), susp_close], [chosen, susp_cause], -1).astype(np.int8)
    new_cause = np.select([event >= 0, recover | reopen], [event, -1], cause).astype(np.int8)
    new_cause = np.where(do_cut, -1, new_cause).astype(np.int8)  # a cut leaves the line open
    limit = np.where(do_cut, limit * F32(e.cut_factor), limit)
    limit = np.where(reopen, base * F32(0.5), limit)
    grow = (new_status == NORMAL) & ~do_cut & (clean >= 3)
    limit = np.where(grow, np.minimum(base, limit + F32(e.restore_step) * base), limit).astype(F32)
    decided = (event >= 0) & (event != MT)
    start_repair = decided & (U[bh.U_RECTIFY] < e.rectify)
    a["repair"] = np.where(start_repair, e.rectify_months, np.maximum(a["repair"] - 1, 0)).astype(np.int8)
    a["strikes"] = np.where(reopen, 0, strikes).astype(np.int8)
    warned = (warned | (do_cut & (chosen == SD))) & (limit < base * F32(0.999))
    a["sd_warn"] = warned.astype(np.int8)
    clean = np.where(event >= 0, 0, clean).astype(np.int16)  # clean months count from the last decision
    a["status"], a["cause"], a["limit"], a["clean"] = new_status, new_cause, limit, clean
    return new_status, new_cause, limit, event, do_cut


def _review(a: dict[str, np.ndarray], rows: dict[str, np.ndarray], policy: np.ndarray) -> None:
    """The platform's month-end review: this month's grade, the review of the last months' grades, and the
    reviews in a row past this month's acceptance line."""
    now = acceptance.grade(days_past_due=rows["days_past_due"], other_lenders=rows["other_lenders"],
                           debt_to_income=rows["debt_to_income"], external_score=rows["external_score"])
    lags = [f"grade_lag{k}" for k in range(1, acceptance.MONTHS)]
    a["review"] = acceptance.review(now, *(a[k] for k in lags))
    past = acceptance.marginal(a["review"], policy)  # this month-end's review against this month's line
    a["past_line"] = np.where(past, np.minimum(a["past_line"] + 1, 100), 0).astype(np.int8)
    for older, newer in zip(lags[::-1], lags[-2::-1]):  # shift the grade history one month
        a[older] = a[newer]
    a[lags[0]] = now

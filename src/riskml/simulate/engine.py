"""The platform's risk engine and the one month step shared by generator and oracle.

Each documented cause has a monthly hazard that rises with its own observable
signals (overdue with days past due, amount and earlier arrears; multi-lending
with lenders, debt ratio and applications; ...). Causes that fire compete by
a fixed priority; the cause then acts as ``DOMAIN.md`` describes (limit cut
before suspension for overdue and score decline, closure when abnormal use
repeats or arrears keep growing, immediate closure for fraud). Suspended
lines come back once their cause is rectified, closed lines rarely and only
after clean months, fraud closures never, maintenance after one month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from riskml.factors import CAUSES
from riskml.simulate import behaviour as bh
from riskml.simulate.config import SimConfig
from riskml.simulate.population import State

F32 = np.float32
OD, ML, AB, SD, PT, AV, MT = (CAUSES.index(c) for c in (
    "overdue", "multi_lending", "abnormal_use", "score_decline", "policy_tightening", "agreement_violation",
    "maintenance"))
#: Which fired cause wins when several fire in one month.
PRIORITY = (AV, OD, AB, ML, SD, PT, MT)
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
    """Monthly probability of each cause firing, shape (7, n), from this month's signals."""
    e = cfg.engine
    n = len(a["status"])
    dpd = rows["days_past_due"].astype(F32)
    base = a["base_limit"]
    lenders = rows["other_lenders"].astype(F32)
    dti, inv = rows["debt_to_income"], rows["invest_share"]
    rapid, score = rows["rapid_draws"].astype(F32), rows["external_score"]
    drop = a["s3"] - score
    h = np.empty((len(CAUSES), n), dtype=F32)
    h[OD] = (dpd > 0) * _expit(e.overdue_bias + e.overdue_dpd * dpd / 30 + e.overdue_amount * rows["overdue_amount"]
                               / base + e.overdue_late * a["late"])
    h[ML] = _expit(e.multi_bias + e.multi_lenders * lenders + e.multi_dti * dti
                   + e.multi_apps * rows["recent_applications"])
    h[AB] = _expit(e.abnormal_bias + e.abnormal_invest * inv + e.abnormal_rapid * rapid)
    h[SD] = _expit(e.score_bias + e.score_level * (600 - score) / 40 + e.score_drop * np.maximum(drop, 0) / 20)
    # the platform's internal risk index: marginal accounts are those near its cutoff
    risk = dpd / 30 + 0.4 * lenders + 2 * dti + (620 - score) / 40 + 3 * inv + 0.3 * rapid
    h[PT] = e.policy_rate * np.exp(e.policy_slope * (rows["policy_index"] - F32(0.3))) * _expit(risk - e.policy_cutoff)
    h[AV] = rows["fraud_flag"] * F32(e.fraud_close)
    # maintenance hits accounts at random, whatever their risk
    h[MT] = rows["maintenance"] * (U[bh.U_OUTAGE] < np.where(outage, F32(cfg.outage_share), F32(1.0)))
    return np.minimum(h, 1)


def step(s: State, month: int | np.ndarray, U: np.ndarray, Z: np.ndarray, cfg: SimConfig,
         env: Env) -> tuple[State, dict[str, np.ndarray]]:
    """Advance borrowers and platform by one month, in place.

    Args:
        s: the state at the end of the previous month (updated in place).
        month: the month being simulated (a scalar, or one per element for the oracle).
        U: uniforms, shape (``behaviour.N_UNIFORM``, n).
        Z: standard normals, shape (``behaviour.N_NORMAL``, n).
        cfg: the simulation config.
        env: the policy and outage paths.

    Returns:
        ``(s, rows)``: the state and the month's panel columns (without ids),
        plus ``event``: the cause code of a new adverse decision (-1: none).
    """
    a = s.a
    e = cfg.engine
    # a maintenance suspension ends by itself after one month
    back = (a["status"] == SUSPENDED) & (a["cause"] == MT)
    a["status"] = np.where(back, NORMAL, a["status"]).astype(np.int8)
    a["cause"] = np.where(back, -1, a["cause"]).astype(np.int8)
    policy, outage = env.policy[month], env.outage[month]
    rows = bh.behave(s, U, Z, policy, outage, cfg.maintenance_rate, e.fraud_false_flag)
    active = np.asarray(month) >= 1  # month 0 is the first observed month: no decision yet
    h = hazards(a, rows, U, outage, cfg)
    fired = (U[bh.U_HAZARD:bh.U_HAZARD + len(CAUSES)] < h) & active
    chosen = np.full(len(s), -1, dtype=np.int8)
    for c in PRIORITY[::-1]:
        chosen = np.where(fired[c], np.int8(c), chosen)
    status, cause, limit, base = a["status"], a["cause"], a["limit"], a["base_limit"]
    dpd = rows["days_past_due"]
    is_open, is_susp, is_closed = status == NORMAL, status == SUSPENDED, status == CLOSED
    uncut = limit >= base * F32(0.999)
    # abnormal-use decisions count; the repeat closes instead of suspending
    strikes = (a["strikes"] + (is_open & (chosen == AB))).astype(np.int8)
    repeat = strikes >= e.abnormal_repeat
    # decisions on open lines
    do_close = is_open & ((chosen == AV) | (chosen == PT) | ((chosen == AB) & repeat))
    do_cut = is_open & ((((chosen == OD) & (dpd < 60)) | (chosen == SD)) & uncut)
    do_susp = is_open & (chosen >= 0) & ~do_close & ~do_cut
    # suspended lines: fraud closes, growing arrears escalate to closure
    esc_h = _expit(e.escalate_bias + e.escalate_dpd * (dpd.astype(F32) - 90) / 30
                   + e.escalate_amount * rows["overdue_amount"] / base)
    escalate = is_susp & (cause == OD) & (dpd > 0) & (U[bh.U_ESCALATE] < esc_h) & active
    susp_close = is_susp & (fired[AV] | escalate)
    susp_cause = np.where(fired[AV], AV, OD).astype(np.int8)
    # recovery once the cause is rectified
    drop = a["s3"] - rows["external_score"]
    rectified = np.select(
        [cause == OD, cause == ML, cause == AB, cause == SD],
        [dpd == 0, (rows["other_lenders"] <= 3) & (rows["debt_to_income"] < 0.5),
         (rows["invest_share"] < 0.1) & (rows["rapid_draws"] <= 2),
         (rows["external_score"] >= 600) & (drop < 10)], False)
    clean_now = ((dpd == 0) & (rows["invest_share"] < 0.1) & (rows["rapid_draws"] <= 2)
                 & (rows["other_lenders"] <= 4) & (drop < 15) & (rows["fraud_flag"] == 0)
                 & (rows["debt_to_income"] < 0.6))
    clean = np.where(clean_now, np.minimum(a["clean"] + 1, 1000), 0).astype(np.int16)
    recover = is_susp & ~susp_close & rectified & (U[bh.U_RECOVER] < e.recover) & active
    reopen = (is_closed & (cause != AV) & (clean >= e.reopen_clean_months) & (U[bh.U_REOPEN] < e.reopen)
              & active)
    # apply
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
    clean = np.where(event >= 0, 0, clean).astype(np.int16)  # clean months count from the last decision
    a["status"], a["cause"], a["limit"], a["clean"] = new_status, new_cause, limit, clean
    rows["credit_limit"] = limit
    rows["status"] = new_status
    rows["cause"] = np.where(new_status != NORMAL, new_cause, np.where(do_cut, event, -1)).astype(np.int8)
    rows["event"] = event
    return s, rows

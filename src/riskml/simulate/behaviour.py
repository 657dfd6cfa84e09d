"""What borrowers do in a month: income, spending, borrowing, repaying, scores.

Hidden traits drive the behaviour; the platform only sees its result (the
observable columns of the panel). All random numbers of a month come in two
pre-drawn matrices, ``U`` (uniforms) and ``Z`` (standard normals), one row per
use, so the number of draws never depends on the state and every stream stays
aligned across chunkings.
"""

from __future__ import annotations

import numpy as np

from riskml.simulate.population import State

F32 = np.float32

#: Rows of the uniform and normal matrices of one month (see the index names below).
N_UNIFORM = 26
N_NORMAL = 4
(U_SHOCK, U_SHOCK_LEN, U_APPS, U_NEW_LENDER, U_LEAVE, U_RAPID, U_INVEST, U_INVEST_SHARE, U_PAY,
 U_FRAUD, U_FLAG, U_PARTIAL, U_OUTAGE) = range(13)
U_HAZARD = 13  # 7 rows, one per cause in catalogue order
U_ESCALATE, U_RECOVER, U_REOPEN, U_RECTIFY, U_UTIL, U_DEBT = range(20, 26)
Z_INCOME, Z_SPEND, Z_DRAW, Z_SCORE = range(4)  # normals cost 5x a uniform: only where the shape matters
#: Decay of the signal memories the risk engine reads (invest months, rapid draws, applications, low-score
#: months, anomaly flags): ``m_t = MEMORY * m_{t-1} + x_t``, so they are functions of panel columns.
MEMORY = 0.7
#: Payment probability of a borrower already in arrears, as a share of the usual one (cash flow broken).
ARREARS_PAY = 0.6
#: Cut in the payment probability of a borrower with recent arrears (full at a late-month memory of 2):
#: repeated overdue, the warning sign the sources name.
RELAPSE = 0.25


def geometric(u: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Over-dispersed counts with the given mean from uniforms (a geometric law).

    ``floor(x * E)`` with ``E ~ Exp(1)`` is geometric with ``P(N >= k) = exp(-k / x)``;
    ``x = 1 / log(1 + 1 / mean)`` gives mean ``mean``.

    >>> u = np.random.default_rng(0).random(200_000)
    >>> round(float(geometric(u, np.full(u.shape, 2.0)).mean()), 1)
    2.0
    >>> int(geometric(np.array([0.5]), np.array([0.0]))[0])
    0
    """
    x = 1.0 / np.log1p(1.0 / np.maximum(mean, 1e-6))
    return np.minimum(np.floor(-np.log1p(-u) * x), 200).astype(np.int16)  # 1 - u > 0: float32 u can be 0


def behave(s: State, U: np.ndarray, Z: np.ndarray, policy: np.ndarray | float,
           outage: np.ndarray | bool, maintenance_rate: float, false_flag: float) -> dict[str, np.ndarray]:
    """Advance the borrowers' own behaviour by one month (the platform acts after).

    Updates the dynamic state in place and returns the month's observable
    columns (credit limit and status are filled in by the engine): income and
    spending, borrowing at other lenders, use of the line, repayment, and the
    external score, in that order (each reads what the ones before it left).
    """
    a = s.arrays
    open_ = a["status"] == 0
    repairing = a["repair"] > 0
    income, consumption, stress, shocked = _income(a, U, Z)
    apps, lenders, other_debt = _other_lenders(a, U, stress, repairing)
    fraud_flag, fraud_on, drawn, rapid, invest_share = _use(a, U, Z, open_, stress, repairing, false_flag)
    repaid, balance, dti = _repay(a, U, fraud_on, repairing, drawn, other_debt, income)
    utility, score = _score(a, U, Z, stress, lenders, shocked, apps)
    partial = U[U_PARTIAL] < maintenance_rate
    maint = (partial | outage).astype(np.int8)
    return {
        "drawn": drawn, "repaid": repaid, "balance": balance, "overdue_amount": a["overdue"],
        "days_past_due": a["dpd"], "other_lenders": lenders, "recent_applications": apps,
        "debt_to_income": dti.astype(F32), "invest_share": invest_share.astype(F32),
        "rapid_draws": rapid.astype(np.int16), "external_score": score, "utility_on_time": utility.astype(F32),
        "income": income.astype(F32), "consumption": consumption.astype(F32), "fraud_flag": fraud_flag,
        "policy_index": np.broadcast_to(np.asarray(policy, dtype=F32), score.shape),
        "maintenance": maint,
    }


def _income(a: dict[str, np.ndarray], U: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, ...]:
    """Income, consumption and cash stress; shock-prone borrowers lose most of their income for 2-6 months."""
    base = a["income_base"]
    left = a["shock_left"]
    start = (left == 0) & (U[U_SHOCK] < a["shock"])
    left = np.where(left > 0, left - 1, np.where(start, 2 + np.floor(U[U_SHOCK_LEN] * 5), 0)).astype(np.int8)
    a["shock_left"] = left
    shocked = left > 0
    income = base * np.exp(F32(0.08) * Z[Z_INCOME]) * np.where(shocked, F32(0.6), F32(1.0))
    consumption = base * a["spend"] * np.exp(F32(0.12) * Z[Z_SPEND])
    stress = np.clip((consumption + a["service"] - income) / base, 0, 2)
    return income, consumption, stress, shocked


def _other_lenders(a: dict[str, np.ndarray], U: np.ndarray, stress: np.ndarray,
                   repairing: np.ndarray) -> tuple[np.ndarray, ...]:
    """Applications rise with cash stress; repairing borrowers cut borrowing at other lenders."""
    apps = geometric(U[U_APPS], a["apps"] * (1 + stress) * np.where(repairing, F32(0.2), F32(1.0)))
    lenders = a["lenders"]
    new = (apps > 0) & (U[U_NEW_LENDER] < 0.5)
    leave = U[U_LEAVE] < np.minimum(0.04 * lenders + 0.35 * repairing, 0.9)
    lenders = np.clip(lenders + new - (leave & (lenders > 0)), 0, 200).astype(np.int16)
    a["lenders"] = lenders
    other_debt = lenders * a["loan_size"] * (F32(0.85) + F32(0.3) * U[U_DEBT])
    return apps, lenders, other_debt


def _use(a: dict[str, np.ndarray], U: np.ndarray, Z: np.ndarray, open_: np.ndarray, stress: np.ndarray,
         repairing: np.ndarray, false_flag: float) -> tuple[np.ndarray, ...]:
    """Fraud, draws on the line, rapid draws and investing with drawn money."""
    # fraud activity starts once and stays; the anomaly flags it raises are intermittent
    fraud_on = a["fraud_on"] | (U[U_FRAUD] < a["fraud"])
    a["fraud_on"] = fraud_on
    fraud_flag = (U[U_FLAG] < np.where(fraud_on, F32(0.45), F32(false_flag))).astype(np.int8)
    a["flags"] = (F32(MEMORY) * a["flags"] + fraud_flag).astype(F32)
    # draws: only an open line can be drawn; fraud drains it
    avail = np.maximum(a["limit"] - a["balance"], 0) * open_
    want = avail * a["draw"] * (1 + stress) * np.exp(F32(0.4) * Z[Z_DRAW] - F32(0.08))
    drawn = np.minimum(np.where(fraud_on, avail, want), avail).astype(F32)
    using = drawn > 0
    rapid_mean = a["rapid"] * (1 + fraud_on) * np.where(repairing, F32(0.3), F32(1.0))
    rapid = geometric(U[U_RAPID], rapid_mean) * using
    # investing with drawn money comes in episodes (speculators keep at it for months)
    inv = a["invest_on"]
    inv = (U[U_INVEST] < np.where(inv, F32(0.8), a["invest"])) & ~repairing
    a["invest_on"] = inv
    invest_share = np.where(inv, 0.3 + 0.6 * U[U_INVEST_SHARE], 0.08 * U[U_INVEST_SHARE] ** 2) * using
    a["inv_n"] = (F32(MEMORY) * a["inv_n"] + (invest_share > 0.2)).astype(F32)
    a["rapid_n"] = (F32(MEMORY) * a["rapid_n"] + rapid).astype(F32)
    return fraud_flag, fraud_on, drawn, rapid, invest_share


def _repay(a: dict[str, np.ndarray], U: np.ndarray, fraud_on: np.ndarray, repairing: np.ndarray,
           drawn: np.ndarray, other_debt: np.ndarray, income: np.ndarray) -> tuple[np.ndarray, ...]:
    """Repayment (at least a quarter of the balance plus arrears is due), arrears, balance and debt service."""
    bal0, od0 = a["balance"], a["overdue"]
    due = 0.25 * bal0 + od0
    # a broken cash flow persists: a borrower in arrears is likelier to miss again
    # (cash stress shows elsewhere: applications, utility bills, the external score; fraudsters keep the
    # line in good standing while they use it)
    p_pay = (a["pay"]
             * np.where(od0 > 0, F32(ARREARS_PAY), F32(1.0)) * (1 - F32(RELAPSE) * np.minimum(a["late"], 2) / 2))
    p_pay = np.where(repairing & ~fraud_on, np.maximum(p_pay, F32(0.9)), p_pay)
    pays = (U[U_PAY] < p_pay) | (due <= 0)
    repaid = np.where(pays, np.minimum(bal0, np.maximum(due, a["repay"] * bal0)), 0).astype(F32)
    missed = ~pays
    a["overdue"] = np.where(pays, 0, od0 + 0.25 * bal0).astype(F32)
    a["dpd"] = np.where(pays, 0, np.minimum(a["dpd"] + 30, 3600)).astype(np.int16)
    a["late"] = (0.85 * a["late"] + missed).astype(F32)
    balance = (bal0 + drawn - repaid).astype(F32)
    a["balance"] = balance
    service = 0.25 * balance + 0.08 * other_debt
    a["service"] = service.astype(F32)
    dti = np.clip(service / income, 0, 100)
    return repaid, balance, dti


def _score(a: dict[str, np.ndarray], U: np.ndarray, Z: np.ndarray, stress: np.ndarray, lenders: np.ndarray,
           shocked: np.ndarray, apps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Utility bills paid on time, and the external score drifting to a target set by behaviour."""
    utility = np.clip(a["utility"] + F32(0.35) * (U[U_UTIL] - F32(0.5)) - 0.2 * stress, 0, 1)
    # the external score drifts to a target set by behaviour here and elsewhere
    # (a shock means arrears at other lenders and late utility bills: the score falls; arrears here
    # are the overdue factor, so they are left out of the external score to keep the causes apart)
    target = (a["score_base"] - np.maximum(lenders - 2, 0) - 60 * (1 - utility)
              - 110 * shocked)
    score = np.clip(a["score"] + 0.35 * (target - a["score"]) + F32(6.0) * Z[Z_SCORE], 300, 950).astype(F32)
    a["score_lag3"], a["score_lag2"], a["score_lag1"] = a["score_lag2"], a["score_lag1"], a["score"]
    a["score"] = score
    a["low_n"] = (F32(MEMORY) * a["low_n"] + (score < 600)).astype(F32)
    a["apps_n"] = (F32(MEMORY) * a["apps_n"] + apps).astype(F32)
    return utility, score

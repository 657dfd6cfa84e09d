"""The platform's own rules, read by the simulator and the features alike: its acceptance rule (its
risk grade of an account and the line the policy index moves), and what counts as an adverse status
(:func:`effective_status`: a maintenance suspension is not the user's risk).

The platform grades every account each month from its panel columns
(:func:`grade`) and reviews the mean grade of the last :data:`MONTHS` months
at month end (:func:`review`). In a normal period its acceptance line sits at
:data:`TOP`, where its cause rules (arrears, many lenders, a low score) act on
an account anyway. When the platform tightens its risk appetite (the policy
index rises above :data:`NEUTRAL`) the line moves in by :data:`REACH` grade
points per unit of index, and an account between the two lines - *marginal*,
one a normal period would have kept - is closed once :data:`REVIEWS`
month-end reviews in a row found it past the line (``DOMAIN.md``: policy
tightening "hits accounts that are already marginal"). A policy closure
reopens once the line in force accepts the account again.

The rule is the platform's own, so it is written once, here: the simulator's
risk engine applies it, and the snapshot features measure how far an account
sits past the line and for how many reviews (``acceptance_gap``,
``reviews_past_acceptance_line``) from panel columns of months ``<= t`` only.
A lender with another rule changes the weights and lines below.

Example:
    >>> float(line(np.float32(0.3))), round(float(line(np.float32(0.5))), 6)  # the line moves in as policy tightens
    (1.0, 0.0)
    >>> g = grade(days_past_due=np.array([0, 0, 60]), other_lenders=np.array([1, 2, 9]),
    ...           debt_to_income=np.array([0.2, 0.3, 1.0]), external_score=np.array([690.0, 640.0, 520.0]))
    >>> g.astype(float).round(2).tolist()
    [-0.95, 0.9, 10.1]
    >>> marginal(g, np.float32(0.5)).tolist()  # the last account is beyond TOP: the cause rules' business
    [False, True, False]
    >>> gap(g, np.float32(0.5)).astype(float).round(2).tolist(), gap(g, np.float32(0.3)).tolist()  # no line: not tight
    ([-0.95, 0.9, nan], [nan, nan, nan])
"""

from __future__ import annotations

import numpy as np

from riskml.factors import CAUSES
from riskml.schema import STATUS_CODE

#: Policy index at or below which the platform is not tightening (no policy closures).
NEUTRAL = 0.3
#: The acceptance line of a normal period, in grade points: beyond it the cause rules act anyway.
TOP = 1.0
#: Grade points the line moves in per unit of policy index above NEUTRAL.
REACH = 5.0
#: Months of grades the month-end review averages (a month's grade is noisy; a review is not).
MONTHS = 6
#: Month-end reviews in a row past the line before the platform closes a marginal account.
REVIEWS = 3


def grade(*, days_past_due, other_lenders, debt_to_income, external_score) -> np.ndarray:
    """The platform's risk grade of an account in a month (higher is riskier), from panel columns.

    Every 30 days past due, every 2.5 other lenders, every 0.5 of debt-to-income and every
    40 points of external score below 620 add one grade point.
    """
    return (np.asarray(days_past_due, dtype=np.float32) / np.float32(30)
            + np.float32(0.4) * np.asarray(other_lenders, dtype=np.float32)
            + np.float32(2) * np.asarray(debt_to_income, dtype=np.float32)
            + (np.float32(620) - np.asarray(external_score, dtype=np.float32)) / np.float32(40))


def review(*grades: np.ndarray) -> np.ndarray:
    """The grade the platform reviews at month end: the mean of the last :data:`MONTHS` months' grades.

    Months without data (NaN, e.g. before the history starts) are left out; all
    NaN gives NaN. ``grades`` are this month's and the previous ones' (any number).

    >>> review(np.array([1.0, 2.0]), np.array([3.0, np.nan]), np.array([np.nan, np.nan])).tolist()
    [2.0, 2.0]
    """
    total = np.zeros(np.shape(grades[0]), dtype=np.float32)
    count = np.zeros(np.shape(grades[0]), dtype=np.float32)
    for g in grades:  # a few months, each vectorised over accounts
        ok = ~np.isnan(g)
        total += np.where(ok, g, np.float32(0))
        count += ok
    with np.errstate(invalid="ignore"):
        return (total / count).astype(np.float32)


def review_grid(g: np.ndarray) -> np.ndarray:
    """:func:`review` at every row of a ``(months, accounts)`` grid of grades (rows ``<= t`` only).

    The same sums in the same order as :func:`review` of the shifted grids (bit for bit), added
    in place: months before the grid's first row add nothing rather than a zero.

    >>> g = np.array([[1.0], [np.nan], [3.0]], dtype=np.float32)
    >>> review_grid(g).ravel().tolist() == review(g, np.r_[[[np.nan]], g[:2]], np.r_[[[np.nan]] * 2, g[:1]]).ravel().tolist()
    True
    """
    g = np.asarray(g, dtype=np.float32)
    ok = ~np.isnan(g)
    values = np.where(ok, g, np.float32(0))
    total = np.zeros(g.shape, dtype=np.float32)
    count = np.zeros(g.shape, dtype=np.float32)
    for k in range(min(MONTHS, len(g))):  # a few months, each vectorised over accounts
        total[k:] += values[:len(g) - k]
        count[k:] += ok[:len(g) - k]
    with np.errstate(invalid="ignore"):
        return (total / count).astype(np.float32)


def line(policy) -> np.ndarray:
    """The acceptance line at a policy index: ``TOP`` when not tightening, lower the tighter the policy."""
    p = np.asarray(policy, dtype=np.float32)
    return (np.float32(TOP) - np.float32(REACH) * np.maximum(p - np.float32(NEUTRAL), 0)).astype(np.float32)


def tightening(policy) -> np.ndarray:
    """Whether the platform is tightening at a policy index (above :data:`NEUTRAL`, compared in float32 as the
    panel holds it)."""
    return np.asarray(policy, dtype=np.float32) > np.float32(NEUTRAL)


def marginal(g: np.ndarray, policy) -> np.ndarray:
    """Accounts the tightened line no longer accepts but a normal period would: ``line(policy) < g <= TOP``."""
    return (g > line(policy)) & (g <= np.float32(TOP))


def gap(g: np.ndarray, policy) -> np.ndarray:
    """How far past the acceptance line an account sits (grade points; negative: inside it).

    Defined only while the platform is tightening and for accounts the normal
    line accepts (``g <= TOP``); NaN otherwise. Accounts beyond ``TOP`` are
    the cause rules' business and a normal period has no policy line to be
    near, so the feature carries the policy's own effect and no account risk
    that other factors already describe.
    """
    g = np.asarray(g, dtype=np.float32)
    p = np.asarray(policy, dtype=np.float32)
    out = g - line(p)
    return np.where(tightening(p) & (g <= np.float32(TOP)), out, np.float32(np.nan)).astype(np.float32)


#: the cause code of a maintenance suspension: the platform's outage, not the user's risk
MAINTENANCE_CODE = CAUSES.index("maintenance")


def effective_status(status: np.ndarray, cause: np.ndarray | None) -> np.ndarray:
    """Status codes with maintenance suspensions counted as normal (the label rule).

    >>> effective_status(np.array([0, 1, 1, 2]), np.array([-1, MAINTENANCE_CODE, 0, 0])).tolist()
    [0, 0, 1, 2]
    """
    if cause is None:
        return status
    maint = (status == STATUS_CODE["suspended"]) & (cause == MAINTENANCE_CODE)
    return np.where(maint, np.asarray(STATUS_CODE["normal"], dtype=status.dtype), status)

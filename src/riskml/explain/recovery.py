"""The recovery side's rules: what the platform, not the model, decides for a suspended or closed line.

Platform-side factors (policy tightening, maintenance) are never a learned reason for a user's
recovery; a maintenance suspension clears by itself and a fraud closure is permanent
(``DOMAIN.md``, Recovery); the cause on record is read at each borrower's snapshot month.
Stage code: arrays and frames in, arrays out.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from riskml.schema import in_key_order

__all__ = ["PLATFORM_SIDE", "RULE_RECOVERY", "cause_at", "recovery_rule", "recovery_side"]

PLATFORM_SIDE = ("policy_tightening", "maintenance")
#: P(recovery) that the platform's own rules set (``DOMAIN.md``, Recovery): a maintenance suspension clears
#: by itself once the system is fixed; a closure for fraud or agreement violation is permanent.
RULE_RECOVERY = {"maintenance": 1.0, "agreement_violation": 0.0}


def recovery_side(contrib: np.ndarray, factor_ids: Sequence[str]) -> np.ndarray:
    """Factor contributions to P(recovery) with the platform-side factors' set to 0 (never a learned reason)."""
    return np.where(np.isin(np.asarray(factor_ids), PLATFORM_SIDE), 0.0, contrib)


def recovery_rule(status, cause, maintenance, months_in_status, explained) -> tuple[np.ndarray, np.ndarray]:
    """The rules of the recovery side: which rows the cause on record explains, and rule-set P(recovery).

    Platform-side causes (maintenance, policy tightening) and permanent ones (fraud) are explained as
    such, not as the user's behaviour (``DESIGN.md``): the cause on record is the reason. P(recovery) is
    a rule where the platform's rule fixes it and the training history rarely or never shows the case
    (an outage month, a fraud closure that reopens), so a learned probability could only smear it: a
    maintenance suspension clears by itself, a fraud closure is permanent; whether a policy closure
    reopens (the line in force) is the model's estimate. A row where no factor of the user's stands in
    the way (``explained`` false) also gets the cause on record: the notice always names why a line is
    down. Maintenance is the cause on record or, with none on record, a suspension that began this very
    month with the maintenance flag set.

    Returns:
        ``(factor, p_recovery)``: the reason's factor id (None: the model's reasons stand) and the
        rule's P(recovery) (NaN: the model's).

    >>> f, p = recovery_rule(["suspended", "closed", "closed", "closed", "suspended"],
    ...                      [None, "agreement_violation", "overdue", "policy_tightening", "abnormal_use"],
    ...                      [1, 0, 0, 0, 0], [1, 9, 3, 2, 4], [True, True, True, True, False])
    >>> f.tolist(), p.tolist()
    (['maintenance', 'agreement_violation', None, 'policy_tightening', 'abnormal_use'], [1.0, 0.0, nan, nan, nan])
    """
    status, cause = np.asarray(status, dtype=object), pd.Series(np.asarray(cause, dtype=object)).astype(object)
    unknown = cause.isna().to_numpy()
    cause = cause.fillna("").to_numpy()
    flagged = (np.asarray(maintenance, dtype=float) > 0) & (np.asarray(months_in_status, dtype=float) <= 1)
    maint = (status == "suspended") & ((cause == "maintenance") | (unknown & flagged))
    fraud = (status == "closed") & (cause == "agreement_violation")
    policy = (status == "closed") & (cause == "policy_tightening")
    silent = ~np.asarray(explained, dtype=bool) & ~unknown
    factor = np.select([maint, fraud, policy, silent], ["maintenance", "agreement_violation", "policy_tightening",
                                                        cause], None).astype(object)
    p = np.select([maint, fraud], [RULE_RECOVERY["maintenance"], RULE_RECOVERY["agreement_violation"]], np.nan)
    return factor, p


def cause_at(panel: pd.DataFrame, keys: pd.DataFrame) -> np.ndarray:
    """The cause on record at each key's month (NA without a ``cause`` column)."""
    if "cause" not in panel.columns:
        return np.full(len(keys), None, dtype=object)
    bid, month = panel["borrower_id"].to_numpy(), panel["month"].to_numpy()
    step = bid[1:] != bid[:-1]
    last = np.flatnonzero(np.r_[step, True]) if len(bid) else np.zeros(0, dtype=np.int64)
    at_key = keys["month"].to_numpy()
    if (len(last) == len(keys) and (bid[last] == keys["borrower_id"].to_numpy()).all()
            and (month[last] <= at_key).all() and in_key_order(bid, month, strict=True)):
        # rows sorted by (borrower, month), none after its key month (a validated batch bucket): the last
        # row of each borrower is its key month's, or the borrower has no row that month
        at = month[last] == at_key
        cause = panel["cause"].iloc[last].to_numpy(dtype=object)  # pick, then convert: few rows
        return np.where(at & pd.notna(cause), cause, None)
    got = keys[["borrower_id", "month"]].merge(panel[["borrower_id", "month", "cause"]], how="left",
                                               on=["borrower_id", "month"])
    return got["cause"].astype(object).to_numpy()

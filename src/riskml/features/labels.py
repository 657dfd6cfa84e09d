"""Prediction targets of a snapshot: which accounts get one and their labels.

A snapshot at month ``t`` looks ``H`` months ahead (the horizon). Labels read
months ``t+1 .. t+H`` only; features (``riskml.features``) read months ``<= t``
only. Status codes follow ``schema.STATUSES``: normal 0 < suspended 1 < closed 2,
so "the worst status" is a maximum.

Maintenance is not adverse: a month suspended with cause ``maintenance`` (a
platform outage, "not the user's risk" in ``DOMAIN.md``; it ends by itself)
counts as normal for the worst-status labels, so it is never a first-change
cause either (:func:`effective_status`). The simulator's oracle applies the
same rule, so that model and oracle aim at the same label.

Example:
    >>> TARGETS["adverse_3m"].classes
    ('normal', 'adverse')
    >>> get_target("status_3m").horizon
    3
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from riskml.exceptions import ConfigError, whole_number
from riskml.platform import effective_status
from riskml.schema import STATUS_CODE


@dataclass(frozen=True)
class Target:
    """A prediction target.

    Attributes:
        name: the target id (a config value).
        horizon: default number of months ahead the label looks (``H``).
        eligible: account states at ``t`` that get a snapshot.
        classes: class names, in label order (label ``k`` is ``classes[k]``).
        risk_sign: +1 when the higher classes are the worse outcome (risk
            features push towards them), -1 when they are the better one
            (recovery): it turns the features' risk directions into the
            monotone constraints of this target's model.
    """

    name: str
    horizon: int
    eligible: tuple[str, ...]
    classes: tuple[str, ...]
    risk_sign: int = +1


TARGETS: dict[str, Target] = {
    # worst status over t+1..t+H of an account normal at t
    "status_3m": Target("status_3m", 3, ("normal",), ("normal", "suspended", "closed")),
    # suspended or closed at any month of t+1..t+H
    "adverse_3m": Target("adverse_3m", 3, ("normal",), ("normal", "adverse")),
    # an account suspended or closed at t is normal again at some month of t+1..t+H
    "recovery_6m": Target("recovery_6m", 6, ("suspended", "closed"), ("not_recovered", "recovered"), risk_sign=-1),
}


def get_target(name: str) -> Target:
    """Look a target up by name; :class:`ConfigError` names the valid ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ConfigError("target", name, f"one of {list(TARGETS)}") from None


def check_horizon(horizon: object) -> int:
    """Validate a horizon (a positive whole number of months)."""
    return whole_number("horizon", horizon, 1, what="a whole number of months")


def eligible_codes(target: Target) -> np.ndarray:
    """Status codes (``schema.STATUS_CODE``) that get a snapshot for ``target``."""
    return np.array([STATUS_CODE[s] for s in target.eligible], dtype=np.int8)


def make_labels(
    status: np.ndarray, cause: np.ndarray | None, pos: np.ndarray, *, target: Target, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the snapshots at grid rows ``pos`` (vectorised over borrowers).

    Args:
        status: ``(n_months, n_borrowers)`` int8 status codes, -1 where the month
            is missing.
        cause: same shape, int8 codes into ``factors.CAUSES`` (-1: none), or
            ``None`` when the panel has no ``cause`` column.
        pos: grid rows of the snapshot months; ``pos + horizon`` must be rows.
        target: the target.
        horizon: months ahead (``H``).

    Returns:
        ``(y, cause_code)``, each ``(len(pos), n_borrowers)`` int8. ``y`` is -1
        where a month of ``t+1..t+H`` is missing (no label). ``cause_code`` is
        the cause at the first month of ``t+1..t+H`` whose status is not normal
        (status targets), or the cause in force at ``t`` (``recovery_6m``: why
        the account is down); -1 when there is none. For the status targets a
        maintenance suspension counts as normal (:func:`effective_status`).
    """
    if target.name != "recovery_6m":
        status = effective_status(status, cause)
    future = np.stack([status[pos + h] for h in range(1, horizon + 1)])  # (H, n_pos, n)
    missing = (future < 0).any(axis=0)
    if target.name == "recovery_6m":
        y = (future == STATUS_CODE["normal"]).any(axis=0).astype(np.int8)
        why = cause[pos] if cause is not None else np.full(y.shape, -1, np.int8)
    else:
        worst = future.max(axis=0).astype(np.int8)
        y = worst if len(target.classes) == 3 else (worst > 0).astype(np.int8)
        why = np.full(y.shape, -1, np.int8)
        if cause is not None:
            # walk the horizon backwards so that the earliest change wins
            for h in range(horizon, 0, -1):
                changed = future[h - 1] > 0
                why = np.where(changed, cause[pos + h], why)
    y[missing] = -1
    return y, why.astype(np.int8)

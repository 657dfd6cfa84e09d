"""The documented factors of a credit-line suspension or closure, as data.

This module is the spine of riskml (see ``DESIGN.md``): the simulator draws
causes from it, the feature builder tags every feature with its factor, the
explainer groups contributions by it and the advice comes from it. Nothing
else hard-codes a factor id.

Example:
    >>> from riskml.factors import CATALOGUE, factor_of_column
    >>> CATALOGUE["overdue"].actionable
    True
    >>> factor_of_column("days_past_due")
    'overdue'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Signal:
    """One observable panel column through which the platform sees a factor.

    Attributes:
        column: the panel column.
        direction: +1 when risk rises with the value, -1 when it falls, 0 when
            neither (used for LightGBM monotone constraints).
        rectified: the value the column takes once the user follows the
            factor's advice (the what-if); ``None`` when the user cannot
            change it.
    """

    column: str
    direction: int
    rectified: float | None = None


@dataclass(frozen=True)
class Factor:
    """A documented cause of suspension or closure (``DOMAIN.md``)."""

    id: str
    name: str
    description: str
    outcome: str
    actionable: bool
    advice: str
    signals: tuple[Signal, ...] = field(default_factory=tuple)
    documented: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(s.column for s in self.signals)


_FACTORS: tuple[Factor, ...] = (
    Factor(
        id="overdue",
        name="Overdue repayment",
        description="Repayments missed: days past due, the overdue amount and how often it happened.",
        outcome="limit cut or suspension; long or large arrears lead to permanent closure",
        actionable=True,
        advice="Repay the overdue balance at once and never be late again.",
        signals=(
            Signal("overdue_amount", +1, 0.0),
            Signal("days_past_due", +1, 0.0),
        ),
    ),
    Factor(
        id="multi_lending",
        name="Borrowing at many lenders",
        description="Loans at many other platforms, recent credit applications, high debt-to-income.",
        outcome="suspension (restricted)",
        actionable=True,
        advice="Borrow at fewer other lenders, stop frequent small-loan applications and lower your debt ratio.",
        signals=(
            Signal("other_lenders", +1, 1.0),
            Signal("recent_applications", +1, 0.0),
            Signal("debt_to_income", +1, 0.3),
        ),
    ),
    Factor(
        id="abnormal_use",
        name="Abnormal use of the money",
        description="Drawn funds moved to investment or securities accounts; many draws in a short interval.",
        outcome="suspension; closure when repeated",
        actionable=True,
        advice="Stop investing borrowed money and stop frequent short-interval draws; use the line for consumption.",
        signals=(
            Signal("invest_share", +1, 0.0),
            Signal("rapid_draws", +1, 0.0),
        ),
    ),
    Factor(
        id="score_decline",
        name="Falling external credit score",
        description="The external credit score is low or has dropped recently, e.g. after overdue at other lenders.",
        outcome="limit cut or suspension",
        actionable=True,
        advice="Raise your external score: pay utility bills on time and use credit cards responsibly.",
        signals=(
            Signal("external_score", -1, 700.0),
            Signal("utility_on_time", -1, 1.0),
        ),
    ),
    Factor(
        id="policy_tightening",
        name="Platform risk policy tightened",
        description="The platform tightened its risk appetite (macro economy, regulation) and closes marginal accounts.",
        outcome="closure of marginal accounts in tightening periods",
        actionable=False,
        advice="Not caused by your behaviour alone: the platform tightened its policy. Keep stable income and "
        "finances; the bar may move back.",
        signals=(Signal("policy_index", +1, None),),
    ),
    Factor(
        id="agreement_violation",
        name="Fraud or agreement violation",
        description="Fake transactions, identity or device anomalies, illegal activity: a breach of the user agreement.",
        outcome="immediate, permanent closure",
        actionable=False,
        advice="Closures for agreement violations are permanent; appeal only through the platform's official channels.",
        signals=(Signal("fraud_flag", +1, None),),
    ),
    Factor(
        id="maintenance",
        name="System maintenance",
        description="A platform upgrade or outage window; not the user's risk.",
        outcome="short suspension that ends by itself",
        actionable=False,
        advice="Nothing to do: the line comes back by itself once the system is fixed.",
        signals=(Signal("maintenance", +1, None),),
    ),
    Factor(
        id="other",
        name="Account profile and other signals",
        description="Limit, usage, income and consumption: signals that belong to no documented cause.",
        outcome="none by itself",
        actionable=False,
        advice="Keep stable income and stable financial behaviour; check your central-bank credit report.",
        signals=(
            Signal("credit_limit", 0, None),
            Signal("drawn", 0, None),
            Signal("repaid", 0, None),
            Signal("balance", 0, None),
            Signal("income", -1, None),
            Signal("consumption", 0, None),
        ),
        documented=False,
    ),
)

#: Every factor by id, in catalogue order (read-only).
CATALOGUE: Mapping[str, Factor] = MappingProxyType({f.id: f for f in _FACTORS})

#: The seven documented causes, in catalogue order.
CAUSES: tuple[str, ...] = tuple(f.id for f in _FACTORS if f.documented)

#: The pseudo-factor for signals that belong to no documented cause.
OTHER = "other"

_COLUMN_FACTOR = {s.column: f.id for f in _FACTORS for s in f.signals}
_COLUMN_SIGNAL = {s.column: s for f in _FACTORS for s in f.signals}


def factor_ids() -> tuple[str, ...]:
    """All factor ids, the documented causes first and ``other`` last."""
    return tuple(CATALOGUE)


def factor_of_column(column: str) -> str:
    """The factor a panel column belongs to (``other`` for unknown columns)."""
    return _COLUMN_FACTOR.get(column, OTHER)


def signal_of_column(column: str) -> Signal | None:
    """The catalogue's :class:`Signal` for a panel column, or ``None``."""
    return _COLUMN_SIGNAL.get(column)


def get(factor_id: str) -> Factor:
    """Look a factor up by id, with a clear error for an unknown one."""
    try:
        return CATALOGUE[factor_id]
    except KeyError:
        raise KeyError(f"unknown factor id {factor_id!r}; expected one of {list(CATALOGUE)}") from None

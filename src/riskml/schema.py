"""Column contracts of the panel, the truth table and the predictions.

The panel is one row per (borrower_id, month). The simulator writes it and the
batch predictor validates its input against the same contract, so both live
here. Ground truth a platform would not publish (hidden borrower type, traits,
oracle probabilities) is never a panel column.

Example:
    >>> import pandas as pd
    >>> from riskml.schema import PANEL, missing_columns
    >>> missing_columns(pd.DataFrame(columns=["borrower_id"]), PANEL.required)[:2]
    ['month', 'credit_limit']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from riskml.exceptions import SchemaError
from riskml.factors import CAUSES

STATUSES: tuple[str, ...] = ("normal", "suspended", "closed")
STATUS_CODE: Mapping[str, int] = {s: i for i, s in enumerate(STATUSES)}
BORROWER_TYPES: tuple[str, ...] = ("steady", "stretched", "speculator", "fraudster", "shock_prone")


@dataclass(frozen=True)
class Column:
    """One column of a contract: its dtype, the valid range and its meaning."""

    name: str
    dtype: str
    description: str
    lo: float | None = None
    hi: float | None = None
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Contract:
    """An ordered set of columns with the subset an input must carry."""

    name: str
    columns: tuple[Column, ...]
    required: tuple[str, ...]

    def __getitem__(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def dtypes(self) -> dict[str, object]:
        return {c.name: (pd.CategoricalDtype(list(c.categories)) if c.categories else c.dtype) for c in self.columns}


_F, _I8, _I16, _I32, _I64 = "float32", "int8", "int16", "int32", "int64"

#: Observable behaviour per borrower-month (what features may read).
BEHAVIOUR: tuple[Column, ...] = (
    Column("credit_limit", _F, "credit limit in force this month (cuts are a platform decision)", 0),
    Column("drawn", _F, "amount drawn this month", 0),
    Column("repaid", _F, "amount repaid this month", 0),
    Column("balance", _F, "outstanding balance at month end", 0),
    Column("overdue_amount", _F, "amount past due at month end", 0),
    Column("days_past_due", _I16, "days the oldest unpaid amount is past due", 0, 3650),
    Column("other_lenders", _I16, "other platforms with a loan outstanding", 0, 200),
    Column("recent_applications", _I16, "credit applications elsewhere this month", 0, 200),
    Column("debt_to_income", _F, "total debt service over income", 0, 100),
    Column("invest_share", _F, "share of drawn money moved to investment/securities accounts", 0, 1),
    Column("rapid_draws", _I16, "draws made within short intervals this month", 0, 1000),
    Column("external_score", _F, "external credit score", 300, 950),
    Column("utility_on_time", _F, "share of utility bills paid on time this month", 0, 1),
    Column("income", _F, "monthly income", 0),
    Column("consumption", _F, "monthly consumption spending", 0),
    Column("fraud_flag", _I8, "fraud / identity / device anomaly flag", 0, 1),
    Column("policy_index", _F, "platform-wide risk-policy tightness (0 loose .. 1 tight)", 0, 1),
    Column("maintenance", _I8, "platform outage window this month", 0, 1),
)

PANEL = Contract(
    name="panel",
    columns=(
        Column("borrower_id", _I64, "borrower identifier", 0),
        Column("month", _I32, "month index from the start of the history", 0),
        *BEHAVIOUR,
        Column("status", "category", "account state at month end", categories=STATUSES),
        Column("cause", "category", "factor id of the decision in force (null: none)",
               categories=CAUSES),
    ),
    required=("borrower_id", "month", *(c.name for c in BEHAVIOUR), "status"),
)

TRUTH = Contract(
    name="truth",
    columns=(
        Column("borrower_id", _I64, "borrower identifier", 0),
        Column("borrower_type", "category", "hidden borrower type", categories=BORROWER_TYPES),
    ),
    required=("borrower_id", "borrower_type"),
)

def prediction_schema(k: int) -> pa.Schema:
    """The prediction contract (one row per borrower) with ``k`` reasons: column
    types fixed so every part of a batch and every run agree."""
    fields = [("borrower_id", pa.int64()), ("as_of_month", pa.int32()), ("status", pa.string())]
    fields += [(c, pa.float64()) for c in ("p_normal", "p_suspended", "p_closed", "p_adverse", "p_recovery_6m")]
    fields += [("risk_band", pa.string()), *reason_fields(k)]
    fields += [("model_name", pa.string()), ("model_version", pa.string()), ("status_model_version", pa.string()),
               ("recovery_model_version", pa.string())]
    return pa.schema(fields)


def reason_fields(k: int) -> list[tuple[str, pa.DataType]]:
    """The columns of ``k`` reasons, as every prediction output (histories or tables) has them."""
    fields: list[tuple[str, pa.DataType]] = []
    for r in range(1, k + 1):
        fields += [(f"reason_{r}", pa.string()), (f"reason_{r}_label", pa.string()),
                   (f"reason_{r}_contribution", pa.float64()), (f"reason_{r}_actionable", pa.bool_()),
                   (f"reason_{r}_advice", pa.string()), (f"reason_{r}_p_after", pa.float64())]
    return fields


def class_probabilities(p: np.ndarray) -> np.ndarray:
    """Class probabilities as ``(n, n_classes)``: a binary model's ``(n,)`` P(class 1) becomes two columns.

    >>> class_probabilities(np.array([0.25])).tolist()
    [[0.75, 0.25]]
    """
    p = np.asarray(p, dtype=np.float64)
    return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p


def missing_columns(df: pd.DataFrame, required: Iterable[str]) -> list[str]:
    """The required columns ``df`` lacks, in contract order."""
    have = set(df.columns)
    return [c for c in required if c not in have]


def require_columns(df: pd.DataFrame, contract: Contract, *, source: str) -> None:
    """Raise :class:`SchemaError` naming the source and every missing column."""
    missing = missing_columns(df, contract.required)
    if missing:
        raise SchemaError(
            f"{source}: missing required {contract.name} column(s) {missing}; "
            f"expected at least {list(contract.required)}"
        )


def cast(df: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Return ``df`` with the contract's columns in order and dtypes (others kept after)."""
    dtypes = contract.dtypes
    present = [c for c in contract.names if c in df.columns]
    rest = [c for c in df.columns if c not in dtypes]
    out = df[present + rest].copy()
    for c in present:
        out[c] = out[c].astype(dtypes[c])
    return out


def coerce_numeric(raw: pd.DataFrame, contract: Contract = PANEL) -> tuple[pd.DataFrame, pd.Series]:
    """The contract's columns of a raw batch, numbers as float64 and categories as stripped strings.

    Returns the frame and the first problem per row (``<NA>`` for none) for a
    required numeric cell that is not a number. This is the one place the
    batch path turns raw cells into numbers; :func:`row_problems` then reads
    the numbers as they are.
    """
    out = pd.DataFrame(index=raw.index)
    reason = pd.Series(pd.NA, index=raw.index, dtype="string")
    for col in contract.columns:
        if col.name not in raw.columns:
            continue
        s = raw[col.name]
        if col.categories:
            out[col.name] = s.astype("string").str.strip()
            continue
        num = pd.to_numeric(s, errors="coerce").astype("float64")
        bad = (num.isna() & s.notna()).to_numpy()
        if col.name in contract.required:
            reason[bad & reason.isna().to_numpy()] = f"{col.name} is not numeric"
        out[col.name] = num
    return out, reason


def row_problems(df: pd.DataFrame, contract: Contract = PANEL) -> pd.Series:
    """The first problem of every row, or ``<NA>`` for a good row (vectorised).

    Checks per row: missing id or month, non-numeric or missing values in the
    required numeric columns, values out of their valid range, unknown status,
    and duplicate (borrower_id, month) keys.
    """
    reason = pd.Series(pd.NA, index=df.index, dtype="string")

    def flag(mask: np.ndarray | pd.Series, text: str) -> None:
        mask = np.asarray(mask, dtype=bool) & reason.isna().to_numpy()
        if mask.any():
            reason[mask] = text

    for col in contract.columns:
        if col.name not in df.columns or col.name not in contract.required:
            continue
        s = df[col.name]
        if col.categories:
            flag(s.isna(), f"{col.name} is missing")
            flag(~s.isna() & ~s.astype("string").isin(col.categories),
                 f"{col.name} not one of {list(col.categories)}")
            continue
        num = s if pd.api.types.is_numeric_dtype(s.dtype) else pd.to_numeric(s, errors="coerce")
        flag(s.isna(), f"{col.name} is missing")
        flag(num.isna() & s.notna(), f"{col.name} is not numeric")
        if col.lo is not None:
            flag(num < col.lo, f"{col.name} below {col.lo:g}")
        if col.hi is not None:
            flag(num > col.hi, f"{col.name} above {col.hi:g}")
        if col.dtype.startswith("int"):
            flag(num.notna() & (num != np.floor(num)), f"{col.name} is not a whole number")
    if {"borrower_id", "month"} <= set(df.columns):
        dup = df.duplicated(["borrower_id", "month"], keep=False).to_numpy()
        flag(dup, "duplicate (borrower_id, month)")
    return reason

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

import functools
from dataclasses import dataclass
from typing import Iterable, Mapping

import numba as nb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from riskml.cells import exact_integers, to_numpy
from riskml.exceptions import SchemaError
from riskml.factors import CAUSES

STATUSES: tuple[str, ...] = ("normal", "suspended", "closed")
STATUS_CODE: Mapping[str, int] = {s: i for i, s in enumerate(STATUSES)}


@functools.lru_cache(maxsize=64)
def category_dtype(values: tuple[str, ...]) -> pd.CategoricalDtype:
    """The categorical dtype of ``values``, made once: ``Categorical.from_codes(codes, categories=...)``
    builds the categories' index anew on every call (0.1 ms, a dozen times per scored bucket)."""
    return pd.CategoricalDtype(list(values))


STATUS_DTYPE = category_dtype(STATUSES)
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
#: the last month index a panel may hold: a century of monthly history
MAX_MONTH = 1200

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
        # bounded: a month index far out (a YYYYMM month, 2e9) would make every grid that long
        Column("month", _I32, "month index from the start of the history", 0, MAX_MONTH),
        Column("months_on_book", _I32, "months since the account opened (0: its opening month); optional, "
               "taken as months since the borrower's first row when absent", 0, MAX_MONTH),
        *BEHAVIOUR,
        Column("status", "category", "account state at month end", categories=STATUSES),
        Column("cause", "category", "factor id of the decision in force (null: none)",
               categories=CAUSES),
    ),
    required=("borrower_id", "month", *(c.name for c in BEHAVIOUR), "status"),
)

#: A lender's own behaviour column (schema ``columns: {name: {factor: ...}}``) is carried under this prefix
#: beside the contract's columns: it gets a generic feature plan (``features.windows.signal_specs``).
SIGNAL_PREFIX = "lender__"

#: What every panel must carry, in any schema: the behaviour columns are a lender's subset (features that
#: need a column it lacks are left out of its models).
KEYS = Contract(name="panel", columns=PANEL.columns, required=("borrower_id", "month", "status"))

TRUTH = Contract(
    name="truth",
    columns=(
        Column("borrower_id", _I64, "borrower identifier", 0),
        Column("borrower_type", "category", "hidden borrower type", categories=BORROWER_TYPES),
    ),
    required=("borrower_id", "borrower_type"),
)

#: Text columns with a few distinct values (a factor id, its label, its advice): dictionary-encoded,
#: so a million rows hold a handful of strings and readers get categoricals, not a string per row.
TEXT_CODES = pa.dictionary(pa.int32(), pa.string())


def prediction_schema(k: int) -> pa.Schema:
    """The prediction contract (one row per borrower) with ``k`` reasons: column
    types fixed so every part of a batch and every run agree. The reason
    columns ``reason_i``, ``reason_i_label`` and ``reason_i_advice`` are
    dictionary-encoded strings (:data:`TEXT_CODES`)."""
    fields = [("borrower_id", pa.int64()), ("as_of_month", pa.int32()), ("status", pa.string())]
    fields += [(c, pa.float64()) for c in ("p_normal", "p_suspended", "p_closed", "p_adverse", "score_points",
                                           "p_recovery_6m")]
    fields += [("risk_band", pa.string()), *reason_fields(k)]
    fields += [("model_name", pa.string()), ("model_version", pa.string())]
    return pa.schema(fields)


def reason_fields(k: int) -> list[tuple[str, pa.DataType]]:
    """The columns of ``k`` reasons, as every prediction output (histories or tables) has them."""
    fields: list[tuple[str, pa.DataType]] = []
    for r in range(1, k + 1):
        fields += [(f"reason_{r}", TEXT_CODES), (f"reason_{r}_label", TEXT_CODES),
                   (f"reason_{r}_contribution", pa.float64()), (f"reason_{r}_actionable", pa.bool_()),
                   (f"reason_{r}_advice", TEXT_CODES), (f"reason_{r}_p_after", pa.float64())]
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


def problem_texts(contract: Contract = PANEL) -> tuple[str, ...]:
    """The row problems :func:`problem_codes` can name, by code (code 0: no problem)."""
    texts = [""]
    for col in contract.columns:
        if col.name not in contract.required:
            continue
        texts += [f"{col.name} is missing"]
        if col.categories:
            texts += [f"{col.name} not one of {list(col.categories)}"]
            continue
        texts += [f"{col.name} is not numeric"]
        texts += [f"{col.name} below {col.lo:g}"] if col.lo is not None else []
        texts += [f"{col.name} above {col.hi:g}"] if col.hi is not None else []
        texts += [f"{col.name} is not a whole number"] if col.dtype.startswith("int") else []
    return (*texts, "duplicate (borrower_id, month)")


PANEL_PROBLEMS = problem_texts(PANEL)


def coerce_columns(table: pa.Table, contract: Contract = PANEL) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The contract's columns of a raw Arrow batch as numpy arrays, and each row's first
    "is not numeric" problem (a code of :func:`problem_texts`, 0 for none).

    Numbers keep a numeric Arrow type (no copy where possible; missing values become NaN);
    text (CSV cells) is parsed as pandas does. Categories become int8 codes into
    ``col.categories``: -1 for a missing value, -2 for an unknown one (after stripping
    spaces). This is the one place the batch path turns raw cells into numbers.
    """
    texts = problem_texts(contract)
    first = np.zeros(table.num_rows, dtype=np.int16)
    out: dict[str, np.ndarray] = {}
    for col in contract.columns:
        if col.name not in table.column_names:
            continue
        arr = table.column(col.name)
        if col.categories:
            out[col.name] = _category_codes(arr, col.categories)
            continue
        if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            out[col.name] = to_numpy(arr)  # nulls read as NaN
            continue
        if col.dtype.startswith("int"):
            values, ok = exact_integers(arr)
            if ok.all():  # every cell a whole number: exact (ids beyond 2**53 included)
                out[col.name] = values
                continue
        text = arr.to_pandas()
        num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if col.name in contract.required:
            bad = np.isnan(num) & text.notna().to_numpy()
            first[bad & (first == 0)] = texts.index(f"{col.name} is not numeric")
        out[col.name] = num
    return out, first


def _category_codes(arr: pa.ChunkedArray, categories: tuple[str, ...]) -> np.ndarray:
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr)
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if isinstance(arr, pa.ChunkedArray):  # no chunks at all
        return np.zeros(0, dtype=np.int8)
    # a few distinct values, matched without regard to case or spaces ('Normal ' is normal): a lender's
    # capitalised codes would otherwise reject every row
    values = pc.utf8_lower(pc.utf8_trim_whitespace(arr.dictionary.cast(pa.string()))).to_pylist()
    lookup = np.array([categories.index(v) if v in categories else -2 for v in values] + [-1], dtype=np.int8)
    idx = arr.indices
    if pa.types.is_unsigned_integer(idx.type):
        idx = idx.cast(pa.int64())
    if idx.null_count:  # filled in Arrow: numpy would see nulls as NaN in a float copy (1 ms per 100k rows)
        idx = pc.fill_null(idx, pa.scalar(-1, idx.type))
    return lookup[idx.to_numpy()]  # a null index (-1) picks the appended -1


@nb.njit(cache=True, nogil=True)
def _flag_numbers(v, code, missing, lo, below, hi, above, whole):  # pragma: no cover - numba
    """The first problem of each row of numeric column ``v`` not flagged before: missing, below ``lo``,
    above ``hi``, not whole, in that order; a code of 0 skips its check."""
    for i in range(len(v)):
        if code[i] != 0:
            continue
        x = v[i]
        if missing != 0 and np.isnan(x):
            code[i] = missing
        elif below != 0 and x < lo:
            code[i] = below
        elif above != 0 and x > hi:
            code[i] = above
        elif whole != 0 and np.isfinite(x) and x != np.floor(x):
            code[i] = whole


def in_key_order(*keys: np.ndarray, strict: bool = False) -> bool:
    """Rows in lexicographic order of ``keys`` (one to three arrays): never going back, and with
    ``strict`` no key twice; a missing (NaN) key is never in order. One compiled pass (numpy's masked
    comparisons of the later keys took 2.5 ms per 500k-row bucket)."""
    if not 1 <= len(keys) <= 3:
        raise ValueError(f"in_key_order takes 1 to 3 keys, not {len(keys)}")
    dtype = np.float64 if any(np.asarray(k).dtype.kind == "f" for k in keys) else np.int64  # two signatures
    ks = [np.asarray(k, dtype=dtype) for k in keys]
    none = np.zeros(0, dtype=dtype)
    return bool(_in_key_order(*ks, *[none] * (3 - len(ks)), strict))


@nb.njit(cache=True, nogil=True)
def _in_key_order(a, b, c, strict):  # pragma: no cover - numba; b or c of length 0: not a key
    for i in range(1, len(a)):
        if a[i] != a[i - 1]:
            if not a[i] > a[i - 1]:  # back, or NaN
                return False
            continue
        if len(b):
            if b[i] != b[i - 1]:
                if not b[i] > b[i - 1]:
                    return False
                continue
            if len(c) and c[i] != c[i - 1]:
                if not c[i] > c[i - 1]:
                    return False
                continue
        if strict:  # every key equal: a key twice
            return False
    return True


def problem_codes(cols: dict[str, np.ndarray], contract: Contract = PANEL,
                  first: np.ndarray | None = None) -> np.ndarray:
    """The first problem of every row as a code of :func:`problem_texts` (0: a good row).

    ``cols`` as :func:`coerce_columns` gives them; ``first`` holds problems found
    before (they win). Checks per row, in contract order: missing values, values
    out of their valid range, whole numbers, unknown categories; then duplicate
    (borrower_id, month) keys (every copy is flagged).
    """
    texts = problem_texts(contract)
    n = len(next(iter(cols.values()))) if cols else 0
    code = np.zeros(n, dtype=np.int16) if first is None else first.copy()

    def flag(mask: np.ndarray, text: str) -> None:
        if mask.any():  # the common case, a clean column, costs one pass
            code[mask & (code == 0)] = texts.index(text)

    with np.errstate(invalid="ignore"):
        for col in contract.columns:
            if col.name not in cols or col.name not in contract.required:
                continue
            v = cols[col.name]
            if col.categories:
                flag(v == -1, f"{col.name} is missing")
                flag(v == -2, f"{col.name} not one of {list(col.categories)}")
                continue
            if v.dtype.kind not in "fiu":
                v = v.astype(np.float64)
            # the checks in one compiled pass per column (numpy: a pass and a mask per check); 0: no check
            is_float, lo, hi = v.dtype.kind == "f", col.lo, col.hi
            bound = v.dtype.type if is_float else np.float64  # numpy compares a float32 column in float32
            _flag_numbers(v, code, missing=texts.index(f"{col.name} is missing") if is_float else 0,
                          lo=bound(lo or 0), below=0 if lo is None else texts.index(f"{col.name} below {lo:g}"),
                          hi=bound(hi or 0), above=0 if hi is None else texts.index(f"{col.name} above {hi:g}"),
                          whole=texts.index(f"{col.name} is not a whole number")
                          if is_float and col.dtype.startswith("int") else 0)
    if "borrower_id" in cols and "month" in cols and n > 1:
        bid, month = cols["borrower_id"], cols["month"]
        if in_key_order(bid, month, strict=True):
            dup = np.zeros(n, dtype=bool)  # strictly sorted by (borrower, month): no key twice
        else:
            order = np.lexsort((month, bid))
            same = (bid[order][1:] == bid[order][:-1]) & (month[order][1:] == month[order][:-1])
            dup = np.zeros(n, dtype=bool)
            dup[order[1:][same]] = dup[order[:-1][same]] = True
        flag(dup, "duplicate (borrower_id, month)")
    return code


def row_problems(df: pd.DataFrame, contract: Contract = PANEL) -> pd.Series:
    """The first problem of every row of a frame as text, or ``<NA>`` for a good row (vectorised)."""
    text = {c: "string" for c in df.columns if df[c].dtype == object}  # mixed cells: parsed like CSV text
    cols, first = coerce_columns(pa.Table.from_pandas(df.astype(text), preserve_index=False), contract)
    code = problem_codes(cols, contract, first)
    texts = np.asarray(problem_texts(contract), dtype=object)
    return pd.Series(np.where(code > 0, texts[code], None), index=df.index, dtype="string")

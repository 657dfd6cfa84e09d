"""Panel -> time-major month grids, the layout every snapshot feature reads.

A behaviour column becomes a ``(n_grid_months, n_borrowers)`` float32 array
(one row per month, one column per borrower) so that a feature at month ``t``
is a handful of whole-row numpy operations, vectorised over borrowers. The
first ``pad`` rows are NaN: a trailing window that starts before a borrower's
history then reads "no data" instead of going out of bounds, and the code is
the same for every snapshot month.

Two alignments:
- **left** (training panels): grid row ``pad + m - month0`` holds month ``m``.
  A sorted regular grid (every borrower has months ``0..T-1``) is a reshape;
  anything else is scattered by (borrower, month).
- **right** (prediction input, ragged histories): each borrower's anchor month
  (its last month, or ``as_of``) sits on the last grid row; shorter histories
  are NaN-padded on the left, later months are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskml.exceptions import SchemaError
from riskml.factors import CAUSES
from riskml.schema import BEHAVIOUR, SIGNAL_PREFIX, STATUSES


@dataclass
class Layout:
    """Where each panel row lands in the grid.

    Attributes:
        ids: borrower ids, one per grid column, ascending.
        n_rows: grid rows, the ``pad`` leading NaN rows included.
        pad: leading NaN rows (the longest trailing window).
        month_of_row0: month at grid row ``pad`` (left alignment) or ``None``.
        anchor: per borrower, the month at the last grid row (right alignment).
        months: months per borrower of a sorted regular panel (reshape), else ``None``.
        rows, cols, grid_rows: scatter indices (panel row, borrower column,
            grid row) grouped by borrower; ``starts[b]`` is borrower ``b``'s first entry.
    """

    ids: np.ndarray
    n_rows: int
    pad: int
    month_of_row0: int | None = None
    anchor: np.ndarray | None = None
    months: int | None = None
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    grid_rows: np.ndarray | None = None
    starts: np.ndarray | None = None

    @property
    def n_borrowers(self) -> int:
        return len(self.ids)

    def grid(self, values: np.ndarray, b0: int, b1: int, *, fill: float = np.nan,
             dtype: type = np.float32) -> np.ndarray:
        """The ``(n_rows, b1 - b0)`` grid of one panel column for borrowers ``b0:b1``."""
        out = np.full((self.n_rows, b1 - b0), fill, dtype=dtype)
        if self.months is not None:
            t = self.months
            out[self.pad:] = values[b0 * t:b1 * t].reshape(b1 - b0, t).T
        else:
            s = slice(self.starts[b0], self.starts[b1])
            out[self.grid_rows[s], self.cols[s] - b0] = values[self.rows[s]]
        return out


def _regular_months(bid: np.ndarray, month: np.ndarray) -> int | None:
    """``T`` when the panel is sorted by borrower with months ``0..T-1`` each, else ``None``."""
    if len(month) == 0:
        return None
    t = int(month.max()) + 1
    if len(month) % t:
        return None
    m = month.reshape(-1, t)
    b = bid.reshape(-1, t)
    if not (m == np.arange(t)).all() or not (b == b[:, :1]).all():
        return None
    first = b[:, 0]
    return t if (first[1:] > first[:-1]).all() else None


def _sorted_entries(bid: np.ndarray, month: np.ndarray, source: str):
    """Panel rows ordered by (borrower, month), borrower ids and group starts."""
    order = np.lexsort((month, bid))
    b, m = bid[order], month[order]
    dup = (b[1:] == b[:-1]) & (m[1:] == m[:-1])
    if dup.any():
        i = int(order[1:][dup][0])
        raise SchemaError(f"{source}: row {i}: duplicate (borrower_id, month) = ({int(bid[i])}, {int(month[i])}); "
                          "expected one row per borrower and month")
    new = np.r_[True, b[1:] != b[:-1]]
    starts = np.r_[np.flatnonzero(new), len(b)]
    cols = np.cumsum(new) - 1
    return order, b[new], cols, starts, m


def _keys(panel: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
    for c in ("borrower_id", "month"):
        if panel[c].isna().any():
            i = int(np.flatnonzero(panel[c].isna().to_numpy())[0])
            raise SchemaError(f"{source}: row {i}: {c} is missing; expected a whole number")
    return panel["borrower_id"].to_numpy(np.int64), panel["month"].to_numpy(np.int64)


def regular_layout(panel: pd.DataFrame, *, pad: int, source: str) -> Layout | None:
    """The reshape layout of a sorted regular panel, or ``None`` when the panel is not one."""
    bid, month = _keys(panel, source)
    t = _regular_months(bid, month)
    return None if t is None else Layout(ids=bid[::t].copy(), n_rows=pad + t, pad=pad, month_of_row0=0, months=t)


def left_layout(panel: pd.DataFrame, *, pad: int, source: str) -> Layout:
    """Grid layout of a training panel on a common month axis."""
    regular = regular_layout(panel, pad=pad, source=source)
    if regular is not None:
        return regular
    bid, month = _keys(panel, source)
    order, ids, cols, starts, m = _sorted_entries(bid, month, source)
    m0 = int(m.min()) if len(m) else 0
    return Layout(ids=ids, n_rows=pad + (int(m.max()) - m0 + 1 if len(m) else 0), pad=pad, month_of_row0=m0,
                  rows=order, cols=cols, grid_rows=(m - m0 + pad), starts=starts)


def right_layout(panel: pd.DataFrame, *, pad: int, as_of: int | None, source: str) -> Layout:
    """Grid layout of prediction input: each borrower right-aligned on its anchor month.

    Borrowers without a month ``<= as_of`` are left out (nothing to score).
    """
    bid, month = _keys(panel, source)
    if as_of is not None:
        keep = np.flatnonzero(month <= as_of)
        bid, month = bid[keep], month[keep]
    else:
        keep = None
    order, ids, cols, starts, m = _sorted_entries(bid, month, source)
    last = m[starts[1:] - 1]
    first = m[starts[:-1]]
    anchor = np.full(len(ids), as_of, dtype=np.int64) if as_of is not None else last
    width = int((anchor - first).max()) + 1 if len(ids) else 1
    n_rows = pad + width
    grid_rows = m - anchor[cols] + (n_rows - 1)
    rows = order if keep is None else keep[order]
    return Layout(ids=ids, n_rows=n_rows, pad=pad, anchor=anchor, rows=rows, cols=cols,
                  grid_rows=grid_rows, starts=starts)


#: Columns the features read besides the behaviour: the account's age.
AGE = "months_on_book"


def months_on_book(panel: pd.DataFrame, source: str) -> np.ndarray:
    """Each row's months on book: the panel's column where it has a value, else months since the borrower's
    first row (a history that starts at the opening, as a simulated one does)."""
    have = None
    if AGE in panel.columns:
        s = panel[AGE]
        num = s if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf" else pd.to_numeric(s, errors="coerce")
        bad = (num.isna() & s.notna()).to_numpy() | (num < 0).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"{source}: row {i}: column {AGE!r} has value {s.iloc[i]!r}; expected a whole number "
                              ">= 0")
        have = num.to_numpy(dtype=np.float32, na_value=np.nan)
        if not np.isnan(have).any():
            return have
    bid, month = _keys(panel, source)
    derived = (month - pd.Series(month).groupby(bid).transform("min").to_numpy()).astype(np.float32)
    return derived if have is None else np.where(np.isnan(have), derived, have)


def behaviour_arrays(panel: pd.DataFrame, source: str) -> dict[str, np.ndarray]:
    """Every behaviour column as a numeric numpy array (a view when already numeric), and the months on book;
    a column the panel lacks (a lender's panel has any subset) is all NaN, and the features that read it are
    left out of the models trained on such panels."""
    out = {AGE: months_on_book(panel, source)}
    own = [c for c in panel.columns if str(c).startswith(SIGNAL_PREFIX)]  # a lender's own signals
    for c in (*(col.name for col in BEHAVIOUR), *own):
        if c not in panel.columns:
            out[c] = np.full(len(panel), np.nan, dtype=np.float32)
            continue
        s = panel[c]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiub":
            out[c] = s.to_numpy()
            continue
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna() & s.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise SchemaError(f"{source}: row {i}: column {c!r} has non-numeric value {s.iloc[i]!r}; expected a number")
        out[c] = num.to_numpy(dtype=np.float32, na_value=np.nan)
    return out


def codes(panel: pd.DataFrame, column: str, categories: tuple[str, ...], source: str) -> np.ndarray:
    """int8 codes of a categorical column (-1 for null); unknown values raise."""
    s = panel[column]
    if isinstance(s.dtype, pd.CategoricalDtype) and tuple(s.cat.categories) == tuple(categories):
        return np.asarray(s.cat.codes, dtype=np.int8)  # the contract's own categories (a validated batch)
    index = pd.Index(list(categories))
    if isinstance(s.dtype, pd.CategoricalDtype):
        mapping = np.append(index.get_indexer(s.cat.categories), -1).astype(np.int8)
        out = mapping[s.cat.codes.to_numpy()]  # code -1 (null) picks the appended -1
    else:
        out = index.get_indexer(s.astype("string")).astype(np.int8)
    bad = (out < 0) & s.notna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SchemaError(f"{source}: row {i}: column {column!r} has value {s.iloc[i]!r}; "
                          f"expected one of {list(categories)}")
    return out


def status_codes(panel: pd.DataFrame, source: str) -> np.ndarray:
    return codes(panel, "status", STATUSES, source)


def cause_codes(panel: pd.DataFrame, source: str) -> np.ndarray | None:
    return codes(panel, "cause", CAUSES, source) if "cause" in panel.columns else None

"""Raw cells to exact numbers: Arrow columns as numpy, and whole numbers read without a detour
through a double (ids beyond 2**53 would merge two borrowers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["exact_integers", "to_numpy"]


def to_numpy(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow column as numpy, nulls as NaN (as Arrow's ``to_numpy(zero_copy_only=False)`` gives them).

    The chunks of a column are joined in Arrow first: ``ChunkedArray.to_numpy`` took 40x as long on
    a bucket of 6 chunks (pyarrow 25; 1 s of a 1M-borrower batch job).
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col.to_numpy(zero_copy_only=False)


_INT64_MAX = str(np.iinfo(np.int64).max)


def exact_integers(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Whole numbers of an Arrow column as exact int64 and where there is one: ``(values, ok)``.

    Ids beyond 2**53 have no float64 of their own, so cells written as digits (CSV text) are cast
    straight to int64, never through a double; other text and floats count where they are finite
    whole numbers a double holds exactly. Where ``ok`` is False the value is 0 (missing, not a number,
    not whole)."""
    n = len(arr)
    if pa.types.is_integer(arr.type):
        ok = np.ones(n, dtype=bool) if not arr.null_count else to_numpy(pc.is_valid(arr))
        return to_numpy(pc.fill_null(arr, 0) if arr.null_count else arr).astype(np.int64, copy=False), ok
    if pa.types.is_floating(arr.type):
        x = to_numpy(arr).astype(np.float64, copy=False)
    else:
        text = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        digits = pc.fill_null(pc.and_(pc.match_substring_regex(text, r"^\d{1,19}$"), pc.or_(
            pc.less(pc.utf8_length(text), 19), pc.less_equal(text, _INT64_MAX))), False)
        exact = to_numpy(pc.cast(pc.if_else(digits, text, "0"), pa.int64()))
        if pc.all(digits).as_py() or n == 0:
            return exact, np.ones(n, dtype=bool)
        x = np.array(pd.to_numeric(text.to_pandas(), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
        x[to_numpy(digits)] = np.nan  # taken exactly below
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & (x == np.floor(x)) & (np.abs(x) <= 2.0**53)
    values = np.where(ok, x, 0).astype(np.int64)
    if not pa.types.is_floating(arr.type):
        d = to_numpy(digits)
        values[d], ok = exact[d], ok | d
    return values, ok

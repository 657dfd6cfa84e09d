"""One bucket's step, the same in every engine: prepare its rows, check them, score the good ones,
keep the rejects with their reasons, and write its parts.

The job (:mod:`riskml.batch.job`), the thread loop (:mod:`riskml.batch.threads`), the process pool
(:mod:`riskml.batch.pool`) and the Dask workers (:mod:`riskml.cluster.predict`) all call these
functions and import none of each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from riskml.batch import results
from riskml.batch import stream as batch
from riskml.factors import CAUSES
from riskml.schema import (PANEL, PANEL_PROBLEMS, SIGNAL_PREFIX, STATUS_DTYPE, category_dtype, coerce_columns,
                           exact_integers, in_key_order, problem_codes, to_numpy)

REJECT_SCHEMA = pa.schema([("borrower_id", pa.int64()), ("file", pa.string()), ("row", pa.int64()),
                           ("reason", pa.string())])
#: columns a panel may lack; a part without one has it missing for its rows
OPTIONAL_COLUMNS = ("cause", "months_on_book")


_REASON = "_reason"
#: Reasons of the batch path beyond the contract's row problems (codes after schema.PANEL_PROBLEMS).
_MISSING_ID = "borrower_id is missing or not a whole number"
#: A borrower's months are one row a month: a gap would be read as consecutive months by the windows
_GAP = ("month gap: the borrower has no row for the month before this one (months are consecutive whole "
        "numbers, one row a month; YYYYMM or dates need data.schema's month)")
_BATCH_PROBLEMS = (*PANEL_PROBLEMS, _MISSING_ID, _GAP)


def flag_gaps(bid: np.ndarray, month: np.ndarray, code: np.ndarray) -> None:
    """Give the first row after a gap in its borrower's months the gap's problem code (rows in any order;
    rows flagged before keep their code)."""
    if len(bid) < 2:
        return
    order = None if in_key_order(bid, month) else np.lexsort((month, bid))
    b, m = (bid, month) if order is None else (bid[order], month[order])
    with np.errstate(invalid="ignore"):
        gap = (b[1:] == b[:-1]) & (m[1:] - m[:-1] > 1)
    if gap.any():
        rows = np.flatnonzero(gap) + 1
        rows = rows if order is None else order[rows]
        code[rows[code[rows] == 0]] = _BATCH_PROBLEMS.index(_GAP)


def prepare(raw: pa.Table) -> pa.Table:
    """Canonical columns for one raw batch (numbers coerced once, here; categories as codes), with a
    ``_reason`` code per row whose numeric cell is not a number."""
    cols, first = coerce_columns(raw, PANEL)
    for c in raw.column_names:  # a lender's own signals: numbers (a cell that is none reads as missing)
        if c.startswith(SIGNAL_PREFIX):
            v = raw.column(c)
            cols[c] = to_numpy(v).astype(np.float32) if pa.types.is_integer(v.type) or pa.types.is_floating(v.type) \
                else pd.to_numeric(v.to_pandas(), errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
    cols.update({batch.FILE: raw.column(batch.FILE).to_numpy(), batch.ROW: raw.column(batch.ROW).to_numpy(),
                 _REASON: first})
    table = pa.table(cols)
    if "borrower_id" in cols and cols["borrower_id"].dtype.kind == "f":
        # some ids are missing or not whole: the others stay exact int64 (a double rounds ids beyond
        # 2**53, merging two borrowers), the bad ones null, which sends their rows to the rejects
        ids, ok = exact_integers(raw.column("borrower_id"))
        table = table.set_column(table.schema.get_field_index("borrower_id"), "borrower_id", pa.array(ids, mask=~ok))
    return table


def _arrays(rows: pa.Table) -> dict[str, np.ndarray]:
    return {c: to_numpy(rows.column(c)) for c in rows.column_names}


def borrower_count(rows: pa.Table) -> int:
    """Distinct borrowers of a bucket."""
    # chunk by chunk (no copy of the column into one array): a bucket is the batches it was cut from
    chunks = [c.to_numpy(zero_copy_only=False) for c in rows.column("borrower_id").chunks if len(c)]
    if not chunks:
        return 0
    ends = np.array([(c[0], c[-1]) for c in chunks])
    if (ends[1:, 0] >= ends[:-1, 1]).all() and all((c[1:] >= c[:-1]).all() for c in chunks):
        # sorted (the common case): count the changes, within chunks and from one chunk to the next
        return int(1 + sum(int((c[1:] != c[:-1]).sum()) for c in chunks) + (ends[1:, 0] != ends[:-1, 1]).sum())
    return int(np.unique(np.concatenate(chunks)).size)


def split_rows(rows: pa.Table, *, as_of: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Good borrowers' rows (a panel frame sorted by borrower and month) and reject rows (one per bad
    input row): vectorised checks on the bucket's arrays."""
    a = _arrays(rows)
    bid, fil, row = a["borrower_id"], a[batch.FILE], a[batch.ROW]
    if rows.num_rows > 1 and not in_key_order(bid, fil, row):
        order = np.lexsort((row, fil, bid))
        a = {c: v[order] for c, v in a.items()}
        bid, fil, row = a["borrower_id"], a[batch.FILE], a[batch.ROW]
    texts = [*_BATCH_PROBLEMS, f"no month at or before as_of={as_of}",
             f"no row at as_of={as_of}: the history ends before it"]
    code = problem_codes(a, PANEL, a[_REASON])
    flag_gaps(bid, a["month"], code)
    # rows may come in any order (parquet rows carry none): months are sorted below, never rejected;
    # two rows of one month are a duplicate, flagged above
    new = np.r_[True, bid[1:] != bid[:-1]]
    group = np.cumsum(new) - 1  # borrower of each row (rows sorted by borrower)
    if as_of is not None:
        # a line's state is known only in a month it has a row for: one whose rows stop before as_of
        # is not scored as if its last state (or a missing one) still held
        n = group[-1] + 1 if len(group) else 0
        before = np.bincount(group, weights=a["month"] <= as_of, minlength=n) > 0
        at = np.bincount(group, weights=a["month"] == as_of, minlength=n) > 0
        code[new & ~before[group] & (code == 0)] = len(texts) - 2
        code[new & before[group] & ~at[group] & (code == 0)] = len(texts) - 1
    bad = np.bincount(group, weights=code > 0, minlength=group[-1] + 1 if len(group) else 0)[group] > 0
    texts_arr = np.asarray(texts, dtype=object)
    hit = np.flatnonzero(code > 0)
    rejects = pd.DataFrame({"borrower_id": bid[hit], batch.FILE: fil[hit], batch.ROW: row[hit],
                            "reason": texts_arr[code[hit]]})
    keep = ~bad if as_of is None else ~bad & (a["month"] <= as_of)
    good = {c: v if keep.all() else v[keep] for c, v in a.items() if c in PANEL.names or c.startswith(SIGNAL_PREFIX)}
    if len(good["month"]) > 1 and not in_key_order(good["borrower_id"], good["month"]):
        order = np.lexsort((good["month"], good["borrower_id"]))  # (borrower, month), as the features read them
        good = {c: v[order] for c, v in good.items()}
    good["status"] = pd.Categorical.from_codes(good["status"], dtype=STATUS_DTYPE)
    if "cause" in good:  # an unknown cause reads as none, as a cast to the contract's categories did
        good["cause"] = pd.Categorical.from_codes(np.maximum(good["cause"], -1), dtype=category_dtype(CAUSES))
    return pd.DataFrame(good, copy=False), rejects  # copy=False: no consolidation copy of every column


def missing_id_rejects(rows: pa.Table) -> pd.DataFrame:
    """The reject rows of bucket -1: rows without a usable borrower_id."""
    a = _arrays(rows)
    return pd.DataFrame({"borrower_id": np.full(rows.num_rows, np.nan), batch.FILE: a[batch.FILE],
                         batch.ROW: a[batch.ROW], "reason": np.full(rows.num_rows, _MISSING_ID, dtype=object)})


def _reject_frame(rejects: pd.DataFrame, files: tuple[Path, ...]) -> pd.DataFrame:
    names = np.array([str(f) for f in files], dtype=object)
    return pd.DataFrame({
        "borrower_id": _nullable_ids(rejects["borrower_id"].to_numpy()),  # null: no id
        "file": names[rejects[batch.FILE].to_numpy(dtype=np.int64)] if len(rejects) else [],
        "row": rejects[batch.ROW].to_numpy(dtype=np.int64),
        "reason": rejects["reason"].astype("string").to_numpy(),
    })


def _nullable_ids(ids: np.ndarray) -> pd.arrays.IntegerArray:
    """Reject ids as nullable int64: exact where they are integers, null where there was none (NaN)."""
    if ids.dtype.kind in "iu":
        return pd.array(ids.astype(np.int64, copy=False), dtype="Int64")
    ids = ids.astype(np.float64)
    missing = np.isnan(ids)
    return pd.arrays.IntegerArray(np.where(missing, 0, ids).astype(np.int64), missing)


def score_rows(rows: pa.Table, *, as_of: int | None, score: Callable[[pd.DataFrame], pd.DataFrame],
               schema: pa.Schema, no_id: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prepared rows of whole borrowers -> ``(scored, rejects)``; ``no_id``: rows without a usable id, all rejected.

    The one scoring step of a bucket, here or on a Dask worker (:mod:`riskml.cluster.predict`).
    """
    if no_id:
        return pd.DataFrame(columns=schema.names), missing_id_rejects(rows)
    good, rejects = split_rows(rows, as_of=as_of)
    return (score(good) if len(good) else pd.DataFrame(columns=schema.names)), rejects


def score_piece(rows: pa.Table, *, k: int, root: Path, as_of: int | None,
                score: Callable[[pd.DataFrame], pd.DataFrame], schema: pa.Schema, files: tuple[Path, ...]) -> None:
    """Piece ``k`` of a worker (a pool process or a Dask worker), prepared rows of whole borrowers:
    count its borrowers (conservation), reject the rows without an id with the rest, score, write its
    parts into the work folder ``root``."""
    missing = np.isnan(batch._ids(rows))
    good = rows.filter(pa.array(~missing)) if missing.any() else rows
    (root / "counts" / f"{k:05d}").write_text(str(borrower_count(good)))
    scored, rejects = score_rows(good, as_of=as_of, score=score, schema=schema)
    if missing.any():
        rejects = pd.concat([missing_id_rejects(rows.filter(pa.array(missing))), rejects], ignore_index=True)
    write_bucket(scored, rejects, files=files, part=batch.part_path(root, "scored", k),
                 rejects_part=batch.part_path(root, "rejects", k), schema=schema)


def write_bucket(scored: pd.DataFrame, rejects: pd.DataFrame, *, files: tuple[Path, ...], part: Path,
                 rejects_part: Path, schema: pa.Schema) -> pa.Table:
    """Write a bucket's rejects, then its scored part (written last: its presence marks the bucket done);
    returns the scored table written."""
    results.write_part(_reject_frame(rejects, files), rejects_part, REJECT_SCHEMA)
    return results.write_part(scored[schema.names], part, schema)

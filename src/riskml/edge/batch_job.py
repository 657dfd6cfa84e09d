"""One batch scoring job over any-size input: validate rows, score whole
borrowers bucket by bucket, keep rejects apart, check conservation, write the
summary.

The guarantees (see the README's "Bad input, nothing lost"): every input row
of a bad borrower is either scored (through its borrower) or in the rejects
with a reason; input borrowers = scored + rejected, checked before the output
is complete; the summary is written last, so its presence says the job
finished; a killed job started again resumes from its finished buckets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from riskml import __version__
from riskml.edge import batch
from riskml.edge.files import atomic_path, write_json, write_parquet
from riskml.exceptions import SchemaError
from riskml.factors import CAUSES
from riskml.schema import PANEL, PANEL_PROBLEMS, STATUSES, coerce_columns, problem_codes

REJECT_SCHEMA = pa.schema([("borrower_id", pa.int64()), ("file", pa.string()), ("row", pa.int64()),
                           ("reason", pa.string())])
_OPTIONAL = ("cause",)


@dataclass
class BatchResult:
    """What a batch job wrote."""

    output: Path
    rejects: Path
    summary_path: Path
    summary: dict[str, Any]


def side_paths(output: Path) -> tuple[Path, Path]:
    """The rejects file and the summary JSON beside ``output``."""
    return (output.with_name(output.stem + ".rejects" + output.suffix),
            output.with_name(output.stem + ".summary.json"))


def input_plan(path: str | Path) -> tuple[list[Path], list[str]]:
    """The input's files and the panel columns to read; fails before any work on a missing column."""
    files = batch.table_files(path)
    headers = {f: set(batch.input_columns(f)) for f in files}  # each file's header, read once
    for f, have in headers.items():
        missing = [c for c in PANEL.required if c not in have]
        if missing:
            raise SchemaError(f"{f}: missing required panel column(s) {missing}; expected at least "
                              f"{list(PANEL.required)}")
    columns = [c for c in PANEL.names if c in PANEL.required or c in _OPTIONAL
               if all(c in have for have in headers.values())]
    return files, columns


_REASON = "_reason"
_MISSING_ID = "borrower_id is missing or not a whole number"
#: Reasons of the batch path beyond the contract's row problems (codes after schema.PANEL_PROBLEMS).
_BATCH_PROBLEMS = (*PANEL_PROBLEMS, "months out of order", _MISSING_ID)


def prepare(raw: pa.Table) -> pa.Table:
    """Canonical columns for one raw batch (numbers coerced once, here; categories as codes), with a
    ``_reason`` code per row whose numeric cell is not a number."""
    cols, first = coerce_columns(raw, PANEL)
    cols.update({batch.FILE: raw.column(batch.FILE).to_numpy(), batch.ROW: raw.column(batch.ROW).to_numpy(),
                 _REASON: first})
    return pa.table(cols)


def _arrays(rows: pa.Table) -> dict[str, np.ndarray]:
    return {c: rows.column(c).to_numpy(zero_copy_only=False) for c in rows.column_names}


def borrower_count(rows: pa.Table) -> int:
    """Distinct borrowers of a bucket."""
    bid = rows.column("borrower_id").to_numpy(zero_copy_only=False)
    if len(bid) > 1 and (bid[1:] >= bid[:-1]).all():  # sorted (the common case): count the changes
        return int(1 + (bid[1:] != bid[:-1]).sum())
    return int(np.unique(bid).size)


def split_rows(rows: pa.Table, *, as_of: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Good borrowers' rows (a panel frame sorted by borrower and month) and reject rows (one per bad
    input row): vectorised checks on the bucket's arrays."""
    a = _arrays(rows)
    bid, fil, row = a["borrower_id"], a[batch.FILE], a[batch.ROW]
    if rows.num_rows > 1 and not _sorted_by(bid, fil, row):
        order = np.lexsort((row, fil, bid))
        a = {c: v[order] for c, v in a.items()}
        bid, fil, row = a["borrower_id"], a[batch.FILE], a[batch.ROW]
    texts = [*_BATCH_PROBLEMS, f"no month at or before as_of={as_of}"]
    code = problem_codes(a, PANEL, a[_REASON])
    # months must rise in file order within a borrower (equal months are duplicates, flagged above)
    new = np.r_[True, bid[1:] != bid[:-1]]
    with np.errstate(invalid="ignore"):
        back = np.r_[False, ~new[1:] & (np.diff(a["month"]) < 0)]
    code[back & (code == 0)] = texts.index("months out of order")
    group = np.cumsum(new) - 1  # borrower of each row (rows sorted by borrower)
    if as_of is not None:
        has = np.bincount(group, weights=a["month"] <= as_of, minlength=group[-1] + 1 if len(group) else 0) > 0
        code[new & ~has[group] & (code == 0)] = len(texts) - 1
    bad = np.bincount(group, weights=code > 0, minlength=group[-1] + 1 if len(group) else 0)[group] > 0
    texts_arr = np.asarray(texts, dtype=object)
    hit = np.flatnonzero(code > 0)
    rejects = pd.DataFrame({"borrower_id": bid[hit], batch.FILE: fil[hit], batch.ROW: row[hit],
                            "reason": texts_arr[code[hit]]})
    keep = ~bad if as_of is None else ~bad & (a["month"] <= as_of)
    good = {c: v if keep.all() else v[keep] for c, v in a.items() if c in PANEL.names}
    # good borrowers' months rise in file order (checked above), so the rows are sorted by (borrower, month)
    good["status"] = pd.Categorical.from_codes(good["status"], categories=list(STATUSES))
    if "cause" in good:  # an unknown cause reads as none, as a cast to the contract's categories did
        good["cause"] = pd.Categorical.from_codes(np.maximum(good["cause"], -1), categories=list(CAUSES))
    return pd.DataFrame(good, copy=False), rejects  # copy=False: no consolidation copy of every column


def _sorted_by(*keys: np.ndarray) -> bool:
    """Rows already in lexicographic order of ``keys`` (the common case: panels are written sorted)."""
    a, b = keys[0][1:], keys[0][:-1]
    if not (a >= b).all():
        return False
    eq = a == b
    for k in keys[1:]:
        if eq.any() and not (k[1:][eq] >= k[:-1][eq]).all():
            return False
        eq = eq & (k[1:] == k[:-1])
    return True


def missing_id_rejects(rows: pa.Table) -> pd.DataFrame:
    """The reject rows of bucket -1: rows without a usable borrower_id."""
    a = _arrays(rows)
    return pd.DataFrame({"borrower_id": np.full(rows.num_rows, np.nan), batch.FILE: a[batch.FILE],
                         batch.ROW: a[batch.ROW], "reason": np.full(rows.num_rows, _MISSING_ID, dtype=object)})


def _reject_frame(rejects: pd.DataFrame, files: tuple[Path, ...]) -> pd.DataFrame:
    names = np.array([str(f) for f in files], dtype=object)
    return pd.DataFrame({
        "borrower_id": pd.array(rejects["borrower_id"].to_numpy(dtype="float64"), dtype="Int64"),  # null: no id
        "file": names[rejects[batch.FILE].to_numpy(dtype=np.int64)] if len(rejects) else [],
        "row": rejects[batch.ROW].to_numpy(dtype=np.int64),
        "reason": rejects["reason"].astype("string").to_numpy(),
    })


def run_job(*, input: str | Path, output: str | Path, columns: list[str], schema: pa.Schema, fmt: str,
            bucket_rows: int, as_of: int | None, score: Callable[[pd.DataFrame], pd.DataFrame],
            settings: dict[str, Any], summary_extra: dict[str, Any]) -> BatchResult:
    """Score ``input`` into ``output`` with ``score`` (validated panel rows -> prediction rows).

    ``settings`` (everything that changes the output: models and their
    checksums, options) go into the work folder's fingerprint, so a resumed
    job only reuses parts made the same way; ``summary_extra`` is merged into
    the summary.
    """
    t0 = time.perf_counter()
    output = Path(output)
    rejects_path, summary_path = side_paths(output)
    plan = batch.plan(input, bucket_rows=bucket_rows)
    work = batch.WorkDir(output, plan.fingerprint(settings))

    resumed, counts = 0, work.root / "counts"
    counts.mkdir(exist_ok=True)
    bar = tqdm(total=plan.n_buckets + 1, desc="scoring", unit="bucket", disable=None)
    for k, rows in batch.partition(plan, work, columns=columns, prepare=prepare):
        part, rej_part = work.part("scored", k), work.part("rejects", k)
        if k >= 0:  # distinct borrowers of the bucket, counted independently of scoring
            (counts / f"{k:05d}").write_text(str(borrower_count(rows)))
        if part.exists():
            resumed += 1
            bar.update()
            continue
        if k < 0:  # rows without a usable borrower_id
            rejects = missing_id_rejects(rows)
            scored = pd.DataFrame(columns=schema.names)
        else:
            good, rejects = split_rows(rows, as_of=as_of)
            scored = score(good) if len(good) else pd.DataFrame(columns=schema.names)
        batch.write_part(_reject_frame(rejects, plan.files), rej_part, REJECT_SCHEMA)
        batch.write_part(scored[schema.names], part, schema)  # written last: marks the bucket done
        bar.update()
    bar.close()

    n_scored = batch.assemble(work.parts("scored"), output, schema, fmt=fmt)
    rej = pd.concat([pd.read_parquet(p) for p in work.parts("rejects")], ignore_index=True)
    if fmt == "parquet":
        write_parquet(rej, rejects_path)
    else:
        with atomic_path(rejects_path) as tmp:
            rej.to_csv(tmp, index=False)
    scored_ids = pd.concat([pd.read_parquet(p, columns=["borrower_id", "status", "risk_band"])
                            for p in work.parts("scored")], ignore_index=True)
    rejected_ids = rej["borrower_id"].dropna().unique()
    input_borrowers = sum(int(f.read_text()) for f in counts.iterdir())
    if input_borrowers != n_scored + len(rejected_ids):  # conservation: never drop a borrower silently
        raise AssertionError(f"{input_borrowers} input borrowers != {n_scored} scored + "
                             f"{len(rejected_ids)} rejected")
    seconds = time.perf_counter() - t0
    summary = {
        "input": [str(f) for f in plan.files], "input_rows": plan.rows,
        "input_borrowers": input_borrowers,
        "scored_borrowers": int(n_scored), "rejected_borrowers": int(len(rejected_ids)),
        "rejected_rows": int(len(rej)), "rows_without_borrower_id": int(rej["borrower_id"].isna().sum()),
        "rejects_by_reason": {str(k): int(v) for k, v in rej["reason"].value_counts().sort_index().items()},
        "status": {s: int((scored_ids["status"] == s).sum()) for s in STATUSES},
        "risk_band": {str(k): int(v) for k, v in scored_ids["risk_band"].value_counts().sort_index().items()},
        "as_of": as_of, "buckets": plan.n_buckets, "resumed_buckets": resumed,
        "seconds": round(seconds, 3), "borrowers_per_second": round(n_scored / seconds, 1) if seconds else None,
        **summary_extra,
        "output": str(output), "rejects": str(rejects_path), "riskml_version": __version__,
    }
    if set(scored_ids["borrower_id"]) & set(rejected_ids.astype(np.int64)):
        raise AssertionError("a borrower is both scored and rejected")  # invariant, never expected
    write_json(summary, summary_path)  # last: its presence says the job finished
    work.remove()
    return BatchResult(output, rejects_path, summary_path, summary)

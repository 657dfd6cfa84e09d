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
from riskml.edge.files import write_json
from riskml.exceptions import SchemaError
from riskml.schema import PANEL, STATUSES, cast, coerce_numeric, row_problems

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


def prepare(raw: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes for one raw batch (numbers coerced once, here), with a ``_reason`` per bad cell."""
    out, reason = coerce_numeric(raw, PANEL)
    out[batch.FILE] = raw[batch.FILE].to_numpy()
    out[batch.ROW] = raw[batch.ROW].to_numpy()
    out["_reason"] = reason
    return out


def split_rows(rows: pd.DataFrame, *, as_of: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Good borrowers' rows (panel dtypes) and reject rows (one per bad input row)."""
    rows = rows.sort_values(["borrower_id", batch.FILE, batch.ROW], kind="stable").reset_index(drop=True)
    reason = rows["_reason"].fillna(row_problems(rows))
    # months must rise in file order within a borrower (equal months are duplicates, flagged above)
    same = rows["borrower_id"].to_numpy()[1:] == rows["borrower_id"].to_numpy()[:-1]
    back = np.r_[False, same & (np.diff(rows["month"].to_numpy()) < 0)]
    reason = reason.mask(back & reason.isna().to_numpy(), "months out of order")
    if as_of is not None:
        bid = rows["borrower_id"]
        has = (rows["month"] <= as_of).groupby(bid).transform("any").to_numpy()
        first = ~bid.duplicated().to_numpy()
        reason = reason.mask(~has & first & reason.isna().to_numpy(), f"no month at or before as_of={as_of}")
    bad_borrower = reason.notna().groupby(rows["borrower_id"]).transform("any").to_numpy()
    rejects = rows.loc[reason.notna().to_numpy(), ["borrower_id", batch.FILE, batch.ROW]].assign(
        reason=reason.dropna().to_numpy())
    good = rows.loc[~bad_borrower]
    if as_of is not None:
        good = good[good["month"] <= as_of]
    good = cast(good.drop(columns=["_reason", batch.FILE, batch.ROW]), PANEL)
    return good.sort_values(["borrower_id", "month"]).reset_index(drop=True), rejects


def _reject_frame(rejects: pd.DataFrame, files: tuple[Path, ...]) -> pd.DataFrame:
    names = np.array([str(f) for f in files], dtype=object)
    return pd.DataFrame({
        "borrower_id": rejects["borrower_id"].astype("float64").astype("Int64").array,  # null: no usable id
        "file": names[rejects[batch.FILE].astype(int).to_numpy()] if len(rejects) else [],
        "row": rejects[batch.ROW].astype("int64").to_numpy(),
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
            (counts / f"{k:05d}").write_text(str(rows["borrower_id"].nunique()))
        if part.exists():
            resumed += 1
            bar.update()
            continue
        if k < 0:  # rows without a usable borrower_id
            rejects = rows.assign(reason="borrower_id is missing or not a whole number")
            scored = pd.DataFrame(columns=schema.names)
        else:
            good, rejects = split_rows(rows, as_of=as_of)
            scored = score(good) if len(good) else pd.DataFrame(columns=schema.names)
        batch.write_part(_reject_frame(rejects, plan.files), rej_part, REJECT_SCHEMA)
        batch.write_part(scored[schema.names], part, schema)  # written last: marks the bucket done
        bar.update()
    bar.close()

    n_scored = batch.assemble(work.parts("scored"), output, schema, fmt=fmt)
    rej = batch.assemble_rejects(work.parts("rejects"), rejects_path, fmt=fmt)
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

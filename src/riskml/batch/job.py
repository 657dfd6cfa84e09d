"""One batch scoring job over any-size input: validate rows, score whole
borrowers bucket by bucket, keep rejects apart, check conservation, write the
summary.

The guarantees (see the README's "Bad input, nothing lost"): every input
borrower is either scored or rejected with the reason of each bad row; input
borrowers = scored + rejected, checked on the finished parts before anything
is renamed into place; one job at a time per output (a lock); the summary is
written last, so its presence says the job finished; a killed job started
again resumes from its finished buckets when nothing that shapes the output
changed (input, plan, settings, every model's checksum), and starts clean
otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from riskml import __version__
from riskml.batch import stream as batch
from riskml.batch import results
from riskml.batch.bucket import OPTIONAL_COLUMNS
from riskml.io.files import (PARTS_MANIFEST, atomic_path, check_output_dir, check_output_path, is_folder_output,
                               job_lock, sha256_file, write_json, write_parquet)
from riskml.exceptions import BatchError, ConfigError, InputError, SchemaError
from riskml.schema import PANEL, STATUSES

@dataclass
class BatchResult:
    """What a batch job wrote."""

    output: Path
    rejects: Path
    summary_path: Path
    summary: dict[str, Any]


def side_paths(output: Path) -> tuple[Path, Path]:
    """The rejects file and the summary JSON beside ``output`` (beside an output folder, not in it:
    a reader of the folder would take them for prediction parts)."""
    return (output.with_name(output.stem + ".rejects" + (output.suffix or ".parquet")),
            output.with_name(output.stem + ".summary.json"))


def input_plan(path: str | Path, required: tuple[str, ...] = PANEL.required, extra: tuple[str, ...] = ()
               ) -> tuple[list[Path], list[str]]:
    """The input's files and the panel columns to read; fails before any work on a missing column.
    ``required``: the contract's columns a model needs (a model trained in a lender's schema, its subset and
    ``extra``, its own signals' columns)."""
    files = batch.table_files(path)
    headers = {f: set(batch.input_columns(f)) for f in files}  # each file's header, read once
    required = (*required, *extra)
    for f, have in headers.items():
        missing = [c for c in required if c not in have]
        if missing:
            raise SchemaError(f"{f}: missing required panel column(s) {missing}; expected at least "
                              f"{list(required)}")
    # an optional column read when any part has it: a part without it reads as empty cells for its own
    # rows (dropping it for every part lost the fraud closures' cause of the parts that have it)
    columns = [c for c in PANEL.names if c in required or c in OPTIONAL_COLUMNS
               if any(c in have for have in headers.values())]
    return files, columns + list(extra)


def output_format(output: str | Path, fmt: str | None, *, key: str = "format", parts: bool = True) -> str:
    """The output's format from its extension (``.parquet`` or ``.csv``), or ``"parts"`` for a name
    without one (a folder of parquet parts, with ``parts``); ``fmt``, when given, must agree."""
    if parts and is_folder_output(output):
        if fmt not in (None, "parquet", "parts"):
            raise ConfigError(key, fmt, f"null or 'parquet': output {Path(output).name!r} is a folder of parquet parts")
        return "parts"
    ext = Path(output).suffix.lower().lstrip(".")
    if ext not in ("parquet", "csv"):
        folder = ", or a folder name without an extension (parquet parts)" if parts else ""
        raise ConfigError("output", str(output), f"a file name ending in .parquet or .csv (the format follows it)"
                          f"{folder}")
    if fmt not in (None, ext):
        raise ConfigError(key, fmt, f"null or {ext!r}, the format of output {Path(output).name!r}")
    return ext


def check_rows(plan: batch.Plan, input: str | Path) -> batch.Plan:
    """The plan of an input that has rows; an input without any (a header-only file, empty parts) ends
    the job at once with one line, before anything is written."""
    if plan.rows == 0:
        raise InputError(f"{input}: no rows; expected borrower-month rows (the file or folder holds only "
                         "column names)")
    return plan


def check_outputs(output: str | Path, inputs: list[Path]) -> Path:
    """Fail before any work when the output, its rejects or its summary cannot be written where asked."""
    if is_folder_output(output):
        out = check_output_dir(output, key="output", inputs=inputs)
    else:
        out = check_output_path(output, key="output", inputs=inputs)
    for side in side_paths(out):
        check_output_path(side, key="output", inputs=inputs)
    return out


@contextlib.contextmanager
def job_frame(output: Path) -> Iterator[tuple[Path, Path]]:
    """The frame every streamed job (histories or a table) runs in: one job at a time writes an output
    (a lock), Arrow allocates from a pool that keeps its memory, and an earlier job's summary and
    rejects are removed before any work, so a summary beside the output always speaks of the output
    there. Yields the rejects' and the summary's paths."""
    rejects_path, summary_path = side_paths(output)
    with job_lock(output, what="riskml.predict job"), batch.reused_memory():
        for stale in (summary_path, rejects_path):  # the summary first: it is what claims completion
            stale.unlink(missing_ok=True)
        yield rejects_path, summary_path


def check_conservation(work: batch.WorkDir, output: Path, *, input_count: int, scored: int, rejected: int,
                       unit: str) -> None:
    """Every input borrower (or table row) scored or rejected exactly once, checked on the finished parts
    before anything is renamed into place; otherwise a :class:`BatchError`, and the work folder is cleared
    so that a rerun starts clean."""
    if input_count == scored + rejected:
        return
    work.remove()
    raise BatchError(f"{output}: the finished parts hold {scored} scored and {rejected} rejected {unit}s for "
                     f"{input_count} input {unit}s; expected each input {unit} exactly once. Nothing was written, "
                     "and the work folder is cleared so that a rerun starts clean")


def run_job(*, input: str | Path, output: str | Path, columns: list[str], schema: pa.Schema, fmt: str,
            bucket_rows: int, as_of: int | None, score: Callable[[pd.DataFrame], pd.DataFrame],
            settings: dict[str, Any], summary_extra: dict[str, Any], plan: batch.Plan | None = None,
            score_parts: Callable[[batch.Plan, batch.WorkDir], int] | None = None,
            workers: int | str = 1, present: results.Present | None = None) -> BatchResult:
    """Score ``input`` into ``output`` with ``score`` (validated panel rows -> prediction rows).

    ``settings`` (everything that changes the output: models and their
    checksums, options) go into the work folder's fingerprint with the plan,
    so a resumed job only reuses parts made the same way; ``summary_extra``
    is merged into the summary. One job at a time writes an output (a lock),
    and an earlier job's summary and rejects are removed before any work, so
    a summary beside the output always speaks of the output there.

    A cluster job (:mod:`riskml.cluster.predict`) passes its own ``plan``
    and ``score_parts(plan, work)`` (writes the parts not yet in ``work``,
    returns how many it resumed); the lock, the fingerprint, conservation and
    the atomic output are this function's, the same for both.

    ``workers`` (``auto`` or a number) scores the buckets in worker processes
    (:mod:`riskml.batch.pool`): the same parts, the same output bytes.
    ``present`` shows the output's rows in a lender's terms (its id name, its month form); the parts, and
    so a resumed job's reuse of them, stay in riskml's.
    """
    shown = {} if present is None else {"present": present}
    t0 = time.perf_counter()
    plan = check_rows(plan or batch.plan(input, bucket_rows=bucket_rows), input)
    output = check_outputs(output, [Path(input), *plan.files])
    if score_parts is None:
        from riskml.batch import pool as batch_pool  # the pool's imports, only where a job may use one

        n = batch_pool.resolve_workers(workers, rows=plan.rows, buckets=plan.n_buckets)
        pieces = batch_pool.pieces(plan) if n > 1 else None
        if pieces:  # pieces of whole borrowers, each read and scored by a worker process
            plan = dataclasses.replace(plan, n_buckets=len(pieces))
            settings = {**settings, "cut": "row groups"}  # never reuse parts cut another way
            score_parts = partial(batch_pool.score_pieces, pieces=pieces, workers=n, columns=columns,
                                  schema=schema, as_of=as_of, score=score)
    with job_frame(output) as (rejects_path, summary_path):
        work = batch.WorkDir(output, plan.fingerprint(settings))
        # one parquet file from this process: assembled beside the scoring, renamed in by finish
        assembly = results.Assembly(output, schema, **shown) if score_parts is None and fmt == "parquet" else None
        try:
            if score_parts is None:
                from riskml.batch import threads as batch_threads  # the bucket loop of one process

                resumed = batch_threads.score_buckets(plan, work, columns=columns, schema=schema, as_of=as_of,
                                                      score=score, assembly=assembly)
            else:
                resumed = score_parts(plan, work)
            summary = finish(plan, work, output, schema, fmt, assembly=assembly, **shown)
        except BaseException:
            if assembly is not None:
                assembly.abort()
            raise
        summary.update({"as_of": as_of, "resumed_buckets": resumed, **summary_extra,
                        "output": str(output), "rejects": str(rejects_path), "riskml_version": __version__})
        seconds = time.perf_counter() - t0
        summary.update(seconds=round(seconds, 3),
                       borrowers_per_second=round(summary["scored_borrowers"] / seconds, 1) if seconds else None)
        write_json(summary, summary_path)  # last: its presence says the job finished
        work.remove()
    return BatchResult(output, rejects_path, summary_path, summary)


def finish(plan: batch.Plan, work: batch.WorkDir, output: Path, schema: pa.Schema, fmt: str,
           assembly: results.Assembly | None = None, **shown: Any) -> dict[str, Any]:
    """Check conservation on the parts, then write rejects and output (each atomically; the output
    is ``assembly`` committed when one was built beside the scoring); the counts."""
    rejects_path, _ = side_paths(output)
    rej = batch.concat([results.read_part(p) for p in work.parts("rejects")]).to_pandas()
    # in input order (file, row): the order a user mends the input in, and the same for every engine
    file_code = pd.Categorical(rej["file"], categories=[str(f) for f in plan.files]).codes
    rej = rej.iloc[np.lexsort((rej["row"].to_numpy(), file_code))].reset_index(drop=True)
    # the parts as written on disk
    scored_ids = batch.concat([results.read_part(p, columns=["borrower_id", "status", "risk_band"])
                               for p in work.parts("scored")]).to_pandas()
    rejected_ids = rej["borrower_id"].dropna().unique()
    input_borrowers = sum(int(f.read_text()) for f in (work.root / "counts").iterdir())
    n_scored = len(scored_ids)
    # conservation, checked before anything is renamed into place: never drop or double a borrower silently
    ids = scored_ids["borrower_id"].to_numpy()
    unique = bool((ids[1:] > ids[:-1]).all()) or scored_ids["borrower_id"].is_unique  # buckets come sorted
    if not unique or input_borrowers != n_scored + len(rejected_ids) or np.isin(
            rejected_ids.astype(np.int64), ids).any():
        work.remove()
        raise BatchError(f"{output}: the finished parts hold {n_scored} scored rows "
                         f"({scored_ids['borrower_id'].nunique()} borrowers) and {len(rejected_ids)} rejected "
                         f"borrowers for {input_borrowers} input borrowers; expected each input borrower exactly "
                         "once. Nothing was written, and the work folder is cleared so that a rerun starts clean")
    if fmt in ("parquet", "parts"):
        write_parquet(rej, rejects_path)
    else:
        with atomic_path(rejects_path) as tmp:
            rej.to_csv(tmp, index=False)
    if assembly is not None:
        assembly.commit()
    else:
        results.assemble(work.parts("scored"), output, schema, fmt=fmt, **shown)
    return {
        "input": [str(f) for f in plan.files], "input_rows": plan.rows,
        "input_borrowers": input_borrowers,
        "scored_borrowers": int(n_scored), "rejected_borrowers": int(len(rejected_ids)),
        "rejected_rows": int(len(rej)), "rows_without_borrower_id": int(rej["borrower_id"].isna().sum()),
        "rejects_by_reason": {str(k): int(v) for k, v in rej["reason"].value_counts().sort_index().items()},
        "status": {s: int((scored_ids["status"] == s).sum()) for s in STATUSES},
        "risk_band": {str(k): int(v) for k, v in scored_ids["risk_band"].value_counts().sort_index().items()},
        "buckets": plan.n_buckets,
        # a folder's manifest holds every part's sha256: one hash for the whole output either way
        "output_sha256": sha256_file(output / PARTS_MANIFEST if fmt == "parts" else output),
    }

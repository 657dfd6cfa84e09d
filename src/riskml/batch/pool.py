"""Buckets scored in worker processes: ``python -m riskml.predict workers=N`` (default ``auto``).

Input sorted by borrower in parquet files (as panels are written) is cut into
*pieces*: runs of row groups of whole borrowers of about ``bucket_rows`` rows,
found from the files' footers alone (:func:`riskml.batch.pieces.file_pieces`).
Each of ``N`` worker processes reads its pieces itself and runs the one-process
job's steps on them (:func:`~riskml.batch.bucket.prepare`,
:func:`~riskml.batch.bucket.score_piece`),
so nothing but a piece's name crosses between processes (handing buckets
over, even as memory-mapped Arrow files, left the job process busier than
a worker). The job process keeps the lock, the fingerprint, conservation and
the atomic output (:func:`~riskml.batch.job.run_job`); the output bytes
are those of ``workers=1``. At most ``N + 1`` pieces are in flight.

Input that does not cut that way (CSV, unsorted rows, a borrower across two
files, row groups too big for a bucket) is scored by the one-process job.

Each worker gets the scoring function (the models this job opened and
verified) once, pickled by :mod:`multiprocessing` between the job's own
processes; nothing is unpickled from a file. On Linux a worker dies with the
job (``PR_SET_PDEATHSIG``): a killed job leaves no process writing into its
work folder, and a rerun resumes from the parts that were finished.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from riskml.batch import stream as batch
from riskml.batch.pieces import Piece, file_pieces, read_piece
from riskml.exceptions import ConfigError
from riskml.explain.kernel_threads import set_kernel_threads

#: ``workers=auto`` uses worker processes from this many input rows on; a smaller job is done
#: before they would have started (about 2 s each to import and receive the models).
AUTO_MIN_ROWS = 2_000_000
#: Cores one job process keeps busy (its reader thread beside the scoring; the kernels' threads):
#: ``auto`` starts one worker per this many cores. On 2 cores that is the job's own process, which
#: measured as fast as 2 workers there (benchmarks/README.md) with less memory and CPU time.
CORES_PER_WORKER = 2


def check_workers(value: object) -> int | str:
    """``workers`` as the config gives it: ``auto`` or a whole number >= 1."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ConfigError("workers", value, f"'auto' (a process per {CORES_PER_WORKER} cores for inputs of at "
                      f"least {AUTO_MIN_ROWS:,} rows) or a whole number >= 1 (1: score in this process)")


def resolve_workers(value: object, *, rows: int, buckets: int) -> int:
    """How many worker processes a job of ``rows`` input rows in ``buckets`` buckets uses (1: none)."""
    value = check_workers(value)
    if value == "auto":
        value = max(1, _cores() // CORES_PER_WORKER) if rows >= AUTO_MIN_ROWS else 1
    return max(1, min(int(value), buckets))


_STATE: dict[str, Any] = {}


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pieces(plan: batch.Plan) -> list[Piece] | None:
    """The pieces of whole borrowers workers read, or None when the input does not cut into them."""
    if not plan.grouped or any(f.suffix != ".parquet" for f in plan.files):
        return None
    out, last = [], None
    for f in plan.files:
        meta = pq.ParquetFile(f).metadata
        if meta.num_rows == 0:
            continue
        col = meta.schema.to_arrow_schema().get_field_index("borrower_id")
        first, end = (meta.row_group(g).column(col).statistics for g in (0, meta.num_row_groups - 1))
        if first is None or end is None or not (first.has_min_max and end.has_min_max) or (
                last is not None and first.min <= last):
            return None  # no statistics, or a borrower may go on from the previous file
        last = end.max
        out += file_pieces(f, target_rows=plan.bucket_rows)
    if not out or max(p.rows for p in out) > 2 * plan.bucket_rows:
        return None  # row groups too big to keep a bucket's memory
    return out


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the job process dies (elsewhere: the pool's own shutdown)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the job died before the call above: nothing to work for
            os._exit(1)


def _start(score: Callable[[pd.DataFrame], pd.DataFrame], threads: int) -> None:
    _die_with_parent()
    set_kernel_threads(threads)  # the workers share the cores: no more kernel threads than their share
    batch.reuse_memory()  # for the worker's life: it only scores buckets
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the job process, which stops the pool
    _STATE["score"] = score


def _score_piece(piece: Piece, *, fi: int, k: int, root: str, columns: list[str], schema: pa.Schema,
                 as_of: int | None, files: tuple[Path, ...]) -> None:
    """In a worker: read piece ``k`` and score it as the one-process job does."""
    from riskml.batch.bucket import prepare, score_piece

    rows = prepare(batch.numbered(read_piece(piece, columns=columns), fi, piece.first_row))
    score_piece(rows, k=k, root=Path(root), as_of=as_of, score=_STATE["score"], schema=schema, files=files)


def score_pieces(plan: batch.Plan, work: batch.WorkDir, *, pieces: list[Piece], workers: int, columns: list[str],
                 schema: pa.Schema, as_of: int | None, score: Callable[[pd.DataFrame], pd.DataFrame]) -> int:
    """Score every piece whose part is not in ``work`` yet in ``workers`` processes; returns how many
    were resumed. Leaving early (an error, Ctrl-C) cancels the pieces not started."""
    (work.root / "counts").mkdir(exist_ok=True)
    index = {str(f): i for i, f in enumerate(plan.files)}
    todo = [k for k in range(len(pieces)) if not work.part("scored", k).exists()]
    bar = tqdm(total=len(todo), desc="scoring", unit="piece", disable=None)
    pending: set[Future] = set()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_start,
                             initargs=(score, max(1, _cores() // workers))) as pool:
        try:
            for k in todo:
                if len(pending) >= 2 * workers:  # wait for the first to finish: a late worker holds no queue
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
                    bar.update(len(done))
                pending.add(pool.submit(_score_piece, pieces[k], fi=index[pieces[k].file], k=k, root=str(work.root),
                                        columns=columns, schema=schema, as_of=as_of, files=plan.files))
            for f in as_completed(pending):
                f.result()
                bar.update()
        finally:
            for f in pending:
                f.cancel()
            bar.close()
    return len(pieces) - len(todo)

"""The bucket loop of a one-process job: buckets scored by threads, their parts written by another.

:func:`score_buckets` is :func:`riskml.batch.job.run_job`'s engine when
it scores in its own process (the other engines: worker processes,
:mod:`riskml.batch.pool`; a Dask cluster, :mod:`riskml.cluster.predict`).
Scoring a bucket holds the GIL only part of the time (pandas and Python);
the compiled kernels, numpy and Arrow release it. So two threads score
consecutive buckets, a third writes them in bucket order, and the reader
reads ahead in a fourth (:func:`riskml.batch.stream.partition`): the same parts,
the same output bytes as one bucket at a time.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numba as nb
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from riskml.batch import stream as batch
from riskml.batch import results
from riskml.batch.bucket import borrower_count, prepare, score_rows, write_bucket
from riskml.explain.kernel_threads import set_kernel_threads, share_of_threads

__all__ = ["SCORING_THREADS", "score_buckets", "scoring_threads"]

#: Buckets scored at once, each by its own thread: while one holds the GIL (pandas, Python), the other's
#: compiled kernels and numpy work run (1M borrowers, default model, 2 cores: 8.25 -> 7.76 s mean of 4).
SCORING_THREADS = 2


@nb.njit(parallel=True, cache=True)
def _launch(n):  # pragma: no cover - numba; starts numba's threading layer so that it can be asked which
    total = 0
    for i in nb.prange(n):
        total += i
    return total


def scoring_threads() -> int:
    """:data:`SCORING_THREADS`, or 1 where numba's threading layer cannot take parallel kernels from two
    threads at once (``workqueue`` aborts the process; ``omp`` and ``tbb`` can)."""
    _launch(2)
    return SCORING_THREADS if nb.threading_layer() in ("omp", "tbb") else 1


def score_buckets(plan: batch.Plan, work: batch.WorkDir, *, columns: list[str], schema: pa.Schema,
                   as_of: int | None, score: Callable[[pd.DataFrame], pd.DataFrame],
                   assembly: results.Assembly | None = None) -> int:
    """Score every bucket not already done into its part files; returns how many were resumed.

    :func:`scoring_threads` threads score consecutive buckets; a thread writes each bucket's parts,
    in bucket order, and adds them, finished or resumed, to ``assembly`` (Arrow releases the GIL
    while it encodes). At most ``SCORING_THREADS`` buckets are being scored and one waits to be
    written, and every write has finished (or failed, which stops the job) before this returns.
    """
    resumed, counts = 0, work.root / "counts"
    counts.mkdir(exist_ok=True)
    bar = tqdm(total=plan.n_buckets + 1, desc="scoring", unit="bucket", disable=None)
    writing: Future | None = None
    scoring: deque[tuple[Path, Path, Future | None]] = deque()  # in bucket order; None: resumed
    threads = scoring_threads()
    share = partial(set_kernel_threads, share_of_threads(threads))
    with ThreadPoolExecutor(1) as writer, ThreadPoolExecutor(threads, initializer=share) as scorers:
        def hand_on(limit: int) -> None:  # the oldest buckets to the writer, until ``limit`` are left
            nonlocal writing
            while len(scoring) > limit:
                part, rej_part, scored = scoring.popleft()
                if scored is None:
                    task = partial(assembly.add_part, part) if assembly is not None else None
                else:
                    task = partial(_write_and_add, *scored.result(), files=plan.files, part=part,
                                   rejects_part=rej_part, schema=schema, assembly=assembly)
                if task is not None:
                    if writing is not None:
                        writing.result()
                    writing = writer.submit(task)
                bar.update()

        for k, rows in batch.partition(plan, work, columns=columns, prepare=prepare):
            part, rej_part = work.part("scored", k), work.part("rejects", k)
            if k >= 0:  # distinct borrowers of the bucket, counted independently of scoring
                (counts / f"{k:05d}").write_text(str(borrower_count(rows)))
            if part.exists():
                resumed += 1
                scoring.append((part, rej_part, None))
            else:
                scoring.append((part, rej_part, scorers.submit(score_rows, rows, as_of=as_of, score=score,
                                                               schema=schema, no_id=k < 0)))
            hand_on(threads - 1)
        hand_on(0)
        if writing is not None:
            writing.result()
    bar.close()
    return resumed


def _write_and_add(scored: pd.DataFrame, rejects: pd.DataFrame, *, assembly: results.Assembly | None,
                   **kw: Any) -> None:
    table = write_bucket(scored, rejects, **kw)
    if assembly is not None:
        assembly.add(table)  # the rows just written, not read back



"""``riskml.predict`` on a Dask cluster: partitions of whole borrowers scored on the workers.

The input (a folder of parts or one big file) is read as pieces: row groups
of parquet files, whole CSV files. Where it is already partitioned by
borrower (each file sorted by ``borrower_id``, files in ascending disjoint id
ranges, as ``riskml.generate`` writes them) the pieces are cut between
borrowers and each is a partition: no shuffle. Otherwise the rows are read as
a Dask dataframe and repartitioned by ranges of ``borrower_id`` (the same
range buckets as the single-machine path), one shuffle.

Each partition is validated and scored on a worker by the single-machine
code (:func:`~riskml.batch.bucket.prepare`, :func:`~riskml.batch.bucket.score_piece`
with :func:`riskml.explain.scoring.score_histories`) and written as its part
files; :func:`~riskml.batch.job.run_job` holds the lock, the
fingerprint (which names this engine, so a single-machine job's parts are
never mixed in), checks conservation and assembles the output in borrower
order: the same rows as the single-machine output. Parts already finished by
a killed job are skipped on a rerun. Workers must see the input and the
output's folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from riskml.batch import stream as batch
from riskml.batch.bucket import prepare, score_piece
from riskml.batch.pieces import Piece, file_pieces, read_piece, row_group_pieces

_BUCKET = "_bucket"


def input_plan(client: Any, files: list[Path], *, bucket_rows: int) -> tuple[batch.Plan, bool]:
    """The whole input's plan from one plan per file (made on the workers), and whether it is already
    partitioned by borrower."""
    plans = client.gather(client.map(batch.plan, [str(f) for f in files], bucket_rows=bucket_rows, pure=False))
    with_ids = [p for p in plans if p.rows]
    rows = sum(p.rows for p in plans)
    lo = min((p.lo for p in with_ids), default=0)
    hi = max((p.hi for p in with_ids), default=0)
    by_borrower = all(p.grouped for p in plans) and all(a.hi < b.lo for a, b in zip(with_ids, with_ids[1:]))
    n = max(1, int(np.ceil(rows / bucket_rows)))
    plan = batch.Plan(tuple(Path(f) for f in files), rows, int(lo), int(hi), min(n, int(hi - lo + 1)), by_borrower,
                      bucket_rows)
    return plan, by_borrower


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """A pandas frame (what Dask reads and shuffles) as the Arrow table the batch job's steps take."""
    return pa.Table.from_pandas(frame, preserve_index=False)


def _numbered(piece: Piece, fi: int, columns: list[str]) -> pa.Table:
    """A piece's prepared rows, read as the single-machine job reads its input."""
    return prepare(batch.numbered(read_piece(piece, columns=columns), fi, piece.first_row))


def score_partition(rows: pd.DataFrame | tuple[Piece, int, list[str]], *, k: int, work: str, files: tuple[Path, ...],
                    schema: pa.Schema, as_of: int | None, score: Callable[[pd.DataFrame], pd.DataFrame]) -> int:
    """On a worker: validate, score and write partition ``k`` (shuffled prepared rows, or a piece to
    read); its row count."""
    if isinstance(rows, tuple):
        rows = _numbered(*rows)
    else:
        rows = _arrow(rows.drop(columns=[_BUCKET], errors="ignore").reset_index(drop=True))
    score_piece(rows, k=k, root=Path(work), as_of=as_of, score=score, schema=schema, files=files)
    return rows.num_rows


def _bucket(frame: pd.DataFrame, plan: batch.Plan) -> pd.DataFrame:
    ids = batch._ids(pa.table({"borrower_id": pa.array(frame["borrower_id"])}))
    # rows without an id go to bucket 0; score_partition rejects them wherever they are
    return frame.assign(**{_BUCKET: plan.bucket_of(np.nan_to_num(ids, nan=plan.lo)).astype(np.int64)})


def partitions(client: Any, plan: batch.Plan, *, by_borrower: bool, columns: list[str]) -> list[Any]:
    """One argument per partition for :func:`score_partition`: a piece (input by borrower) or a
    future of prepared rows after the shuffle by borrower range."""
    if by_borrower:
        return [(piece, fi, columns) for fi, f in enumerate(plan.files)
                for piece in file_pieces(f, target_rows=plan.bucket_rows)]
    import dask.dataframe as dd  # the cluster path only

    pieces = [(piece, fi, columns) for fi, f in enumerate(plan.files) for piece in row_group_pieces(f)]
    meta = _bucket(prepare(batch._empty(columns)).to_pandas(), plan)
    frame = dd.from_map(lambda p: _bucket(_numbered(*p).to_pandas(), plan), pieces, meta=meta, enforce_metadata=False)
    # range partitions of borrower_id: partition k holds bucket k (whole borrowers, in id order)
    n = plan.n_buckets
    shuffled = frame.set_index(_BUCKET, divisions=list(range(n)) + [n], sorted=False, drop=True)
    return client.compute(shuffled.to_delayed())


def job_plan(client: Any, files: list[Path], *, bucket_rows: int) -> tuple[batch.Plan, bool]:
    """The plan of a cluster job: its partitions are the pieces of whole borrowers (input by borrower)
    or the range buckets of the shuffle."""
    plan, by_borrower = input_plan(client, files, bucket_rows=bucket_rows)
    if by_borrower:
        n = sum(len(file_pieces(f, target_rows=bucket_rows)) for f in plan.files)
        plan = dataclasses.replace(plan, n_buckets=n)
    return plan, by_borrower


def score_parts(client: Any, plan: batch.Plan, work: batch.WorkDir, *, by_borrower: bool, columns: list[str],
                schema: pa.Schema, as_of: int | None, score: Callable[[pd.DataFrame], pd.DataFrame]) -> int:
    """Score every partition whose part is not in ``work`` yet; returns how many were resumed."""
    (work.root / "counts").mkdir(exist_ok=True)
    if all(work.part("scored", k).exists() for k in range(plan.n_buckets)):
        return plan.n_buckets  # nothing left: not even the shuffle runs again
    args = partitions(client, plan, by_borrower=by_borrower, columns=columns)
    todo = [k for k in range(len(args)) if not work.part("scored", k).exists()]
    scorer = client.scatter(score, broadcast=True)  # the models travel once per worker, not once per task
    futures = [client.submit(score_partition, args[k], k=k, work=str(work.root), files=plan.files, schema=schema,
                             as_of=as_of, score=scorer, pure=False) for k in todo]
    client.gather(futures)
    return len(args) - len(todo)

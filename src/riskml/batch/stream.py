"""Files of a batch job: stream any-size input by borrower, resumable parts.

The input (a parquet/CSV file or a folder of parts, rows in any order) is
split into *buckets* of whole borrowers so that each bucket fits in memory
and the buckets, processed in order, give output sorted by borrower: input
already sorted by borrower (as panels are written) is cut into buckets as it
streams; any other order is first partitioned to disk by ranges of
``borrower_id``. Both give the same output bytes. Each bucket's result is written as an atomic part file in
a work folder beside the output; a job killed half-way and started again
skips the parts already complete, and the final output is assembled from the
parts and renamed into place only when whole (:mod:`riskml.batch.results`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from riskml.exceptions import InputError
from riskml.cells import exact_integers
from riskml.io.files import PARQUET_OPTIONS, table_files

ROW = "_row"    # 0-based row number within its source file
FILE = "_file"  # index of the source file in the input's file list
#: A bucket's part in the work folder: an Arrow IPC file (``riskml.batch.results.write_part``)
PART_SUFFIX = ".arrow"


#: How long (ms) Arrow's pool keeps freed pages for reuse during a batch job (jemalloc's own default)
DECAY_MS = 10_000


def reuse_memory(decay_ms: int = DECAY_MS) -> pa.MemoryPool | None:
    """Make Arrow allocate from its jemalloc pool, which keeps freed pages for ``decay_ms``
    before it returns them to the OS; returns the pool it replaces (None: pyarrow was built
    without jemalloc, and nothing changed).

    Every bucket of a batch job allocates and frees the same large buffers (parquet pages,
    columns, parts). pyarrow's default pool, mimalloc, hands them back to the OS at once, and the
    kernel zeroes each fresh huge page again for the next bucket: 7% of a 1M-borrower job's CPU
    under ``perf``; with this pool, 1M borrowers took 12.3 s instead of 14.0 (mean of 3).
    """
    if "jemalloc" not in pa.supported_memory_backends():
        return None
    before = pa.default_memory_pool()
    pa.jemalloc_set_decay_ms(decay_ms)  # before the pool's first use: it applies to arenas made later
    pa.set_memory_pool(pa.jemalloc_memory_pool())
    return before


@contextlib.contextmanager
def reused_memory(decay_ms: int = DECAY_MS) -> Iterator[None]:
    """:func:`reuse_memory` for the ``with`` block; the earlier pool comes back after it."""
    before = reuse_memory(decay_ms)
    try:
        yield
    finally:
        if before is not None:
            pa.set_memory_pool(before)


def part_path(root: Path, kind: str, i: int) -> Path:
    """The ``kind`` part (``scored`` or ``rejects``) of bucket ``i`` in the work folder ``root``."""
    return root / "parts" / f"{kind}-{i:05d}{PART_SUFFIX}"


def input_columns(path: Path) -> list[str]:
    """Column names of a data file without reading its rows."""
    try:
        if path.suffix == ".parquet":
            return list(pq.read_schema(path).names)
        # the CSV reader's own header (quoted names, a BOM, CRLF); cells are read as strings later
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20)) as reader:
            return [c.strip() for c in reader.schema.names]
    except (OSError, UnicodeDecodeError, pa.ArrowException) as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def iter_batches(path: Path, *, columns: list[str] | None = None, batch_rows: int = 262_144
                 ) -> Iterator[pa.Table]:
    """Stream one file as Arrow tables of raw values (CSV cells stay strings, so
    bad values reach validation instead of failing the read)."""
    have = set(input_columns(path)) if columns is not None else set()
    read = None if columns is None else [c for c in columns if c in have]
    try:
        if path.suffix == ".parquet":
            # row group by row group: ParquetFile.iter_batches kept ~2.6 MiB of Arrow
            # memory per batch alive (pyarrow 25), so memory grew with the input
            f = pq.ParquetFile(path)
            for g in range(f.metadata.num_row_groups):
                t = with_columns(f.read_row_group(g, columns=read), columns)
                for i in range(0, max(t.num_rows, 1), batch_rows):
                    yield t.slice(i, batch_rows)
        else:
            names = input_columns(path)
            convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in names},
                                           include_columns=read, strings_can_be_null=True)
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                                    convert_options=convert)
            for b in reader:
                yield with_columns(pa.Table.from_batches([b]), columns)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def with_columns(table: pa.Table, columns: list[str] | None) -> pa.Table:
    """``table`` with every column of ``columns`` it lacks as empty cells (an optional column one part of a
    folder has and another not: missing for that part's rows only, not dropped for every part)."""
    for c in columns or ():
        if c not in table.column_names:
            table = table.append_column(c, pa.nulls(table.num_rows, pa.string()))
    return table


def _ids(table: pa.Table) -> np.ndarray:
    """borrower_id as float, for planning and cutting buckets (NaN where missing or not a whole number):
    read by the one rule every path reads ids by (:func:`riskml.cells.exact_integers`)."""
    values, ok = exact_integers(table.column("borrower_id"))
    return values.astype(np.float64) if ok.all() else np.where(ok, values, np.nan)


@dataclass(frozen=True)
class Plan:
    """How an input splits into buckets: id range, rows and bucket count."""

    files: tuple[Path, ...]
    rows: int
    lo: int
    hi: int
    n_buckets: int
    grouped: bool = False  # ids never decrease in file order: buckets can be cut as the input streams
    bucket_rows: int = 0

    def bucket_of(self, ids: np.ndarray) -> np.ndarray:
        width = (self.hi - self.lo + 1) / self.n_buckets
        return np.minimum(((ids - self.lo) / width).astype(np.int64), self.n_buckets - 1)

    def fingerprint(self, extra: dict) -> str:
        """What a resumed job must share with the killed one to reuse its parts: the input files
        (path, size, mtime), this plan (bucket size, id range, bucket count) and ``extra`` (the
        job's settings and the checksum of every model it uses)."""
        plan = {"rows": self.rows, "lo": self.lo, "hi": self.hi, "n_buckets": self.n_buckets,
                "grouped": self.grouped, "bucket_rows": self.bucket_rows}
        # the parts' format: a work folder of another riskml's parts starts clean
        return fingerprint(self.files, {"plan": plan, "job": extra, "parts": PART_SUFFIX})


def fingerprint(files: tuple[Path, ...] | list[Path], extra: dict) -> str:
    """What a job's parts depend on: each input file (path, size, mtime) and ``extra`` (plan, models, options)."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def plan(path: str | Path, *, bucket_rows: int) -> Plan:
    """One pass over ``borrower_id`` only: row count, id range, bucket count."""
    files = tuple(table_files(path))
    rows, lo, hi, last, grouped = 0, np.inf, -np.inf, -np.inf, True
    for f in files:
        for b in iter_batches(f, columns=["borrower_id"]):
            ids = _ids(b)
            rows += len(b)
            ids = ids[np.isfinite(ids)]
            if ids.size:
                lo, hi = min(lo, ids.min()), max(hi, ids.max())
                grouped = grouped and ids[0] >= last and bool((np.diff(ids) >= 0).all())
                last = ids[-1]
    if not np.isfinite(lo):
        lo = hi = 0
    n = max(1, int(np.ceil(rows / bucket_rows)))
    return Plan(files, rows, int(lo), int(hi), min(n, int(hi - lo + 1)), grouped, bucket_rows)


class WorkDir:
    """The resumable state of one job: bucket files and finished parts."""

    def __init__(self, output: Path, fingerprint: str):
        self.root = output.with_name(f".{output.name}.work")
        stamp = self.root / "fingerprint"
        if self.root.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
            shutil.rmtree(self.root)  # another job's leftovers: start clean
        (self.root / "buckets").mkdir(parents=True, exist_ok=True)
        (self.root / "parts").mkdir(exist_ok=True)
        stamp.write_text(fingerprint)

    def part(self, kind: str, i: int) -> Path:
        return part_path(self.root, kind, i)

    def parts(self, kind: str) -> list[Path]:
        return sorted((self.root / "parts").glob(f"{kind}-*{PART_SUFFIX}"))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


Prepare = Callable[[pa.Table], pa.Table]


def _numbered(p: Plan, columns: list[str], prepare: Prepare) -> Iterator[pa.Table]:
    """The input's prepared batches with ``_file`` and ``_row``, read about a bucket ahead."""
    def batches() -> Iterator[pa.Table]:
        for fi, f in enumerate(p.files):
            start = 0
            for b in iter_batches(f, columns=columns):
                yield prepare(numbered(b, fi, start))
                start += b.num_rows
    return _ahead(batches(), rows=p.bucket_rows)


def numbered(raw: pa.Table, fi: int, first_row: int) -> pa.Table:
    """``raw`` with ``_file`` (its file's index in the input) and ``_row`` (file rows from ``first_row``)."""
    n = raw.num_rows
    return raw.append_column(FILE, pa.array(np.full(n, fi, dtype=np.int32))).append_column(
        ROW, pa.array(np.arange(first_row, first_row + n, dtype=np.int64)))


#: Batches read ahead at most (a batch is at most a parquet row group or 16 MiB of CSV)
MAX_AHEAD = 8


def _ahead(items: Iterator[pa.Table], *, rows: int = 0) -> Iterator[pa.Table]:
    """``items`` made ahead in a thread, about ``rows`` rows ahead (at least one item): reading and
    decoding parquet (Arrow releases the GIL) overlaps with the caller's work on the bucket before.

    One item ahead was not enough: a bucket takes several batches, and the caller waited for all
    but the first of them (1.9 s of a 13 s job at 1M borrowers).
    """
    end = object()
    with ThreadPoolExecutor(1) as pool:  # one thread: the generator is only ever advanced by it
        pending = deque([pool.submit(next, items, end)])
        seen = count = 0
        while (item := pending.popleft().result()) is not end:
            seen, count = seen + item.num_rows, count + 1
            # pending x mean rows per item < rows, and never more than MAX_AHEAD items: batches without
            # rows (an empty file) or a huge bucket would otherwise queue reads without end
            while not pending or (len(pending) < MAX_AHEAD and len(pending) * seen < rows * count):
                pending.append(pool.submit(next, items, end))
            yield item


def partition(p: Plan, work: WorkDir, *, columns: list[str], prepare: Prepare) -> Iterator[tuple[int, pa.Table]]:
    """Yield (bucket, rows) for every bucket, with ``_file`` and ``_row`` added.

    ``prepare`` turns each raw batch into canonical dtypes (the same for every
    file, CSV or parquet). One bucket is read straight from the input; more
    are first written as bucket files (once: a resumed job reuses them). Rows
    without a usable ``borrower_id`` come in bucket -1 so the caller can
    reject them.
    """
    if p.n_buckets > 1 and p.grouped:
        yield from _stream_grouped(p, columns, prepare)
        return
    done, root = work.root / "buckets" / "complete", work.root / "buckets"
    if p.n_buckets > 1 and not done.exists():
        # One small file per (input batch, bucket) rather than one open writer per
        # bucket: open parquet writers hold ~15 MiB each, which grew with N.
        shutil.rmtree(root)
        root.mkdir()
        for j, b in enumerate(_numbered(p, columns, prepare)):
            ids = _ids(b)
            bucket = np.where(np.isnan(ids), -1, p.bucket_of(np.nan_to_num(ids)))
            for k in np.unique(bucket):
                folder = root / f"b{k:05d}"
                folder.mkdir(exist_ok=True)
                pq.write_table(b.filter(pa.array(bucket == k)), folder / f"{j:07d}.parquet", **PARQUET_OPTIONS)
        done.write_text("ok")
    if p.n_buckets == 1:
        frames = list(_numbered(p, columns, prepare))
        whole = concat(frames) if frames else prepare(_empty(columns))
        missing = np.isnan(_ids(whole))
        yield -1, whole.filter(pa.array(missing))
        yield 0, whole.filter(pa.array(~missing))
        return
    for k in range(-1, p.n_buckets):
        folder = root / f"b{k:05d}"
        pieces = sorted(folder.glob("*.parquet")) if folder.exists() else []
        yield k, (concat([pq.read_table(f) for f in pieces]) if pieces else prepare(_empty(columns)))


def _stream_grouped(p: Plan, columns: list[str], prepare: Prepare) -> Iterator[tuple[int, pa.Table]]:
    """Buckets of input sorted by borrower, cut at borrower boundaries as it streams:
    no partition files to write (the common case: panels are written sorted)."""
    k, pending, pending_ids, n, missing = 0, [], [], 0, []
    for b in _numbered(p, columns, prepare):
        ids = _ids(b)  # each batch's ids once: not again on the joined rows of a bucket
        bad = np.isnan(ids)
        if bad.any():
            missing.append(b.filter(pa.array(bad)))
            b, ids = b.filter(pa.array(~bad)), ids[~bad]
        pending.append(b)
        pending_ids.append(ids)
        n += b.num_rows
        if n >= p.bucket_rows:
            rows, ids = concat(pending), np.concatenate(pending_ids)
            while rows.num_rows >= p.bucket_rows:
                # cut after the borrower at bucket_rows; the last borrower may go on in the next batch
                end = int(np.searchsorted(ids, ids[p.bucket_rows - 1], side="right"))
                if end == rows.num_rows:
                    break
                yield k, rows.slice(0, end)
                k, rows, ids = k + 1, rows.slice(end), ids[end:]
            pending, pending_ids, n = [rows], [ids], rows.num_rows
    if n:
        yield k, concat(pending)
    yield -1, concat(missing) if missing else prepare(_empty(columns))


def concat(tables: list[pa.Table]) -> pa.Table:
    """Tables of one input, whose files may type a column differently (int16 here, float64 there)."""
    return pa.concat_tables(tables, promote_options="permissive")


def _empty(columns: list[str]) -> pa.Table:
    return pa.table({**{c: pa.array([], pa.string()) for c in columns},
                     FILE: pa.array([], pa.int32()), ROW: pa.array([], pa.int64())})

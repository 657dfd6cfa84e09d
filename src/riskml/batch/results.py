"""A batch job's parts and its assembled output.

Each bucket's result is an atomic part file in the job's work folder
(:func:`write_part`: an uncompressed Arrow IPC file, read back once). The output is the
parts concatenated in order and re-cut into row groups of a fixed size, so
its bytes do not depend on how the job was cut: after the job
(:func:`assemble`: a parquet or CSV file, or a folder of parquet parts with a
manifest) or while it runs (:class:`Assembly`, one parquet file). Either way
it takes the output's name only when whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from riskml.batch.stream import concat
from riskml.io.files import (PARQUET_OPTIONS, PARTS_KIND, PARTS_MANIFEST, atomic_dir, atomic_path, clean_stale_temps,
                               sha256_file, write_json)


def write_part(df: pd.DataFrame, path: Path, schema: pa.Schema) -> pa.Table:
    """Write ``df`` as the part ``path`` (atomically); returns the table written.

    A part is an uncompressed Arrow IPC file: read back once (conservation, a resumed bucket), it is
    the table's own buffers on disk, written in a third of an uncompressed parquet file's time and
    read without decoding.
    """
    table = to_table(df, schema)
    write_table_part(table, path)
    return table


def write_table_part(table: pa.Table, path: Path) -> Path:
    """Write an Arrow table as the part ``path`` (atomically), as :func:`write_part` does; returns ``path``."""
    with atomic_path(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    return path


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A part :func:`write_part` wrote (memory-mapped: only the columns asked for are read)."""
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    return table.select(columns) if columns is not None else table


def _options(schema: pa.Schema) -> dict:
    """Parquet options: dictionary encoding for text columns only (on noisy floats the writer hashed
    every value in vain: 1.5x the time and a 25% larger file)."""
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_dictionary(f.type)]
    return {**PARQUET_OPTIONS, "use_dictionary": text}


def to_table(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``df`` as an Arrow table of ``schema``; categorical columns go through their codes
    (``from_pandas`` with a string type made a Python string per row: 1 s per 500k rows)."""
    arrays = []
    for f in schema:
        col = df[f.name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = np.asarray(col.cat.codes)
            values = pa.array(np.asarray(col.cat.categories, dtype=object), pa.string())
            arr = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), values).cast(f.type)
        else:
            arr = pa.array(col, type=f.type, from_pandas=True)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


class _RowGroups:
    """Tables re-cut, as they come, into row groups of ``size`` rows: the same cuts whatever the
    tables' sizes (so the output's bytes do not depend on the buckets or partitions)."""

    def __init__(self, size: int):
        self.size, self.pending, self.held = size, [], 0

    def add(self, t: pa.Table) -> list[pa.Table]:
        """The row groups ``t`` completes."""
        self.pending.append(t)
        self.held += t.num_rows
        if self.held < self.size:
            return []
        t = concat(self.pending)
        cut = t.num_rows - t.num_rows % self.size
        self.pending, self.held = ([t.slice(cut)] if cut < t.num_rows else []), t.num_rows - cut
        return [t.slice(i, self.size) for i in range(0, cut, self.size)]

    def rest(self) -> list[pa.Table]:
        """The last, shorter row group (if any rows are left)."""
        return [concat(self.pending)] if self.held else []


#: How an output shows the rows of its parts (e.g. in a lender's names); parts keep riskml's own.
Present = Callable[[pa.Table], pa.Table]


def _same(table: pa.Table) -> pa.Table:
    return table


def _read_parts(parts: list[Path], schema: pa.Schema, row_group: int, present: Present = _same
                ) -> Iterator[pa.Table]:
    """The rows of the finished parts, in order, in row groups of ``row_group`` rows (the last shorter)."""
    groups = _RowGroups(row_group)
    for part in parts:
        yield from groups.add(present(read_part(part).cast(schema)))
    yield from groups.rest()


class Assembly:
    """A parquet output assembled while the job runs: :meth:`add_part` takes the finished parts in
    order (in a writer thread, beside the scoring), :meth:`commit` renames the whole file into place
    (after conservation is checked) and :meth:`abort` removes it. The bytes are :func:`assemble`'s
    of the same parts: the same row groups, the same options. Until the commit the file has a
    temporary name (``.<name>.tmp-<pid>``, which riskml cleans up after a kill), so nothing
    half-written ever carries the output's name.
    """

    def __init__(self, output: Path, schema: pa.Schema, *, row_group: int = 65_536, present: Present = _same):
        self.output, self.schema, self.present = Path(output), schema, present
        clean_stale_temps(self.output)
        self.tmp = self.output.with_name(f".{self.output.name}.tmp-{os.getpid()}")
        shown = present(schema.empty_table()).schema
        self.writer = pq.ParquetWriter(self.tmp, shown, **_options(shown))
        self.groups = _RowGroups(row_group)

    def add(self, table: pa.Table) -> None:
        """Append a bucket's rows (the table :func:`write_part` wrote, or a resumed part read back)."""
        for t in self.groups.add(self.present(table)):
            self.writer.write_table(t)

    def add_part(self, part: Path) -> None:
        """Append a finished part, read back as :func:`assemble` reads it."""
        self.add(read_part(part).cast(self.schema))

    def commit(self) -> None:
        for t in self.groups.rest():
            self.writer.write_table(t)
        self.writer.close()
        os.replace(self.tmp, self.output)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def assemble(parts: list[Path], output: Path, schema: pa.Schema, *, fmt: str, row_group: int = 65_536,
             part_rows: int = 1_048_576, present: Present = _same) -> int:
    """Concatenate finished parts into ``output`` atomically; return the row count.

    Rows are re-cut into row groups of ``row_group`` rows, so the bytes do not
    depend on how many buckets (or cluster partitions) the job used. With
    ``fmt="parts"`` the output is a folder of parquet files of ``part_rows``
    rows each (``part-00000.parquet``...) and a ``_manifest.json`` with each
    file's rows and sha256, which readers skip; it replaces an earlier
    prediction folder whole. ``present`` shows the parts' rows (``schema``) as the output has them.
    """
    rows, parts_schema = 0, schema
    schema = present(schema.empty_table()).schema
    if fmt != "parts":
        with atomic_path(output) as tmp:
            writer = (pq.ParquetWriter(tmp, schema, **_options(schema)) if fmt == "parquet"
                      else pacsv.CSVWriter(tmp, schema))
            with writer as w:
                for t in _read_parts(parts, parts_schema, row_group, present):
                    w.write_table(t)
                    rows += t.num_rows
        return rows
    per_file = max(1, part_rows // row_group)
    with atomic_dir(output) as folder:
        files: list[dict] = []
        writer = None
        for i, t in enumerate(_read_parts(parts, parts_schema, row_group, present)):
            if i % per_file == 0:
                if writer is not None:
                    writer.close()
                files.append({"file": f"part-{len(files):05d}.parquet", "rows": 0})
                writer = pq.ParquetWriter(folder / files[-1]["file"], schema, **_options(schema))
            writer.write_table(t)
            files[-1]["rows"] += t.num_rows
            rows += t.num_rows
        if writer is None:  # no rows: one empty part, so the folder still reads with its schema
            files.append({"file": "part-00000.parquet", "rows": 0})
            pq.write_table(schema.empty_table(), folder / files[0]["file"], **_options(schema))
        else:
            writer.close()
        for f in files:
            f["sha256"] = sha256_file(folder / f["file"])
        write_json({"kind": PARTS_KIND, "rows": rows, "columns": schema.names, "parts": files},
                   folder / PARTS_MANIFEST)
    return rows


def assemble_rejects(parts: list[Path], path: Path, *, fmt: str) -> pd.DataFrame:
    """Concatenate the finished reject parts into ``path`` (parquet or CSV, atomically); return them."""
    rej = concat([read_part(p) for p in parts]).to_pandas()
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            rej.to_parquet(tmp, index=False, **PARQUET_OPTIONS)
        else:
            rej.to_csv(tmp, index=False)
    return rej

"""Pieces of parquet files that hold whole borrowers: the partitions of a cluster job.

A file sorted by borrower (as riskml writes panels) is cut between row
groups where the next group starts with a new borrower, using only the
footer's statistics (no rows are read); consecutive groups are joined until a
piece holds about ``target_rows`` rows. Each piece knows the file row of its
first row, so rejects name the same file and row as the single-machine path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from riskml.batch.stream import iter_batches, with_columns


@dataclass(frozen=True)
class Piece:
    """Row groups ``groups`` of ``file`` (all of it when ``None``), starting at file row ``first_row``."""

    file: str
    groups: tuple[int, ...] | None
    first_row: int = 0
    rows: int = 0


def file_pieces(file: str | Path, *, target_rows: int) -> list[Piece]:
    """The pieces of one file, in file order; a CSV file, or parquet without id statistics, is one piece."""
    file = Path(file)
    if file.suffix != ".parquet":
        return [Piece(str(file), None)]
    meta = pq.ParquetFile(file).metadata
    col = meta.schema.to_arrow_schema().get_field_index("borrower_id")
    pieces, groups, first, rows, start, last = [], [], 0, 0, 0, None
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        stats = group.column(col).statistics if col >= 0 else None
        if stats is None or not stats.has_min_max:
            return [Piece(str(file), None, 0, meta.num_rows)]
        if groups and rows >= target_rows and stats.min != last:  # a new borrower starts here: a cut
            pieces.append(Piece(str(file), tuple(groups), first, rows))
            groups, first, rows = [], start, 0
        groups.append(g)
        rows += group.num_rows
        start += group.num_rows
        last = stats.max
    if groups or not pieces:
        pieces.append(Piece(str(file), tuple(groups), first, rows))
    return pieces


def read_piece(piece: Piece, *, columns: list[str] | None = None) -> pa.Table:
    """The raw rows of one piece (CSV cells stay strings, as :func:`riskml.batch.stream.iter_batches` reads them)."""
    if piece.groups is None:
        return pa.concat_tables(list(iter_batches(Path(piece.file), columns=columns)))
    f = pq.ParquetFile(piece.file)
    have = set(f.schema_arrow.names)
    read = None if columns is None else [c for c in columns if c in have]
    return with_columns(f.read_row_groups(list(piece.groups), columns=read), columns)


def row_group_pieces(file: str | Path) -> list[Piece]:
    """One piece per row group of a parquet file (a CSV file: one piece), whole borrowers or not."""
    file = Path(file)
    if file.suffix != ".parquet":
        return [Piece(str(file), None)]
    meta = pq.ParquetFile(file).metadata
    starts = [0]
    for g in range(meta.num_row_groups):
        starts.append(starts[-1] + meta.row_group(g).num_rows)
    return [Piece(str(file), (g,), starts[g], starts[g + 1] - starts[g]) for g in range(meta.num_row_groups)] \
        or [Piece(str(file), None)]

"""A lender's input files in the panel contract, for the jobs of a model trained in the lender's schema.

``riskml.predict`` and ``riskml.monitor`` stream riskml's own columns through every engine (threads,
processes, Dask). A file in the lender's names and codes is first written as contract parquet, one file per
input file, row for row and in the same order (so a reject's file row is the lender's own row), into a work
folder beside the output; the job then reads that, and its rejects name the lender's files again.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskml.batch import stream as batch
from riskml.io.files import PARQUET_OPTIONS, atomic_path, table_files, write_parquet
from riskml.io.lender import LenderSchema, is_text_months


def model_schema(info: Mapping[str, Any] | None, path: str | Path) -> LenderSchema | None:
    """The lender's schema a system was trained in, when the input at ``path`` is in it (its first file has
    the schema's id column and no ``borrower_id``); ``None``: read it as riskml's own panel."""
    raw = (info or {}).get("schema")
    if not raw:
        return None
    schema = LenderSchema.from_dict(raw, source="the model's schema")
    header = batch.input_columns(table_files(path)[0])
    return None if "borrower_id" in header and schema.id not in header else schema


def contract_predictions(info: Mapping[str, Any] | None, predictions: pd.DataFrame) -> pd.DataFrame:
    """Predictions a system trained in a lender's schema answered in its terms, back in riskml's (a monitor
    reading ``riskml.predict``'s output); any other predictions as they are."""
    raw = (info or {}).get("schema")
    return LenderSchema.from_dict(raw, source="the model's schema").contract_predictions(predictions) if raw \
        else predictions


@dataclass
class Translated:
    """A lender's input as contract parquet: the work folder, the lender's files in its order, the rows
    whose state code the schema does not map (``file``, ``row``, ``code``: named in their rejects), and whether
    its months are dates or ``YYYY-MM`` (its answers then give months in that form)."""

    folder: Path
    files: list[Path]
    codes: pd.DataFrame
    text_months: bool = False

    def present(self, schema: LenderSchema):
        """How a job's output shows its rows in the lender's terms (``batch.results.Present``)."""
        return partial(schema.present, text_months=self.text_months)


@contextlib.contextmanager
def contract_input(path: str | Path, schema: LenderSchema, near: Path) -> Iterator[Translated]:
    """``path``'s files translated to contract parquet in a work folder beside ``near`` (removed after)."""
    files = table_files(path)
    work = Path(tempfile.mkdtemp(prefix=".riskml-lender-", dir=Path(near).absolute().parent))
    codes, text_months = [], False
    try:
        for i, f in enumerate(files):
            columns = schema.read_columns(batch.input_columns(f), file=f)
            writer, start = None, 0
            try:
                for b in batch.iter_batches(f, columns=columns):
                    text_months |= is_text_months(b.column(schema.month))
                    rows, values = schema.unmapped(b)
                    codes.append(pd.DataFrame({"file": str(f), "row": rows + start, "code": values}))
                    start += b.num_rows
                    t = schema.to_contract(b)
                    t = t.cast(pa.schema([(n, pa.string()) if pa.types.is_null(t.schema.field(n).type)
                                          else t.schema.field(n) for n in t.column_names]))
                    if writer is None:
                        writer = pq.ParquetWriter(work / f"part-{i:05d}.parquet", t.schema, **PARQUET_OPTIONS)
                    writer.write_table(t.cast(writer.schema))
            finally:
                if writer is not None:
                    writer.close()
        yield Translated(work, files, pd.concat(codes, ignore_index=True) if codes else
                         pd.DataFrame(columns=["file", "row", "code"]), text_months)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def name_files(rejects: Path, translated: Translated, schema: LenderSchema) -> None:
    """A job's rejects file in the lender's terms: its rows naming the lender's files instead of the work
    folder's parts, the state codes the schema does not map, and the lender's id name."""
    work, files = translated.folder, translated.files
    if not rejects.is_file():
        return
    csv = rejects.suffix == ".csv"
    rej = pd.read_csv(rejects, dtype={"borrower_id": "Int64"}) if csv else pd.read_parquet(rejects)
    names = {str(work / f"part-{i:05d}.parquet"): str(f) for i, f in enumerate(files)}
    rej["file"] = rej["file"].astype(str).map(names).fillna(rej["file"].astype(str))
    rej = schema.name_codes(rej, translated.codes).rename(columns={"borrower_id": schema.id})
    if csv:
        with atomic_path(rejects) as tmp:
            rej.to_csv(tmp, index=False)
    else:
        write_parquet(rej, rejects)

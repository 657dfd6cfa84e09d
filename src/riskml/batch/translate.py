"""A lender's input files in the panel contract, for the jobs of a model trained in the lender's schema.

``riskml.predict`` and ``riskml.monitor`` stream riskml's own columns through every engine (threads,
processes, Dask). A file in the lender's names and codes is first written as contract parquet, one file per
input file, row for row and in the same order (so a reject's file row is the lender's own row), into a work
folder beside the output; the job then reads that, and its rejects name the lender's files again. A killed
job's translation is reused by its rerun, so the job resumes from its finished buckets as any other.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskml.batch import stream as batch
from riskml.io.files import PARQUET_OPTIONS, atomic_path, job_lock, read_json, table_files, write_json, write_parquet
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
    """``path``'s files translated to contract parquet in a work folder beside ``near``.

    The folder (``.<near's name>.lender``) is removed once the block ends normally. A job killed or failed
    inside it leaves the folder, and a rerun on the same files and schema reuses the translation as it is
    (its files untouched, so the job's own fingerprint matches and its finished buckets resume); other files
    or another schema translate anew. One job at a time translates for ``near`` (a lock).
    """
    files = table_files(path)
    near = Path(near).absolute()
    work = near.with_name(f".{near.name}.lender")
    stamp = batch.fingerprint(files, {"schema": schema.to_dict(), "translation": 1})
    with job_lock(work, what="translation of a lender's files"):
        done = work / "translated.json"
        if done.is_file() and read_json(done).get("fingerprint") == stamp:
            got = read_json(done)
            translated = Translated(work / "input", files, pd.read_parquet(work / "codes.parquet"),
                                    got["text_months"])
        else:
            shutil.rmtree(work, ignore_errors=True)
            (work / "input").mkdir(parents=True)  # the job's input: the translated parts alone
            translated = _translate(files, schema, work / "input")
            translated.codes.astype({"file": str}).to_parquet(work / "codes.parquet", index=False)
            write_json({"fingerprint": stamp, "text_months": translated.text_months}, done)  # last: complete
        yield translated
        shutil.rmtree(work, ignore_errors=True)


def _translate(files: list[Path], schema: LenderSchema, work: Path) -> Translated:
    """Each of ``files`` as contract parquet in ``work`` (``part-<i>.parquet``), row for row."""
    codes, text_months = [], False
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
    return Translated(work, files, pd.concat(codes, ignore_index=True) if codes else
                      pd.DataFrame({"file": pd.Series(dtype=str), "row": pd.Series(dtype=np.int64),
                                    "code": pd.Series(dtype=object)}), text_months)


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

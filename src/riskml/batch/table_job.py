"""Score a table (one row per applicant or account) with a tabular model: streamed, resumable, rows conserved.

The same machinery as the history batch (:mod:`riskml.batch.stream`): the
input (a CSV/parquet file or a folder of parts) streams in buckets of
``bucket_rows`` rows in file order; each bucket's scored rows and rejects
are atomic part files in a work folder beside the output, so a killed job
started again skips its finished buckets; the output is assembled from the
parts and renamed into place when whole, the summary written last. Input
rows = scored + rejected, checked before the summary is written. A table
that lacks a column the model needs stops the job before anything is written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from riskml import __version__
from riskml.batch import stream as batch
from riskml.batch import results
from riskml.batch.job import BatchResult, check_conservation, check_outputs, job_frame
from riskml.io.files import read_table, write_json
from riskml.exceptions import ModelError
from riskml.explain.scoring import ScoringModel
from riskml.explain.tabular_scoring import UNSEEN, check_rows, score_table, table_columns, table_schema


def check_table_input(path: str | Path, model: ScoringModel) -> tuple[list[Path], list[str]]:
    """The input's files and the columns to read; a file lacking one the model needs stops here."""
    id_column, features = table_columns(model)
    files = batch.table_files(path)
    need = [id_column, *features]
    for f in files:
        have = set(batch.input_columns(f))
        missing = [c for c in need if c not in have]
        if missing:
            raise ModelError(f"{f}: the model {model.name!r} needs column(s) {missing} that the table lacks; "
                             f"expected its id column {id_column!r} and the {len(features)} feature columns it was "
                             f"trained on, e.g. {features[:5]}")
    return files, need


def _chunks(files: Sequence[Path], columns: list[str], size: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """Buckets of ``size`` rows in file order, each row with its file index and 0-based row number."""
    k, pending, n = 0, [], 0
    for fi, f in enumerate(files):
        start = 0
        for b in batch.iter_batches(f, columns=columns):
            b = b.to_pandas()  # Arrow batches (CSV cells as strings, so bad values reach the checks)
            pending.append(b.assign(**{batch.FILE: np.int32(fi), batch.ROW: np.arange(start, start + len(b))}))
            start, n = start + len(b), n + len(b)
            while n >= size:
                rows = pd.concat(pending, ignore_index=True)
                yield k, rows.iloc[:size].reset_index(drop=True)
                k, pending, n = k + 1, [rows.iloc[size:]], n - size
    if n or k == 0:
        yield k, (pd.concat(pending, ignore_index=True) if pending else
                  pd.DataFrame({c: pd.Series([], dtype="string") for c in columns}).assign(
                      **{batch.FILE: np.int32(0), batch.ROW: np.int64(0)}))


def _unseen_counts(values: pd.Series) -> dict[str, dict[str, int]]:
    """``"region=moon; job=x"`` per row -> column -> level -> rows."""
    pairs = values.dropna().str.split("; ").explode().str.split("=", n=1, expand=True)
    if pairs.empty:
        return {}
    counts = pairs.groupby([0, 1]).size()
    return {str(c): {str(v): int(n) for v, n in counts[c].items()} for c in counts.index.get_level_values(0).unique()}


def run_table_job(*, input: str | Path, output: str | Path, model: ScoringModel, fmt: str, bucket_rows: int,
                  top_k: int, include_other: bool, band_edges: Sequence[float], band_labels: Sequence[str],
                  settings: dict[str, Any], summary_extra: dict[str, Any]) -> BatchResult:
    """Score the table ``input`` into ``output`` (+ rejects and summary beside it); see the module docstring."""
    t0 = time.perf_counter()
    files, columns = check_table_input(input, model)
    id_column, features = table_columns(model)
    categories = {c: list(v) for c, v in (model.manifest.get("categories") or {}).items() if c in features}
    numeric = [c for c in features if c not in categories]
    schema = table_schema(model, top_k)
    reject_schema = pa.schema([(id_column, pa.string()), ("file", pa.string()), ("row", pa.int64()),
                               ("reason", pa.string())])
    output = check_outputs(output, [Path(input), *files])
    with job_frame(output) as (rejects_path, summary_path):
        work = batch.WorkDir(output, batch.fingerprint(files, settings))
        resumed = _score_buckets(files, columns, work, model, bucket_rows=bucket_rows, top_k=top_k,
                                 include_other=include_other, band_edges=band_edges, band_labels=band_labels,
                                 schema=schema, reject_schema=reject_schema, id_column=id_column, numeric=numeric,
                                 categories=categories)
        input_rows = sum(int(f.read_text()) for f in (work.root / "counts").iterdir())
        check_conservation(work, output, input_count=input_rows, unit="row",
                           scored=sum(results.read_part(p, columns=["risk_band"]).num_rows
                                      for p in work.parts("scored")),
                           rejected=sum(results.read_part(p, columns=["row"]).num_rows
                                        for p in work.parts("rejects")))
        n_scored = results.assemble(work.parts("scored"), output, schema, fmt=fmt)
        rej = results.assemble_rejects(work.parts("rejects"), rejects_path, fmt=fmt)
        scored = batch.concat([results.read_part(p, columns=["risk_band", UNSEEN])
                               for p in work.parts("scored")]).to_pandas()
        seconds = time.perf_counter() - t0
        summary = {
            "kind": "table", "input": [str(f) for f in files], "input_rows": input_rows,
            "scored_rows": int(n_scored), "rejected_rows": int(len(rej)),
            "rejects_by_reason": {str(k): int(v) for k, v in rej["reason"].value_counts().sort_index().items()},
            "unseen_categories": _unseen_counts(scored[UNSEEN]),
            "risk_band": {str(k): int(v) for k, v in scored["risk_band"].value_counts().sort_index().items()},
            "buckets": len(work.parts("scored")), "resumed_buckets": resumed, "seconds": round(seconds, 3),
            "rows_per_second": round(n_scored / seconds, 1) if seconds else None, **summary_extra,
            "output": str(output), "rejects": str(rejects_path), "riskml_version": __version__,
        }
        write_json(summary, summary_path)  # last: its presence says the job finished
        work.remove()
    return BatchResult(output, rejects_path, summary_path, summary)


def _score_buckets(files: Sequence[Path], columns: list[str], work: batch.WorkDir, model: ScoringModel, *,
                   bucket_rows: int, top_k: int, include_other: bool, band_edges: Sequence[float],
                   band_labels: Sequence[str], schema: pa.Schema, reject_schema: pa.Schema, id_column: str,
                   numeric: list[str], categories: dict[str, list]) -> int:
    """Score the buckets not yet in ``work`` (each bucket's rows counted first); returns how many were
    resumed."""
    counts = work.root / "counts"
    counts.mkdir(exist_ok=True)
    names = np.array([str(f) for f in files], dtype=object)
    resumed = 0
    for k, rows in _chunks(files, columns, bucket_rows):
        (counts / f"{k:05d}").write_text(str(len(rows)))
        part, rej_part = work.part("scored", k), work.part("rejects", k)
        if part.exists():
            resumed += 1
            continue
        X, reason, unseen = check_rows(rows, id_column=id_column, numeric=numeric, categories=categories)
        bad = reason.notna().to_numpy()
        good = X.loc[~bad].assign(**{id_column: rows.loc[~bad, id_column], UNSEEN: unseen[~bad]})
        scored = (score_table(good.reset_index(drop=True), model, top_k=top_k, include_other=include_other,
                              band_edges=band_edges, band_labels=band_labels) if len(good)
                  else schema.empty_table().to_pandas())
        rejects = pd.DataFrame({id_column: rows.loc[bad, id_column].astype("string").str.strip().array,
                                "file": names[rows.loc[bad, batch.FILE].astype(int).to_numpy()],
                                "row": rows.loc[bad, batch.ROW].astype("int64").to_numpy(),
                                "reason": reason[bad].astype("string").array})
        results.write_part(rejects, rej_part, reject_schema)
        results.write_part(scored[schema.names], part, schema)  # written last: marks the bucket done
    return resumed


def describe_table(result: BatchResult, *, n: int = 3) -> str:
    """A short account of a scored table: counts and the riskiest rows with their reasons."""
    s = result.summary
    lines = [f"scored {s['scored_rows']} rows, rejected {s['rejected_rows']} in {s['seconds']:.1f} s with "
             f"{s['model']['name']} v{s['model']['version']}"]
    if s["unseen_categories"]:
        lines.append(f"  categories the model never saw (scored as missing): {s['unseen_categories']}")
    lines += [f"  predictions: {result.output}", f"  rejects:     {result.rejects}",
              f"  summary:     {result.summary_path}"]
    df = read_table(result.output)
    id_column = df.columns[0]
    for _, r in df.nlargest(n, "p_adverse").iterrows():
        lines.append(f"- {id_column} {r[id_column]}: P(adverse)={r.p_adverse:.1%} band {r.risk_band}")
        i = 1
        while f"reason_{i}" in df and pd.notna(r[f"reason_{i}"]):
            advice = r[f"reason_{i}_advice"]
            lines.append(f"    {i}. {r[f'reason_{i}_label']} (+{r[f'reason_{i}_contribution']:.2f})"
                         + (f": {advice}" if pd.notna(advice) else ""))
            i += 1
    return "\n".join(lines)

"""Offline batch prediction: ``python -m riskml.predict input=PATH output=PATH model=URI``.

Reads borrower histories (panel columns; parquet or CSV; a file or a folder of
parts; any order), rejects bad rows with their reason, and writes one
explained prediction per borrower, a rejects file and a summary JSON. Input
borrowers = scored + rejected, always. Memory stays flat: the input is split
into buckets of whole borrowers (see :mod:`riskml.batch`); a killed job
started again resumes from the finished buckets.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import pyarrow as pa
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from riskml import __version__, batch
from riskml.exceptions import ConfigError, SchemaError, exit_on_error
from riskml.io import load_model_dir, write_json, write_parquet
from riskml.schema import PANEL, STATUSES, cast, prediction_schema, row_problems
from riskml.scoring import MAX_REASONS, ScoringModel, check_features, score_histories

log = logging.getLogger(__name__)

REJECT_SCHEMA = pa.schema([("borrower_id", pa.int64()), ("file", pa.string()), ("row", pa.int64()),
                           ("reason", pa.string())])
_OPTIONAL = ("cause",)


@dataclass
class PredictResult:
    output: Path
    rejects: Path
    summary_path: Path
    summary: dict[str, Any]


def _validate(cfg: DictConfig) -> None:
    if not cfg.get("input"):
        raise ConfigError("input", cfg.get("input"), "a parquet/CSV file or a folder of them (input=PATH)")
    if not cfg.get("output"):
        raise ConfigError("output", cfg.get("output"), "an output file path (output=PATH)")
    if cfg.format not in ("parquet", "csv"):
        raise ConfigError("format", cfg.format, "'parquet' or 'csv'")
    if not (isinstance(cfg.top_k, int) and 1 <= cfg.top_k <= MAX_REASONS):
        raise ConfigError("top_k", cfg.top_k, f"an integer from 1 to {MAX_REASONS}")
    if not (isinstance(cfg.bucket_rows, int) and cfg.bucket_rows >= 1000):
        raise ConfigError("bucket_rows", cfg.bucket_rows, "an integer >= 1000")
    if cfg.as_of is not None and not (isinstance(cfg.as_of, int) and cfg.as_of >= 0):
        raise ConfigError("as_of", cfg.as_of, "null (each borrower's last month) or a month index >= 0")


def load_model(uri: str, *, tracking_uri: str | None = None) -> ScoringModel:
    """A model from a registry URI, a run URI or an exported folder."""
    if Path(str(uri)).is_dir() and (Path(str(uri)) / "manifest.json").is_file():
        folder = Path(str(uri))  # an exported model: no MLflow needed (nor its 2 s import)
    else:
        from riskml import tracking

        if ":/" in str(uri):
            tracking.connect(tracking_uri)
        folder = tracking.resolve_model(uri)
    booster, manifest = load_model_dir(folder)
    return ScoringModel(booster, manifest)


def _prepare(raw: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes for one raw batch, with a ``_reason`` for non-numeric cells."""
    out = pd.DataFrame(index=raw.index)
    reason = pd.Series(pd.NA, index=raw.index, dtype="string")
    for col in PANEL.columns:
        if col.name not in raw.columns:
            continue
        s = raw[col.name]
        if col.categories:
            out[col.name] = s.astype("string").str.strip()
            continue
        num = pd.to_numeric(s, errors="coerce").astype("float64")
        bad = (num.isna() & s.notna()).to_numpy()
        if col.name in PANEL.required:
            reason[bad & reason.isna().to_numpy()] = f"{col.name} is not numeric"
        out[col.name] = num
    out[batch.FILE] = raw[batch.FILE].to_numpy()
    out[batch.ROW] = raw[batch.ROW].to_numpy()
    out["_reason"] = reason
    return out


def _split(rows: pd.DataFrame, *, as_of: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Good borrowers' rows (panel dtypes) and reject rows (one per bad input row)."""
    rows = rows.sort_values(["borrower_id", batch.FILE, batch.ROW], kind="stable").reset_index(drop=True)
    reason = rows["_reason"].fillna(row_problems(rows))
    # months must rise in file order within a borrower (equal months are duplicates, flagged above)
    same = rows["borrower_id"].to_numpy()[1:] == rows["borrower_id"].to_numpy()[:-1]
    back = np.r_[False, same & (np.diff(rows["month"].to_numpy()) < 0)]
    reason = reason.mask(back & reason.isna().to_numpy(), "months out of order")
    if as_of is not None:
        bid = rows["borrower_id"]
        has = (rows["month"] <= as_of).groupby(bid).transform("any").to_numpy()
        first = ~bid.duplicated().to_numpy()
        reason = reason.mask(~has & first & reason.isna().to_numpy(), f"no month at or before as_of={as_of}")
    bad_borrower = reason.notna().groupby(rows["borrower_id"]).transform("any").to_numpy()
    rejects = rows.loc[reason.notna().to_numpy(), ["borrower_id", batch.FILE, batch.ROW]].assign(
        reason=reason.dropna().to_numpy())
    good = rows.loc[~bad_borrower]
    if as_of is not None:
        good = good[good["month"] <= as_of]
    good = cast(good.drop(columns=["_reason", batch.FILE, batch.ROW]), PANEL)
    return good.sort_values(["borrower_id", "month"]).reset_index(drop=True), rejects


def _reject_frame(rejects: pd.DataFrame, files: tuple[Path, ...]) -> pd.DataFrame:
    names = np.array([str(f) for f in files], dtype=object)
    return pd.DataFrame({
        "borrower_id": rejects["borrower_id"].astype("float64").astype("Int64").array,  # null: no usable id
        "file": names[rejects[batch.FILE].astype(int).to_numpy()] if len(rejects) else [],
        "row": rejects[batch.ROW].astype("int64").to_numpy(),
        "reason": rejects["reason"].astype("string").to_numpy(),
    })


def _feature_names(model: ScoringModel) -> list[str]:
    """The features riskml builds from a panel with the model's windows."""
    from riskml.windows import feature_specs

    return [spec.name for spec in feature_specs(model.windows)]


def run(cfg: DictConfig) -> PredictResult:
    """Score a batch; see the module docstring. Raises before writing anything on bad config,
    unreadable input, missing columns or a model that does not fit the input."""
    t0 = time.perf_counter()
    _validate(cfg)
    tracking_uri = cfg.get("tracking_uri")
    model = load_model(cfg.model, tracking_uri=tracking_uri)
    status = load_model(cfg.status_model, tracking_uri=tracking_uri) if cfg.get("status_model") else None
    recovery = load_model(cfg.recovery_model, tracking_uri=tracking_uri) if cfg.get("recovery_model") else None
    if status is not None and len(status.classes) != len(STATUSES):
        raise ConfigError("status_model", cfg.status_model, f"a model of the {len(STATUSES)} classes {list(STATUSES)} "
                          f"(target status_3m); got classes {status.classes}")
    names = _feature_names(model)
    for key, m in (("model", model), ("status_model", status), ("recovery_model", recovery)):
        if m is not None:
            check_features(m, names, source=f"{key}={cfg.get(key)}")

    files = batch.table_files(cfg.input)
    headers = {f: set(batch.input_columns(f)) for f in files}  # each file's header, read once
    for f, have in headers.items():
        missing = [c for c in PANEL.required if c not in have]
        if missing:
            raise SchemaError(f"{f}: missing required panel column(s) {missing}; expected at least "
                              f"{list(PANEL.required)}")
    columns = [c for c in PANEL.names if c in PANEL.required or c in _OPTIONAL
               if all(c in have for have in headers.values())]

    output = Path(cfg.output)
    rejects_path = output.with_name(output.stem + ".rejects" + output.suffix)
    summary_path = output.with_name(output.stem + ".summary.json")
    plan = batch.plan(cfg.input, bucket_rows=cfg.bucket_rows)
    schema = prediction_schema(cfg.top_k)
    settings = {k: cfg.get(k) for k in ("model", "status_model", "recovery_model", "as_of", "top_k", "what_if", "include_other", "bands",
                                        "format")}
    settings["model_sha"] = model.manifest.get("model_sha256")
    work = batch.WorkDir(output, plan.fingerprint(settings))

    resumed, counts = 0, work.root / "counts"
    counts.mkdir(exist_ok=True)
    bar = tqdm(total=plan.n_buckets + 1, desc="scoring", unit="bucket", disable=None)
    for k, rows in batch.partition(plan, work, columns=columns, prepare=_prepare):
        part, rej_part = work.part("scored", k), work.part("rejects", k)
        if k >= 0:  # distinct borrowers of the bucket, counted independently of scoring
            (counts / f"{k:05d}").write_text(str(rows["borrower_id"].nunique()))
        if part.exists():
            resumed += 1
            bar.update()
            continue
        if k < 0:  # rows without a usable borrower_id
            rejects = rows.assign(reason="borrower_id is missing or not a whole number")
            scored = pd.DataFrame(columns=schema.names)
        else:
            good, rejects = _split(rows, as_of=cfg.as_of)
            scored = score_histories(good, model, recovery, status=status, as_of=cfg.as_of, top_k=cfg.top_k,
                                     what_if=cfg.what_if, include_other=cfg.include_other, band_edges=list(cfg.bands.edges),
                                     band_labels=list(cfg.bands.labels)) if len(good) else pd.DataFrame(
                                         columns=schema.names)
        batch.write_part(_reject_frame(rejects, plan.files), rej_part, REJECT_SCHEMA)
        batch.write_part(scored[schema.names], part, schema)  # written last: marks the bucket done
        bar.update()
    bar.close()

    n_scored = batch.assemble(work.parts("scored"), output, schema, fmt=cfg.format)
    rej = pd.concat([pd.read_parquet(p) for p in work.parts("rejects")], ignore_index=True)
    if cfg.format == "parquet":
        write_parquet(rej, rejects_path)
    else:
        from riskml.io import atomic_path
        with atomic_path(rejects_path) as tmp:
            rej.to_csv(tmp, index=False)
    scored_ids = pd.concat([pd.read_parquet(p, columns=["borrower_id", "status", "risk_band"])
                            for p in work.parts("scored")], ignore_index=True)
    rejected_ids = rej["borrower_id"].dropna().unique()
    input_borrowers = sum(int(f.read_text()) for f in counts.iterdir())
    if input_borrowers != n_scored + len(rejected_ids):  # conservation: never drop a borrower silently
        raise AssertionError(f"{input_borrowers} input borrowers != {n_scored} scored + "
                             f"{len(rejected_ids)} rejected")
    seconds = time.perf_counter() - t0
    summary = {
        "input": [str(f) for f in plan.files], "input_rows": plan.rows,
        "input_borrowers": input_borrowers,
        "scored_borrowers": int(n_scored), "rejected_borrowers": int(len(rejected_ids)),
        "rejected_rows": int(len(rej)), "rows_without_borrower_id": int(rej["borrower_id"].isna().sum()),
        "rejects_by_reason": {str(k): int(v) for k, v in rej["reason"].value_counts().sort_index().items()},
        "status": {s: int((scored_ids["status"] == s).sum()) for s in STATUSES},
        "risk_band": {str(k): int(v) for k, v in scored_ids["risk_band"].value_counts().sort_index().items()},
        "as_of": cfg.as_of, "top_k": cfg.top_k, "buckets": plan.n_buckets, "resumed_buckets": resumed,
        "seconds": round(seconds, 3), "borrowers_per_second": round(n_scored / seconds, 1) if seconds else None,
        "model": {"uri": str(cfg.model), "name": model.name, "version": model.version,
                  "sha256": model.manifest.get("model_sha256")},
        "status_model": None if status is None else {
            "uri": str(cfg.status_model), "name": status.name, "version": status.version},
        "recovery_model": None if recovery is None else {
            "uri": str(cfg.recovery_model), "name": recovery.name, "version": recovery.version},
        "output": str(output), "rejects": str(rejects_path), "riskml_version": __version__,
    }
    if set(scored_ids["borrower_id"]) & set(rejected_ids.astype(np.int64)):
        raise AssertionError("a borrower is both scored and rejected")  # invariant, never expected
    write_json(summary, summary_path)  # last: its presence says the job finished
    work.remove()
    return PredictResult(output, rejects_path, summary_path, summary)


def describe(result: PredictResult, *, n: int = 3) -> str:
    """A short human-readable account of a batch: counts and a few explained rows."""
    s = result.summary
    lines = [f"scored {s['scored_borrowers']} borrowers, rejected {s['rejected_borrowers']} "
             f"({s['rejected_rows']} bad rows) in {s['seconds']:.1f} s with {s['model']['name']} "
             f"v{s['model']['version']}",
             f"  predictions: {result.output}", f"  rejects:     {result.rejects}",
             f"  summary:     {result.summary_path}"]
    from riskml.io import read_table
    df = read_table(result.output)
    top = df[df["status"] == "normal"].nlargest(n, "p_adverse")
    for _, r in top.iterrows():
        lines.append(f"- borrower {r.borrower_id}: P(suspended)={r.p_suspended:.1%} P(closed)={r.p_closed:.1%} "
                     f"band {r.risk_band}")
        for i in range(1, MAX_REASONS + 1):
            if f"reason_{i}" not in df or pd.isna(r.get(f"reason_{i}")):
                break
            after = r[f"reason_{i}_p_after"]
            what_if = f" -> P(adverse) {after:.1%} if followed" if pd.notna(after) else ""
            lines.append(f"    {i}. {r[f'reason_{i}_label']} (+{r[f'reason_{i}_contribution']:.2f}): "
                         f"{r[f'reason_{i}_advice']}{what_if}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="pkg://riskml.conf.predict", config_name="predict")
@exit_on_error("riskml.predict")
def main(cfg: DictConfig) -> None:
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    print(describe(run(cfg)))


if __name__ == "__main__":
    main()

"""Offline batch prediction: ``python -m riskml.predict input=PATH output=PATH model=URI``.

Reads borrower histories (panel columns; parquet or CSV; a file or a folder of
parts; any order), rejects bad rows with their reason, and writes one
explained prediction per borrower, a rejects file and a summary JSON. Input
borrowers = scored + rejected, always. Memory stays flat: the input is split
into buckets of whole borrowers (see :mod:`riskml.edge.batch`); a killed job
started again resumes from the finished buckets.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from riskml.edge.batch_job import BatchResult, input_plan, run_job
from riskml.edge.files import load_model_dir, read_table
from riskml.edge.table_job import describe_table, run_table_job
from riskml.exceptions import ConfigError, exit_on_error
from riskml.explain import MAX_REASONS, check_top_k
from riskml.explain.scoring import ScoringModel, check_features, score_histories
from riskml.features import feature_specs
from riskml.schema import STATUSES, prediction_schema

log = logging.getLogger(__name__)

PredictResult = BatchResult  # what a batch wrote: output, rejects, summary


def _validate(cfg: DictConfig) -> None:
    if not cfg.get("input"):
        raise ConfigError("input", cfg.get("input"), "a parquet/CSV file or a folder of them (input=PATH)")
    if not cfg.get("output"):
        raise ConfigError("output", cfg.get("output"), "an output file path (output=PATH)")
    if cfg.format not in ("parquet", "csv"):
        raise ConfigError("format", cfg.format, "'parquet' or 'csv'")
    check_top_k(cfg.top_k)
    if not (isinstance(cfg.bucket_rows, int) and cfg.bucket_rows >= 1000):
        raise ConfigError("bucket_rows", cfg.bucket_rows, "an integer >= 1000")
    if cfg.as_of is not None and not (isinstance(cfg.as_of, int) and cfg.as_of >= 0):
        raise ConfigError("as_of", cfg.as_of, "null (each borrower's last month) or a month index >= 0")


def load_model(uri: str, *, tracking_uri: str | None = None) -> ScoringModel:
    """A model from a registry URI, a run URI or an exported folder."""
    if Path(str(uri)).is_dir() and (Path(str(uri)) / "manifest.json").is_file():
        folder = Path(str(uri))  # an exported model: no MLflow needed (nor its 2 s import)
    else:
        from riskml.edge import tracking  # lazy: importing MLflow costs 2 s that an exported model does not need

        if ":/" in str(uri):
            tracking.connect(tracking_uri)
        folder = tracking.resolve_model(uri)
    booster, manifest = load_model_dir(folder)
    return ScoringModel(booster, manifest)


def run(cfg: DictConfig) -> PredictResult:
    """Score a batch; see the module docstring. Raises before writing anything on bad config,
    unreadable input, missing columns or a model that does not fit the input."""
    _validate(cfg)
    tracking_uri = cfg.get("tracking_uri")
    model = load_model(cfg.model, tracking_uri=tracking_uri)
    if model.manifest.get("data_kind") == "tabular":  # a table model scores a table (issue 10)
        return _run_table(cfg, model)
    status = load_model(cfg.status_model, tracking_uri=tracking_uri) if cfg.get("status_model") else None
    recovery = load_model(cfg.recovery_model, tracking_uri=tracking_uri) if cfg.get("recovery_model") else None
    if status is not None and len(status.classes) != len(STATUSES):
        raise ConfigError("status_model", cfg.status_model, f"a model of the {len(STATUSES)} classes {list(STATUSES)} "
                          f"(target status_3m); got classes {status.classes}")
    names = [spec.name for spec in feature_specs(model.windows)]
    for key, m in (("model", model), ("status_model", status), ("recovery_model", recovery)):
        if m is not None:
            check_features(m, names, source=f"{key}={cfg.get(key)}")
    _, columns = input_plan(cfg.input)

    settings = {k: cfg.get(k) for k in ("model", "status_model", "recovery_model", "as_of", "top_k", "what_if",
                                        "include_other", "bands", "format")}
    settings["model_sha"] = model.manifest.get("model_sha256")
    score = partial(score_histories, model=model, recovery=recovery, status=status, as_of=cfg.as_of,
                    top_k=cfg.top_k, what_if=cfg.what_if, include_other=cfg.include_other,
                    band_edges=list(cfg.bands.edges), band_labels=list(cfg.bands.labels))

    def described(m: ScoringModel | None, key: str) -> dict | None:
        return None if m is None else {"uri": str(cfg.get(key)), "name": m.name, "version": m.version}

    extra = {"top_k": cfg.top_k, "model": {**described(model, "model"), "sha256": model.manifest.get("model_sha256")},
             "status_model": described(status, "status_model"), "recovery_model": described(recovery, "recovery_model")}
    return run_job(input=cfg.input, output=cfg.output, columns=columns, schema=prediction_schema(cfg.top_k),
                   fmt=cfg.format, bucket_rows=cfg.bucket_rows, as_of=cfg.as_of, score=score, settings=settings,
                   summary_extra=extra)


def _run_table(cfg: DictConfig, model: ScoringModel) -> PredictResult:
    """Score a table with a ``data=tabular`` model (status_model and recovery_model do not apply)."""
    settings = {k: cfg.get(k) for k in ("model", "top_k", "include_other", "bands", "format")}
    settings["model_sha"] = model.manifest.get("model_sha256")
    extra = {"top_k": cfg.top_k, "model": {"uri": str(cfg.model), "name": model.name, "version": model.version,
                                           "sha256": model.manifest.get("model_sha256")}}
    return run_table_job(input=cfg.input, output=cfg.output, model=model, fmt=cfg.format, bucket_rows=cfg.bucket_rows,
                         top_k=cfg.top_k, include_other=cfg.include_other, band_edges=list(cfg.bands.edges),
                         band_labels=list(cfg.bands.labels), settings=settings, summary_extra=extra)


def describe(result: PredictResult, *, n: int = 3) -> str:
    """A short human-readable account of a batch: counts and a few explained rows."""
    s = result.summary
    if s.get("kind") == "table":
        return describe_table(result, n=n)
    lines = [f"scored {s['scored_borrowers']} borrowers, rejected {s['rejected_borrowers']} "
             f"({s['rejected_rows']} bad rows) in {s['seconds']:.1f} s with {s['model']['name']} "
             f"v{s['model']['version']}",
             f"  predictions: {result.output}", f"  rejects:     {result.rejects}",
             f"  summary:     {result.summary_path}"]
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

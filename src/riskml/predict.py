"""Offline batch prediction: ``python -m riskml.predict input=PATH output=PATH model=URI``.

Reads borrower histories (panel columns; parquet or CSV; a file or a folder of
parts; any order), rejects bad rows with their reason, and writes one
explained prediction per borrower, a rejects file and a summary JSON. Input
borrowers = scored + rejected, always. Memory stays flat: the input is split
into buckets of whole borrowers (see :mod:`riskml.batch.stream`); a killed job
started again resumes from the finished buckets.

With ``cluster=local|address`` the partitions of whole borrowers are scored
on a Dask cluster by the same code (:mod:`riskml.cluster.predict`).
"""

from __future__ import annotations

import logging
import sys

if __name__ == "__main__" and "lightgbm" not in sys.modules and "sklearn" not in sys.modules:
    # A batch process scores through ``lightgbm.Booster`` only, but LightGBM imports scikit-learn (and with
    # it scipy.stats) whenever it is installed: half the import of this module, ~1 CPU s of every nightly
    # job. Hidden from that one import, LightGBM takes its own stand-ins (its scikit-learn API is then off
    # in this process, which never uses it); any later import of scikit-learn works as usual.
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # None: "import sklearn" raises ImportError
    try:
        import lightgbm  # noqa: F401 - imported here, without scikit-learn
    finally:
        del sys.modules["sklearn"]

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from riskml.batch import stream as batch
from riskml.batch.pool import check_workers
from riskml.batch.job import BatchResult, check_outputs, input_plan, output_format, run_job
from riskml.cluster.client import check_cluster, connect
from riskml.io.files import check_known_keys, read_table, table_files
from riskml.store.loading import open_model
from riskml.store.tracking_uri import check_uri
from riskml.exceptions import ConfigError, exit_on_error, whole_number
from riskml.batch.table_job import describe_table, run_table_job
from riskml.batch.translate import contract_input, model_schema, name_files
from riskml.io.lender import month_index
from riskml.explain import MAX_REASONS, check_score_options
from riskml.explain.scoring import ScoringModel, score_histories
from riskml.schema import KEYS, PANEL, prediction_schema
from riskml.measure.scale import Bands, PointsScale

log = logging.getLogger(__name__)

PredictResult = BatchResult  # what a batch wrote: output, rejects, summary
#: exit status of a job whose every borrower was rejected (1 is a bad config or input, before any work)
EXIT_ALL_REJECTED = 5


def _validate(cfg: DictConfig) -> str:
    """Config checks that need no file; returns the output format (from the output's extension)."""
    check_known_keys(cfg, "predict/predict")
    if isinstance(cfg.get("as_of"), str):  # a lender's month (YYYY-MM or a date), as its files have them
        month = month_index(pd.Series([cfg.as_of]))[0]
        if np.isnan(month):
            raise ConfigError("as_of", cfg.as_of, "null, a month index >= 0, or a month as YYYY-MM")
        cfg.as_of = int(month)
    check_score_options(cfg)
    if not cfg.get("input"):
        raise ConfigError("input", cfg.get("input"), "a parquet/CSV file or a folder of them (input=PATH)")
    if not cfg.get("output"):
        raise ConfigError("output", cfg.get("output"), "an output file path (output=PATH)")
    fmt = output_format(cfg.output, cfg.get("format"))
    check_cluster(cfg.get("cluster"))
    check_uri(cfg.get("tracking_uri"), key="tracking_uri")
    whole_number("bucket_rows", cfg.bucket_rows, 1000)
    check_workers(cfg.get("workers", 1))
    return fmt


def run(cfg: DictConfig) -> PredictResult:
    """Score a batch; see the module docstring.

    Fails before writing anything, in the order a user needs: the config, the
    input (exists, readable, panel columns), the output (format, folder,
    apart from the input), the tracking URI, then the model (and whether it
    fits the input). A run that only reads never creates an MLflow store.
    """
    fmt = _validate(cfg)
    files = table_files(cfg.input)
    check_outputs(cfg.output, [Path(cfg.input), *files])
    one_machine = check_cluster(OmegaConf.to_container(cfg.cluster) if cfg.get("cluster") is not None
                                else None).kind == "none"
    # a one-machine job's plan (one read of borrower_id) is made while the model opens: it only reads,
    # and a model error still comes first (the read then ends by itself)
    planned = None
    if one_machine:
        reader = ThreadPoolExecutor(1)
        planned = reader.submit(batch.plan, cfg.input, bucket_rows=cfg.bucket_rows)
        reader.shutdown(wait=False)
    system = open_model(cfg.model, tracking_uri=cfg.get("tracking_uri"))
    if isinstance(system, ScoringModel):  # a table: its plan is not this job's (it may have no borrower_id)
        return _run_table(cfg, system, fmt)
    lender = model_schema(system.info, cfg.input)
    if lender is None:
        return _run_histories(cfg, system, fmt, planned.result() if planned is not None else None, cfg.input)
    # a file in the lender's names and codes (the schema the system was trained in): read as the contract
    with contract_input(cfg.input, lender, Path(cfg.output)) as translated:
        result = _run_histories(cfg, system, fmt, None, str(translated.folder),
                                required=(*KEYS.required, *lender.contract_columns), extra=lender.signal_columns,
                                present=translated.present(lender))
        name_files(result.rejects, translated, lender)
        return result


def _run_histories(cfg: DictConfig, system, fmt: str, plan, input: str, *,
                   required: tuple[str, ...] = PANEL.required, extra: tuple[str, ...] = (),
                   present=None) -> PredictResult:
    """Score borrower histories at ``input`` (riskml's panel contract) with a scoring system; ``present``
    shows the output in a lender's terms."""
    one_machine = check_cluster(OmegaConf.to_container(cfg.cluster) if cfg.get("cluster") is not None
                                else None).kind == "none"
    files = table_files(input)
    _, columns = input_plan(input, required, extra)
    settings = {k: cfg.get(k) for k in ("as_of", "top_k", "what_if", "include_other", "points", "bands")}
    settings.update(format=fmt, model=system.checksums)
    score = partial(score_histories, model=system.adverse, recovery=system.recovery, status=system.status,
                    name=system.name, version=system.version, as_of=cfg.as_of, top_k=cfg.top_k,
                    what_if=cfg.what_if, include_other=cfg.include_other,
                    scale=PointsScale.from_config(cfg.points), bands=Bands.from_config(cfg.bands))
    extra = {"top_k": cfg.top_k, "model": {"uri": str(cfg.model), "name": system.name, "version": system.version,
                                           "checksums_sha256": system.checksums}}
    job = dict(input=input, output=cfg.output, columns=columns, schema=prediction_schema(cfg.top_k), fmt=fmt,
               bucket_rows=cfg.bucket_rows, as_of=cfg.as_of, score=score, settings=settings, summary_extra=extra,
               present=present)
    if one_machine:
        return run_job(**job, plan=plan, workers=cfg.get("workers", 1))
    cluster = OmegaConf.to_container(cfg.cluster)
    # partitions of whole borrowers scored on a Dask cluster, by the same code
    from riskml.cluster import predict as cluster_predict  # imports dask: the cluster path only

    with connect(cluster) as client:
        plan, by_borrower = cluster_predict.job_plan(client, files, bucket_rows=cfg.bucket_rows)
        settings["engine"] = "dask"  # in the fingerprint: a single-machine job's parts are never reused here
        extra["engine"] = {"kind": "dask", "partitions": plan.n_buckets, "repartitioned": not by_borrower}
        return run_job(**job, plan=plan, score_parts=partial(
            cluster_predict.score_parts, client, by_borrower=by_borrower, columns=columns,
            schema=job["schema"], as_of=cfg.as_of, score=score))


def _run_table(cfg: DictConfig, model: ScoringModel, fmt: str) -> PredictResult:
    """Score a table with a ``data=tabular`` model."""
    if fmt == "parts":
        raise ConfigError("output", str(cfg.output), "a .parquet or .csv file: a table model writes one file")
    settings = {k: cfg.get(k) for k in ("model", "top_k", "include_other", "bands", "format")}
    settings["model_sha"] = model.manifest.get("model_sha256")
    extra = {"top_k": cfg.top_k, "model": {"uri": str(cfg.model), "name": model.name, "version": model.version,
                                           "sha256": model.manifest.get("model_sha256")}}
    return run_table_job(input=cfg.input, output=cfg.output, model=model, fmt=fmt, bucket_rows=cfg.bucket_rows,
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
    df = read_table(result.output)  # its first column is the id, in riskml's name or a lender's
    top = df[df["status"] == "normal"].nlargest(n, "p_adverse")
    for _, r in top.iterrows():
        lines.append(f"- borrower {r[df.columns[0]]}: P(suspended)={r.p_suspended:.1%} P(closed)={r.p_closed:.1%} "
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
    result = run(cfg)
    print(describe(result))
    code = exit_code(result.summary)
    if code:
        print(f"riskml.predict: every input borrower or row was rejected, none scored; the reasons are in "
              f"{result.rejects}", file=sys.stderr)
        sys.exit(code)


def exit_code(summary: dict) -> int:
    """:data:`EXIT_ALL_REJECTED` for a job that rejected every borrower (an input in another shape, a
    wrong as_of): its outputs are written, but a scheduler must not take it for a night's scores."""
    rejected = summary.get("rejected_borrowers", summary.get("rejected_rows", 0))
    scored = summary.get("scored_borrowers", summary.get("scored_rows", 0))
    return EXIT_ALL_REJECTED if rejected and not scored else 0


if __name__ == "__main__":
    main()

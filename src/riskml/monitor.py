"""Monthly monitoring: ``python -m riskml.monitor input=PATH [as_of=MONTH] [predictions=PATH]``.

Compares a batch with the model's reference profile (binned distributions of
every feature, factor contribution, the score, the bands and the top reasons
on its training rows, saved beside ``model.txt`` when it was trained): PSI
per feature, per factor and of the score, the band shares and the top-reason
mix, with thresholds from config (0.1 watch, 0.25 act); from histories, the
band migration of the accounts since ``migration_months`` ago. When the histories
run past the scored month by the model's horizon, it back-tests the realised
outcomes against the predictions by band, with AUC.

Writes ``<output>/monitor.json`` and ``<output>/monitor.html``, logs them as
an MLflow run tagged with the model's name, version and training run (and
tags the registered version with the run), and ends with exit code 3 when
the report's level reaches ``fail_on`` (0 otherwise; 1 for an error), so a
scheduler can act on it.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from riskml.edge import batch
from riskml.edge.batch_job import input_plan, prepare, split_rows
from riskml.edge.files import atomic_path, read_json, read_table, write_json
from riskml.exceptions import ConfigError, ModelError, SchemaError, exit_on_error
from riskml.features.snapshots import build_features
from riskml.monitoring.backtest import backtest, realised_outcomes
from riskml.monitoring.drift import LEVELS, Thresholds, drift
from riskml.monitoring.migration import band_migration
from riskml.monitoring.profile import NO_REASON, Scored, batch_shares, score_rows
from riskml.monitoring.report import monitor_document, monitor_html
from riskml.predict import open_model  # an entry point using another's model loader (as tune uses train)
from riskml.training.scorecard import Bands, PointsScale

log = logging.getLogger(__name__)

PROFILE_FILE = "reference_profile.json"
EXIT_ALARM = 3


@dataclass
class MonitorResult:
    """What a monitoring run found and wrote."""

    level: str
    exit_code: int
    document: dict[str, Any]
    json_path: Path
    html_path: Path
    run_id: str | None = None


def _validate(cfg: dict[str, Any]) -> Thresholds:
    if not cfg.get("input") and not cfg.get("predictions"):
        raise ConfigError("input", cfg.get("input"), "borrower histories (input=PATH), predictions=PATH, or both")
    if cfg.get("as_of") is not None and (isinstance(cfg["as_of"], bool) or not isinstance(cfg["as_of"], int)
                                         or cfg["as_of"] < 0):
        raise ConfigError("as_of", cfg["as_of"], "null or a month index >= 0")
    if cfg.get("fail_on") not in ("act", "watch", "never"):
        raise ConfigError("fail_on", cfg.get("fail_on"), "'act', 'watch' or 'never'")
    back = cfg.get("migration_months", 1)
    if isinstance(back, bool) or not isinstance(back, int) or back < 0:
        raise ConfigError("migration_months", back, "a whole number of months >= 0 (0: no band migration)")
    tol = cfg.get("backtest_tolerance")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise ConfigError("backtest_tolerance", tol, "a number strictly between 0 and 1")
    return Thresholds.from_config(cfg.get("thresholds") or {})


def read_histories(path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Good borrowers' panel rows and the reject rows (file, row, reason), as ``riskml.predict`` validates them."""
    files, columns = input_plan(path)
    frames = []
    for i, f in enumerate(files):
        start = 0
        for raw in batch.iter_batches(f, columns=columns):  # Arrow tables, as the batch job reads them
            n = raw.num_rows
            raw = raw.append_column(batch.FILE, pa.array(np.full(n, i, dtype=np.int32))).append_column(
                batch.ROW, pa.array(np.arange(start, start + n, dtype=np.int64)))
            start += n
            frames.append(prepare(raw))
    good, rejects = split_rows(pa.concat_tables(frames), as_of=None)
    return good, rejects


def _profile(model, system) -> dict[str, Any]:
    path = Path(model.folder) / PROFILE_FILE if model.folder is not None else None
    if path is None or not path.is_file():
        raise ModelError(f"model {system.name!r} v{system.version}: no {PROFILE_FILE} beside its adverse model.txt; "
                         "expected a model trained by a riskml that saves its reference profile (retrain it)")
    return read_json(path)


def _served(predictions: pd.DataFrame, as_of: int) -> tuple[pd.DataFrame, Scored]:
    """The normal accounts of a prediction file and what was served to them."""
    need = {"borrower_id", "as_of_month", "status", "p_adverse", "reason_1"}
    missing = sorted(need - set(predictions.columns))
    if missing:
        raise SchemaError(f"predictions lack column(s) {missing}; expected riskml.predict's output")
    n = predictions[(predictions["status"] == "normal") & (predictions["as_of_month"] == as_of)]
    reason = n["reason_1"].astype(object).where(n["reason_1"].notna(), NO_REASON).to_numpy()
    return n, Scored(n["p_adverse"].to_numpy(np.float64), pd.DataFrame(), reason)


def run(cfg: DictConfig | dict[str, Any]) -> MonitorResult:
    """Monitor one batch; see the module docstring."""
    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    thresholds = _validate(cfg)
    system = open_model(cfg["model"], tracking_uri=cfg.get("tracking_uri"))
    model = system.adverse  # the model whose score, bands and reasons are served to normal accounts
    profile = _profile(model, system)
    preds = read_table(cfg["predictions"]) if cfg.get("predictions") else None
    panel, rejects = read_histories(cfg["input"]) if cfg.get("input") else (None, None)
    as_of = cfg.get("as_of")
    if as_of is None:
        as_of = int(preds["as_of_month"].max()) if preds is not None else int(panel["month"].max())
    horizon = int(model.manifest.get("horizon") or 3)

    X, scored = None, None
    if panel is not None:
        hist = panel[panel["month"] <= as_of]
        if hist.empty:
            raise ConfigError("as_of", as_of, f"a month the input covers (from {int(panel['month'].min())})")
        snaps = build_features(hist, as_of=as_of, windows=model.windows)
        normal = (snaps.keys["status"] == "normal").to_numpy() & (snaps.keys["month"] == as_of).to_numpy()
        ids, X = snaps.keys["borrower_id"].to_numpy()[normal], snaps.X[normal].reset_index(drop=True)
        scored = score_rows(model.proba, model.explainer, X)
    if preds is not None:
        served, served_scored = _served(preds, as_of)
        if scored is not None:  # factors from the histories, score and reasons as served
            served_scored.factor_contrib = scored.factor_contrib
        ids, scored = served["borrower_id"].to_numpy(), served_scored
    shares = batch_shares(profile, X, scored)
    if scored.factor_contrib.empty:
        shares["factors"] = {}
    result = drift(profile, shares, thresholds)

    bt_table = bt_metrics = migration = None
    scale, bands = PointsScale(**profile["points"]), Bands.from_config(profile["bands"])
    back = int(cfg.get("migration_months", 1))
    if panel is not None and back and as_of - back >= int(panel["month"].min()):
        migration = band_migration(panel, model, scale, bands, to_month=as_of, months=back)
    if panel is not None and int(panel["month"].max()) >= as_of + horizon:
        realised = realised_outcomes(panel, ids, as_of=as_of, horizon=horizon)
        band = bands.assign(p_adverse=scored.p_adverse, points=scale.points(scored.p_adverse))
        bt_table, bt_metrics = backtest(scored.p_adverse, realised, band, bands.labels,
                                        tolerance=float(cfg["backtest_tolerance"]))

    context = {"model_name": system.name, "model_version": system.version, "model_uri": str(cfg["model"]),
               "training_run_id": model.manifest.get("run_id"), "input": cfg.get("input"),
               "predictions": cfg.get("predictions"), "as_of": as_of, "horizon": horizon, "n_scored": int(len(ids)),
               "rejected_borrowers": 0 if rejects is None else int(rejects["borrower_id"].nunique()),
               "rejected_rows": 0 if rejects is None else int(len(rejects)),
               "reference_months": profile.get("months"), "mean_p_adverse": shares.get("mean_p_adverse"),
               "reference_mean_p_adverse": profile.get("mean_p_adverse")}
    doc = monitor_document(drift=result, backtest_table=bt_table, backtest_metrics=bt_metrics,
                           thresholds=thresholds, context=context, migration=migration)
    page = monitor_html(doc, result, bt_table, thresholds, migration=migration)
    out = Path(str(cfg["output"]))
    json_path = write_json(doc, out / "monitor.json")
    html_path = out / "monitor.html"
    with atomic_path(html_path) as tmp:
        tmp.write_text(page)
    fail = cfg["fail_on"]
    code = EXIT_ALARM if fail != "never" and LEVELS.index(doc["level"]) >= LEVELS.index(fail) else 0
    run_id = _track(cfg, doc, page, result, bt_table) if cfg["tracking"].get("enabled", True) else None
    log.info("monitoring %s v%s at month %s: %s (%s)", system.name, system.version, as_of, doc["level"],
             doc["levels"])
    return MonitorResult(doc["level"], code, doc, json_path, html_path, run_id)


def _track(cfg: dict[str, Any], doc: dict[str, Any], page: str, result, bt_table) -> str:
    """One MLflow run per report, linked to the model version it watched."""
    from riskml.edge import tracking  # lazy: MLflow's import costs 2 s

    exp = tracking.setup(cfg.get("tracking_uri"), cfg["tracking"]["experiment"])
    tags = {"riskml.monitor_level": doc["level"], "riskml.model_name": doc["model_name"],
            "riskml.model_version": doc["model_version"], "riskml.model_uri": doc["model_uri"],
            "riskml.training_run_id": doc["training_run_id"] or ""}
    with tracking.start_run(exp, run_name=f"monitor-{doc['model_name']}-m{doc['as_of']}", tags=tags) as run_id:
        metrics = {"score_psi": doc["drift"]["score_psi"], "bands_psi": doc["drift"]["bands_psi"],
                   "reasons_psi": doc["drift"]["reasons_psi"], "max_feature_psi": doc["drift"]["max_feature_psi"],
                   "features_act": len(doc["drift"]["features_act"]),
                   "features_watch": len(doc["drift"]["features_watch"]), "n_scored": doc["n_scored"],
                   "level": LEVELS.index(doc["level"])}
        if doc["backtest"] is not None:
            metrics.update({f"backtest_{k}": doc["backtest"][k] for k in ("auc", "ks", "predicted_rate",
                                                                          "observed_rate", "n")})
        tracking.log_metrics({k: v for k, v in metrics.items() if v is not None})
        tracking.log_dict(doc, "monitor.json")
        tracking.log_text(page, "monitor.html")
        tracking.log_table(result.features, "tables/psi_features.csv")
        tracking.log_table(result.factors, "tables/psi_factors.csv")
        if bt_table is not None:
            tracking.log_table(bt_table, "tables/backtest_by_band.csv")
    if str(doc["model_version"]).isdigit():
        tracking.tag_model_version(doc["model_name"], doc["model_version"], "riskml.last_monitor_run", run_id)
    return run_id


@hydra.main(version_base="1.3", config_path="pkg://riskml.conf.monitor", config_name="monitor")
@exit_on_error("riskml.monitor")
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    print(f"monitoring level {result.level} {result.document['levels']}\n  report: {result.html_path}\n"
          f"  json:   {result.json_path}")
    sys.exit(result.exit_code)


if __name__ == "__main__":
    main()

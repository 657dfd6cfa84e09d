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
from typing import Any, Mapping

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from riskml.batch import stream as batch
from riskml.batch.bucket import prepare, split_rows
from riskml.batch.job import check_rows, input_plan
from riskml.batch.translate import contract_input, contract_predictions, model_schema
from riskml.io.files import atomic_path, check_known_keys, job_lock, read_json, read_table, table_files, write_json
from riskml.io.lender import month_index, month_labels
from riskml.schema import KEYS, PANEL
from riskml.exceptions import ConfigError, InputError, ModelError, SchemaError, exit_on_error, whole_number
from riskml.features.snapshots import build_features
from riskml.monitoring.backtest import backtest, realised_outcomes
from riskml.monitoring.drift import LEVELS, TOO_FEW, Thresholds, drift
from riskml.monitoring.migration import Migration, band_labels, band_migration
from riskml.monitoring.mix import add_by_age, batch_state, for_state, standardise
from riskml.monitoring.profile import AGE, NO_REASON, Scored, batch_shares, score_rows
from riskml.monitoring.report import monitor_document, monitor_html
from riskml.store.loading import open_model
from riskml.measure.scale import Bands, PointsScale

log = logging.getLogger(__name__)

PROFILE_FILE = "reference_profile.json"
EXIT_ALARM = 3
#: exit status when too few accounts were normal at the month for any level to mean something
EXIT_TOO_FEW = 4


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
    check_known_keys(cfg, "monitor/monitor")
    if not cfg.get("input") and not cfg.get("predictions"):
        raise ConfigError("input", cfg.get("input"), "borrower histories (input=PATH), predictions=PATH, or both")
    if isinstance(cfg.get("as_of"), str):  # a lender's month (YYYY-MM or a date), as its files have them
        month = month_index(pd.Series([cfg["as_of"]]))[0]
        if np.isnan(month):
            raise ConfigError("as_of", cfg["as_of"], "null, a month index >= 0, or a month as YYYY-MM")
        cfg["as_of"] = int(month)
    if cfg.get("as_of") is not None:
        whole_number("as_of", cfg["as_of"], 0, what="null or a month index")
    if cfg.get("fail_on") not in ("act", "watch", "never"):
        raise ConfigError("fail_on", cfg.get("fail_on"), "'act', 'watch' or 'never'")
    cfg["min_accounts"] = whole_number("min_accounts", cfg.get("min_accounts", 200), 1,
                                       note="accounts below which no drift level is given")
    whole_number("bucket_rows", cfg.get("bucket_rows", 500_000), 1000, note="input rows per bucket of whole borrowers")
    whole_number("migration_months", cfg.get("migration_months", 1), 0, what="a whole number of months",
                 note="0: no band migration")
    tol = cfg.get("backtest_tolerance")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise ConfigError("backtest_tolerance", tol, "a number strictly between 0 and 1")
    return Thresholds.from_config(cfg.get("thresholds") or {})


def _months(files: list[Path]) -> tuple[int, int]:
    """First and last month of the input, from its month column alone."""
    lo, hi = np.inf, -np.inf
    for f in files:
        for b in batch.iter_batches(f, columns=["month"]):
            m = pd.to_numeric(pd.Series(b.column("month").to_numpy(zero_copy_only=False)), errors="coerce")
            if m.notna().any():
                lo, hi = min(lo, m.min()), max(hi, m.max())
    if not np.isfinite(lo):
        raise SchemaError(f"{files[0]}: no readable month; expected month indices >= 0")
    return int(lo), int(hi)


@dataclass
class Histories:
    """What the batch's histories say at ``as_of``, gathered bucket by bucket of whole borrowers."""

    shares: dict[str, Any]            # on the profile's bins (batch_shares), at the reference's age mix
    ids: np.ndarray                   # accounts normal at as_of
    ages: np.ndarray                  # their months on book
    p_adverse: np.ndarray
    realised: pd.Series | None        # by borrower_id; None when the input stops before as_of + horizon
    migration: Migration | None
    rejected_rows: int
    rejected_borrowers: int
    profile: Mapping[str, Any] | None = None  # the reference compared with: the batch's platform state's
    too_young: int = 0                # normal accounts younger than every reference row: scored, not compared
    too_old: int = 0                  # older than every row of the reference's month (an earlier, younger book)


def read_histories(cfg: dict[str, Any], model: Any, profile: Mapping[str, Any], *, as_of: int, months: tuple[int, int],
                   horizon: int, out: Path, required: tuple[str, ...] = PANEL.required,
                   extra: tuple[str, ...] = ()) -> Histories:
    """Validate and score the histories bucket by bucket (``bucket_rows`` rows of whole borrowers, as
    ``riskml.predict`` does), so memory stays flat however big the portfolio; every total is the
    whole batch's (shares are summed weighted by rows)."""
    files, columns = input_plan(cfg["input"], required, extra)
    plan = check_rows(batch.plan(cfg["input"], bucket_rows=int(cfg["bucket_rows"])), cfg["input"])
    scale, bands = PointsScale(**profile["points"]), Bands.from_config(profile["bands"])
    back = int(cfg.get("migration_months", 1))
    with_migration = back > 0 and as_of - back >= months[0]
    with_outcomes = months[1] >= as_of + horizon
    by_group: dict[int, tuple[Any, int]] = {}
    empty, too_young, too_old, view = None, 0, 0, None
    ids, ages, p_adv, realised, counts = [], [], [], [], None
    rejected_rows = rejected_borrowers = history_rows = 0
    work = batch.WorkDir(out, plan.fingerprint({"job": "riskml.monitor"}))
    try:
        for k, rows in batch.partition(plan, work, columns=columns, prepare=prepare):
            if k < 0:  # rows without a usable borrower_id
                rejected_rows += rows.num_rows
                continue
            good, rejects = split_rows(rows, as_of=None)
            rejected_rows += len(rejects)
            rejected_borrowers += int(rejects["borrower_id"].nunique())
            hist = good[good["month"] <= as_of]
            history_rows += len(hist)
            if hist.empty:
                continue
            snaps = build_features(hist, as_of=as_of, windows=model.windows, signals=model.signals)
            at = (snaps.keys["month"] == as_of).to_numpy()
            normal = (snaps.keys["status"] == "normal").to_numpy() & at
            X = snaps.X[normal].reset_index(drop=True)
            scored = score_rows(model.proba, model.explainer, X)
            if view is None and len(X):  # the reference of the batch's platform state (platform-wide: any bucket)
                view = for_state(profile, batch_state(profile, X))
            young, old = add_by_age(view or profile, X, scored, by_group)
            too_young, too_old = too_young + young, too_old + old
            empty = empty or batch_shares(profile, X.iloc[:0], Scored(scored.p_adverse[:0],
                                                                      scored.factor_contrib.iloc[:0],
                                                                      scored.top_reason[:0]))
            ids.append(snaps.keys["borrower_id"].to_numpy()[normal])
            ages.append(X[AGE].to_numpy() if AGE in X.columns else np.full(len(X), np.nan))
            p_adv.append(scored.p_adverse)
            if with_outcomes:
                realised.append(realised_outcomes(good, ids[-1], as_of=as_of, horizon=horizon))
            if with_migration:  # the bands now are the ones just scored; only the earlier month is built again
                status = snaps.keys["status"].astype(str).to_numpy(dtype=object)[at]
                now = pd.Series(band_labels(status, scored.p_adverse, scale, bands),
                                index=snaps.keys["borrower_id"].to_numpy()[at])
                m = band_migration(good, model, scale, bands, to_month=as_of, months=back, now=now)
                counts = m.counts if counts is None else counts + m.counts
    finally:
        work.remove()
    if not history_rows:
        raise InputError(f"{cfg['input']}: no valid row at or before month {as_of} ({rejected_rows} rows rejected); "
                         "nothing to monitor")
    ids_all = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    view = view or profile
    return Histories(
        shares=standardise(view, by_group) or empty, profile=view,
        ids=ids_all, ages=np.concatenate(ages) if ages else np.zeros(0), p_adverse=np.concatenate(p_adv) if p_adv else np.zeros(0),
        realised=pd.Series(pd.concat(realised, ignore_index=True).array, index=ids_all) if with_outcomes else None,
        migration=Migration(as_of - back, as_of, counts) if with_migration and counts is not None else None,
        rejected_rows=rejected_rows, rejected_borrowers=rejected_borrowers, too_young=too_young,
        too_old=too_old)


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


def _check_predictions(preds: pd.DataFrame, system, as_of: int | None) -> None:
    """Predictions of the monitored model, for the month monitored: another model's scores reported under
    this one's name, or another month's (nothing to compare, every level made up), are refused."""
    for col, want in (("model_name", system.name), ("model_version", str(system.version))):
        if col in preds.columns:
            seen = sorted(set(preds[col].astype(str).dropna()) - {want})
            if seen:
                raise ModelError(f"predictions: {col} {seen[0]!r} in {int((preds[col].astype(str) != want).sum())} "
                                 f"row(s); expected the monitored model {system.name!r} v{system.version} "
                                 "(model=URI of the model that made them)")
    months = sorted(int(m) for m in pd.unique(preds["as_of_month"].dropna())) if "as_of_month" in preds else []
    if as_of is not None and as_of not in months:
        raise ConfigError("as_of", as_of, f"a month the predictions were made for {months[:10]}")


def run(cfg: DictConfig | dict[str, Any]) -> MonitorResult:
    """Monitor one batch; see the module docstring."""
    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    thresholds = _validate(cfg)
    system = open_model(cfg["model"], tracking_uri=cfg.get("tracking_uri"))
    lender = model_schema(system.info, cfg["input"]) if cfg.get("input") else None
    if lender is not None:  # histories in the lender's names and codes: read as the contract, row for row
        out = Path(str(cfg["output"]))
        out.mkdir(parents=True, exist_ok=True)
        with contract_input(cfg["input"], lender, out / "monitor.json") as translated:
            # the report names the lender's files and months, not the translation's work folder
            return _run(system, {**cfg, "input": str(translated.folder), "lender_input": cfg["input"],
                                 "text_months": translated.text_months}, thresholds,
                        required=(*KEYS.required, *lender.contract_columns), extra=lender.signal_columns)
    return _run(system, cfg, thresholds)


def _run(system: Any, cfg: dict[str, Any], thresholds: Thresholds, *,
         required: tuple[str, ...] = PANEL.required, extra: tuple[str, ...] = ()) -> MonitorResult:
    """Monitor histories in riskml's panel contract (and/or predictions) with ``system``."""
    model = system.adverse  # the model whose score, bands and reasons are served to normal accounts
    profile = _profile(model, system)
    preds = contract_predictions(system.info, read_table(cfg["predictions"])) if cfg.get("predictions") else None
    as_of = cfg.get("as_of")
    files = table_files(cfg["input"]) if cfg.get("input") else []
    months = _months(files) if files else None
    if preds is not None:
        _check_predictions(preds, system, as_of)
    if as_of is None:
        as_of = int(preds["as_of_month"].max()) if preds is not None else months[1]
    if months is not None and not months[0] <= as_of <= months[1]:
        raise ConfigError("as_of", as_of, f"a month the input covers ({months[0]}..{months[1]})")
    horizon = int(model.manifest.get("horizon") or 3)
    out = Path(str(cfg["output"]))
    # one job at a time per output: its work folder and its report are its own
    with job_lock(out / "monitor.json", what="riskml.monitor job"):
        hist = read_histories(cfg, model, profile, as_of=as_of, months=months, horizon=horizon,
                              out=out, required=required, extra=extra) if files else None

        if preds is not None:  # the score, bands and reasons as served; features and factors from the histories
            served, served_scored = _served(preds, as_of)
            ids, p_adverse = served["borrower_id"].to_numpy(), served_scored.p_adverse
            if hist is None:  # no ages in a predictions file: the batch's own age mix
                shares = batch_shares(profile, None, served_scored)
            else:  # the served scores at the reference's age mix, each account's age from its history
                age = pd.Series(hist.ages, index=hist.ids).reindex(ids).to_numpy()
                by_group: dict[int, tuple[Any, int]] = {}
                add_by_age(hist.profile, pd.DataFrame({AGE: age}), served_scored, by_group)
                shares = standardise(hist.profile, by_group) or batch_shares(hist.profile, None, served_scored)
            shares["features"], shares["factors"] = ({}, {}) if hist is None else (hist.shares["features"],
                                                                                   hist.shares["factors"])
        else:
            ids, p_adverse, shares = hist.ids, hist.p_adverse, hist.shares
        if hist is not None:  # the reference of the batch's platform state
            profile = hist.profile
        result = drift(profile, shares, thresholds)

        bt_table = bt_metrics = None
        migration = None if hist is None else hist.migration
        if hist is not None and hist.realised is not None:
            realised = hist.realised.reindex(ids).reset_index(drop=True)
            scale, bands = PointsScale(**profile["points"]), Bands.from_config(profile["bands"])
            band = bands.assign(p_adverse=p_adverse, points=scale.points(p_adverse))
            bt_table, bt_metrics = backtest(p_adverse, realised, band, bands.labels,
                                            tolerance=float(cfg["backtest_tolerance"]))

        context = {"model_name": system.name, "model_version": system.version, "model_uri": str(cfg["model"]),
                   "training_run_id": model.manifest.get("run_id"), "input": cfg.get("lender_input", cfg.get("input")),
                   "predictions": cfg.get("predictions"), "as_of": as_of,
                   "as_of_month": month_labels([as_of])[0] if cfg.get("text_months") else as_of, "horizon": horizon, "n_scored": int(len(ids)),
                   "rejected_borrowers": 0 if hist is None else hist.rejected_borrowers,
                   "rejected_rows": 0 if hist is None else hist.rejected_rows,
                   "not_compared_too_young": 0 if hist is None else hist.too_young,
                   "not_compared_older_than_reference": 0 if hist is None else hist.too_old,
                   "age_mix": "reference's" if "age" in profile and hist is not None else "batch's own",
                   "platform_tightening": (profile.get("platform_state") or {}).get("tight"),
                   "reference_months": profile.get("months"), "mean_p_adverse": shares.get("mean_p_adverse"),
                   "reference_mean_p_adverse": profile.get("mean_p_adverse"), "min_accounts": cfg["min_accounts"]}
        doc = monitor_document(drift=result, backtest_table=bt_table, backtest_metrics=bt_metrics,
                               thresholds=thresholds, context=context, migration=migration)
        page = monitor_html(doc, result, bt_table, thresholds, migration=migration)
        json_path = write_json(doc, out / "monitor.json")
        html_path = out / "monitor.html"
        with atomic_path(html_path) as tmp:
            tmp.write_text(page)
    fail = cfg["fail_on"]
    if doc["level"] == TOO_FEW:
        code = EXIT_TOO_FEW if fail != "never" else 0
        log.warning("monitoring %s v%s at month %s: %d accounts normal at that month, fewer than min_accounts=%d; "
                    "no drift level is given", system.name, system.version, as_of, doc["n_scored"], doc["min_accounts"])
    else:
        code = EXIT_ALARM if fail != "never" and LEVELS.index(doc["level"]) >= LEVELS.index(fail) else 0
    run_id = _track(cfg, doc, page, result, bt_table) if cfg["tracking"].get("enabled", True) else None
    log.info("monitoring %s v%s at month %s: %s (%s)", system.name, system.version, as_of, doc["level"],
             doc["levels"])
    return MonitorResult(doc["level"], code, doc, json_path, html_path, run_id)


def _track(cfg: dict[str, Any], doc: dict[str, Any], page: str, result, bt_table) -> str:
    """One MLflow run per report, linked to the model version it watched."""
    from riskml.store import tracking  # lazy: MLflow's import costs 2 s

    exp = tracking.setup(cfg.get("tracking_uri"), cfg["tracking"]["experiment"])
    tags = {"riskml.monitor_level": doc["level"], "riskml.model_name": doc["model_name"],
            "riskml.model_version": doc["model_version"], "riskml.model_uri": doc["model_uri"],
            "riskml.training_run_id": doc["training_run_id"] or ""}
    with tracking.start_run(exp, run_name=f"monitor-{doc['model_name']}-m{doc['as_of']}", tags=tags) as run_id:
        metrics = {"score_psi": doc["drift"]["score_psi"], "bands_psi": doc["drift"]["bands_psi"],
                   "reasons_psi": doc["drift"]["reasons_psi"], "rate_change": doc["drift"]["rate_change"],
                   "max_feature_psi": doc["drift"]["max_feature_psi"],
                   "features_act": len(doc["drift"]["features_act"]),
                   "features_watch": len(doc["drift"]["features_watch"]), "n_scored": doc["n_scored"],
                   "level": LEVELS.index(doc["level"]) if doc["level"] in LEVELS else -1}
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

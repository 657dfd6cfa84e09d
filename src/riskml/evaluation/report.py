"""What a training run hands the risk team: the tables (gains, calibration by
band, information value, the baseline's scorecard), one self-contained HTML
model report, and the reference profile that monitoring compares batches with.

Stage code: :func:`build_reports` takes the run's data, model and results and
returns frames, a string and a dict; ``riskml.train`` logs them and writes the
report and the profile beside the exported model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from riskml.evaluation import kit
from riskml.exceptions import ConfigError, fraction, whole_number
from riskml.monitoring.profile import build_profile, score_rows
from riskml.measure import html
from riskml.measure import metrics as mx
from riskml.training.datasets import Dataset
from riskml.training.models import FittedModel
from riskml.training.scorecard import fit_scorecard, scorecard_proba, scorecard_table
from riskml.measure.scale import Bands, PointsScale, band_of
from riskml.measure.tables import calibration_table, gains_table, information_values

#: Targets whose positive class is adverse: points, bands and a reference profile apply.
RISK_TARGETS = ("adverse_3m", "status_3m")


@dataclass
class Reports:
    """Artifacts of one run: CSV tables by artifact name, the HTML report, the reference profile (or None)."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    html: str = ""
    profile: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _sample(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    return rows if len(rows) <= n else np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))


def _data_summary(ds: Dataset, train: np.ndarray, valid: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    pos = ds.y > 0
    out = {"source": ds.source, "kind": ds.kind, "data digest": ds.digest[:16], "features": ds.X.shape[1],
           "classes": ", ".join(ds.classes), "rows (train / valid / test)": f"{len(train):,} / {len(valid):,} / "
           f"{len(test):,}", "borrowers / entities": len(np.unique(ds.groups))}
    if ds.time is not None:
        out["months (train)"] = f"{int(ds.time[train].min())}..{int(ds.time[train].max())}"
        out["months (test)"] = f"{int(ds.time[test].min())}..{int(ds.time[test].max())}"
    out["positive rate (train / test)"] = f"{pos[train].mean():.4f} / {pos[test].mean():.4f}"
    return out


def check_report(rcfg: Mapping[str, Any]) -> None:
    """Fail on a bad ``report`` setting before any data is read (each named by its key)."""
    for key in ("enabled", "profile"):
        if not isinstance(rcfg.get(key, True), bool):
            raise ConfigError(f"report.{key}", rcfg[key], "true or false")
    for key, lo in (("iv_max_rows", 100), ("iv_max_prebins", 2), ("profile_recent_months", 1),
                    ("profile_max_rows", 100), ("profile_cycle_months", 1), ("profile_state_rows", 100)):
        if key in rcfg:
            whole_number(f"report.{key}", rcfg[key], lo)
    fraction("report.tolerance", rcfg.get("tolerance", 0.05))
    if rcfg.get("iv_binning", "quantile") not in ("quantile", "optimal"):
        raise ConfigError("report.iv_binning", rcfg["iv_binning"], "'quantile' or 'optimal'")


def build_reports(*, ds: Dataset, model: FittedModel, train: np.ndarray, valid: np.ndarray, test: np.ndarray,
                  proba: np.ndarray, metrics: Mapping[str, float], leaks: list[tuple[str, float]],
                  importance: pd.Series, fidelity=None, whatif=None, cfg: Mapping[str, Any]) -> Reports:
    """The tables, the HTML model report and (LightGBM on a risk target) the reference profile of one run."""
    rcfg, seed = cfg["report"], int(cfg["seed"])
    target = cfg["target"]["name"] if ds.from_panel else str(cfg["data"]["target_column"])
    risk = not ds.from_panel or target in RISK_TARGETS
    scale, bands = PointsScale.from_config(cfg["points"]), Bands.from_config(cfg["bands"])
    y, p = (ds.y[test] > 0).astype(np.int64), 1.0 - proba[:, 0]
    tol = float(rcfg["tolerance"])
    out = Reports()
    out.tables["tables/gains_deciles.csv"] = gains_table(y, p)
    out.tables["tables/calibration_deciles.csv"] = calibration_table(y, p, tolerance=tol)
    if risk:
        band = band_of(p, scale, bands)
        worst_first = list(bands.labels)[::-1]
        out.tables["tables/gains_bands.csv"] = gains_table(y, p, groups=band, order=worst_first)
        cal = calibration_table(y, p, groups=band, order=worst_first, tolerance=tol)
        out.tables["tables/calibration_bands.csv"] = cal
        out.metrics["calibration_bands_ok"] = float(cal["ok"].all())
        out.metrics["calibration_max_band_gap"] = float(cal["gap"].abs().max())
    iv_rows = _sample(train, int(rcfg["iv_max_rows"]), seed)
    X_iv, y_iv = ds.X.iloc[iv_rows], (ds.y[iv_rows] > 0).astype(np.int64)
    # factor contributions need the panel's numeric features (a table's raw categories are not a matrix)
    explainer = kit.explainer(model, ds.feature_factors) \
        if model.kind == "lightgbm" and ds.from_panel else None
    factor_scores = None
    if explainer is not None:
        factor_scores = score_rows(model.predict_proba, explainer, X_iv).factor_contrib
    iv_feat, iv_fac = information_values(X_iv, y_iv, ds.feature_factors, factor_scores=factor_scores,
                                         binning=str(rcfg.get("iv_binning", "quantile")),
                                         max_n_prebins=int(rcfg.get("iv_max_prebins", 20)))
    out.tables["tables/iv_features.csv"], out.tables["tables/iv_factors.csv"] = iv_feat, iv_fac
    card = None
    if model.kind == "logistic" and len(ds.classes) == 2:
        card = fit_scorecard(X_iv, y_iv, scale, seed=seed, max_n_prebins=int(rcfg.get("iv_max_prebins", 20)))
        out.tables["tables/scorecard.csv"] = scorecard_table(card, ds.feature_factors)
        out.metrics["scorecard_roc_auc_adverse"] = float(mx.classification_metrics(
            y, np.column_stack([1 - (q := scorecard_proba(card, ds.X.iloc[test])), q]), ["0", "1"])["roc_auc_adverse"])
    if explainer is not None and risk and ds.from_panel and rcfg.get("profile", True):
        out.profile = build_profile(
            ds.X.iloc[train], lambda R: score_rows(model.predict_proba, explainer, R),
            feature_factors=ds.feature_factors, scale=scale, bands=bands, months=ds.time[train] if ds.time is not None
            else None, recent_months=int(rcfg["profile_recent_months"]), max_rows=int(rcfg["profile_max_rows"]),
            seed=seed, full_age=max(ds.meta.get("windows") or [12]),
            cycle_months=int(rcfg.get("profile_cycle_months", 24)),
            state_rows=int(rcfg.get("profile_state_rows", 10_000)))
    out.html = _html(ds, model, cfg, target, train, valid, test, y, p, proba, metrics, out, leaks, importance,
                     fidelity, whatif)
    return out


def _metric_table(metrics: Mapping[str, float]) -> dict[str, Any]:
    keys = ["roc_auc_adverse", "oracle_auc_adverse", "model_auc_adverse_oracle_rows", "auc_gap_to_oracle",
            "pr_auc_adverse", "ks", "gini", "brier", "ece", "log_loss", "valid_roc_auc_adverse",
            "fidelity_top1", "calibration_max_band_gap", "scorecard_roc_auc_adverse", "best_iteration"]
    return {k: metrics[k] for k in keys if k in metrics and np.isfinite(metrics[k])}


def _html(ds, model, cfg, target, train, valid, test, y, p, proba, metrics, out: Reports, leaks, importance,
          fidelity, whatif=None) -> str:
    t = out.tables
    parts = [html.section("Data", html.key_values(_data_summary(ds, train, valid, test))),
             html.section("Metrics (test set)", html.key_values({**_metric_table(metrics), **{
                 k: v for k, v in out.metrics.items() if k not in metrics}}),
                 note="The oracle is the simulator's true probability on the same test rows: the best any model "
                      "could do. The gap is oracle AUC minus model AUC.")]
    figs = [html.figure(mx.plot_roc(ds.y[test], proba, ds.classes), alt="ROC"),
            html.figure(mx.plot_calibration(y, p, n_bins=int(cfg["eval"]["ece_bins"])), alt="calibration"),
            html.figure(mx.plot_factor_importance(importance), alt="importance by factor")]
    parts.append(html.section("ROC, calibration, importance by factor", '<div class="grid">' + "".join(figs)
                              + "</div>"))
    if "tables/gains_bands.csv" in t:
        parts.append(html.section("Gains by band", html.table(t["tables/gains_bands.csv"]),
                                  note=f"Bands cut on {cfg['bands'].get('by', 'probability')} at "
                                       f"{list(cfg['bands']['edges'])}; riskiest band first; points: "
                                       f"{PointsScale.from_config(cfg['points']).as_dict()}."))
        parts.append(html.section("Calibration by band", html.table(t["tables/calibration_bands.csv"]),
                                  note=f"ok: |predicted - observed| <= {cfg['report']['tolerance']} or the "
                                       "prediction inside the observed rate's Wilson 95% interval."))
    parts.append(html.section("Gains by decile", html.table(t["tables/gains_deciles.csv"])))
    parts.append(html.section("Calibration by decile", html.table(t["tables/calibration_deciles.csv"])))
    parts.append(html.section("Information value by factor", html.table(t["tables/iv_factors.csv"]),
                              note="A factor's IV is that of the model's summed contribution of its features "
                                   "(LightGBM), else its best feature's; optbinning's optimal bins."))
    parts.append(html.section("Information value by feature", html.table(t["tables/iv_features.csv"], max_rows=30)))
    if "tables/scorecard.csv" in t:
        parts.append(html.section("Scorecard (optbinning: bins, WoE, points)", html.table(
            t["tables/scorecard.csv"], max_rows=80, digits=3)))
    if fidelity is not None:
        parts.append(html.section("Explanation fidelity", html.key_values(fidelity.as_dict()),
                                  html.table(fidelity.per_cause.reset_index()),
                                  note="How often the top reason is the cause the simulator recorded."))
    if whatif is not None and whatif.per_factor is not None:
        parts.append(html.section("What-if against the simulator following the advice",
                                  html.table(whatif.per_factor.reset_index(), digits=4),
                                  note="Each actionable reason's p_after against the oracle under intervention "
                                       "(the future re-simulated with the borrower following the advice): mean "
                                       "absolute error, bias, the model's own error without the advice, and the "
                                       "share of cases with a true change whose direction p_after shows."))
    leak_rows = pd.DataFrame(leaks, columns=["feature", "auc"])
    parts.append(html.section("Leakage scan", html.table(leak_rows) if len(leaks) else
                              "<p>No single feature predicts the target near perfectly.</p>",
                              note=f"threshold {cfg['leakage']['threshold']}: a feature whose own AUC is "
                                   "beyond it (or below 1 - it) on the training rows fails the run."))
    if out.profile is not None:
        parts.append(html.section("Reference profile", html.key_values({
            "rows": out.profile["n_rows"], "months": str(out.profile["months"]),
            "training months": str(out.profile["training_months"]),
            "mean P(adverse)": out.profile["mean_p_adverse"]}),
            note="Saved beside model.txt as reference_profile.json; riskml.monitor compares batches with it."))
    title = f"riskml model report: {model.kind} on {target}"
    return html.page(title, parts, subtitle=f"run of {ds.kind} data {ds.digest[:12]}")

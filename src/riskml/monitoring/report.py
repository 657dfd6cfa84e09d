"""A monitoring run's results: one JSON document and one self-contained HTML page.

Stage code: the drift and back-test results in, a dict and a string out.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from riskml.monitoring.drift import TOO_FEW, Drift, Thresholds, worst
from riskml.monitoring.migration import Migration
from riskml.measure import html


def _records(df: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    if df is None:
        return None
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in df.to_dict("records")]


def monitor_document(*, drift: Drift, backtest_table: pd.DataFrame | None, backtest_metrics: dict | None,
                     thresholds: Thresholds, context: Mapping[str, Any], migration: Migration | None = None
                     ) -> dict[str, Any]:
    """Everything a scheduler or a person needs: the level, what alarmed, and every table."""
    least = int(context.get("min_accounts") or 0)
    few = int(context.get("n_scored") or 0) < least
    levels = {k: TOO_FEW if few else v for k, v in drift.levels.items()}
    if backtest_metrics is not None:
        levels["backtest"] = (TOO_FEW if backtest_metrics["n"] < least else
                              "ok" if backtest_metrics["bands_ok"] else "act")
    return {
        "level": TOO_FEW if few else worst(v for v in levels.values() if v != TOO_FEW), "levels": levels,
        **dict(context),
        "thresholds": {"watch": thresholds.watch, "act": thresholds.act},
        "drift": drift.summary(), "features": _records(drift.features), "factors": _records(drift.factors),
        "bands": _records(drift.bands), "reasons": _records(drift.reasons),
        "backtest": None if backtest_metrics is None else {**backtest_metrics, "by_band": _records(backtest_table)},
        "migration": None if migration is None else migration.summary(),
    }


def _psi_bars(frame: pd.DataFrame, key: str, thresholds: Thresholds, title: str, n: int = 20) -> Figure:
    top = frame.head(n).iloc[::-1]
    fig = Figure(figsize=(7, 0.28 * max(len(top), 1) + 1.2))
    ax = fig.add_subplot()
    colour = {"ok": "#4c9f70", "watch": "#d4a72c", "act": "#cf222e"}
    ax.barh(top[key].astype(str), np.minimum(top["psi"], 1.0), color=[colour[v] for v in top["level"]])
    for x, ls in ((thresholds.watch, "--"), (thresholds.act, "-")):
        ax.axvline(x, color="grey", ls=ls, lw=1)
    ax.set(xlabel="PSI (bars cut at 1.0)", title=title, xlim=(0, 1.05))
    fig.tight_layout()
    return fig


def _shares(t: pd.DataFrame, title: str) -> Figure:
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    x = np.arange(len(t))
    ax.bar(x - 0.2, t["reference"], 0.4, label="reference (training)")
    ax.bar(x + 0.2, t["batch"], 0.4, label="this batch")
    ax.set_xticks(x, t["label"].astype(str), rotation=30, ha="right")
    ax.set(ylabel="share", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def backtest_figure(t: pd.DataFrame, title: str = "back-test: predicted vs realised by band") -> Figure:
    """Observed rate with its 95% interval and the mean prediction, per band (worst first)."""
    fig = Figure(figsize=(6, 3.4))
    ax = fig.add_subplot()
    x = np.arange(len(t))
    obs = t["observed"].to_numpy(np.float64)
    err = np.vstack([obs - t["lo95"].to_numpy(np.float64), t["hi95"].to_numpy(np.float64) - obs])
    ax.errorbar(x, obs, yerr=np.nan_to_num(err), fmt="o", capsize=4, label="observed (95% interval)")
    ax.plot(x, t["predicted"], "s", color="#cf222e", label="predicted (mean)")
    ax.set_xticks(x, t["group"].astype(str))
    ax.set(ylabel="P(adverse)", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def monitor_html(doc: Mapping[str, Any], drift: Drift, backtest_table: pd.DataFrame | None,
                 thresholds: Thresholds, migration: Migration | None = None) -> str:
    """The monitoring page: verdict, PSI of score / features / factors, bands, reasons, back-test."""
    head = {"level": doc["level"], "model": f"{doc.get('model_name')} v{doc.get('model_version')}",
            "scored month": doc.get("as_of"), "accounts normal at that month": doc.get("n_scored"),
            "rejected borrowers": doc.get("rejected_borrowers"), "score PSI": drift.score_psi,
            "band PSI": drift.bands_psi, "top-reason PSI": drift.reasons_psi,
            "expected adverse rate (reference)": None if drift.rate is None else
            f"{drift.rate:.4f} ({drift.reference_rate:.4f}, change {drift.rate_change:.0%})",
            "reference month (platform phase)": str(doc.get("reference_months")),
            "thresholds": f"PSI watch {thresholds.watch}, act {thresholds.act}; rate change watch "
                          f"{thresholds.rate_watch:.0%}, act {thresholds.rate_act:.0%}"}
    levels = pd.DataFrame({"part": list(doc["levels"]), "level": list(doc["levels"].values())})
    parts = [html.section("Verdict", html.badge(doc["level"]), html.key_values(head), html.table(levels))]
    # full width: twenty feature names do not fit a grid cell
    figs = [html.figure(_psi_bars(drift.features, "feature", thresholds, "PSI per feature (top 20)"), alt="psi"),
            html.figure(_psi_bars(drift.factors, "factor", thresholds, "PSI per factor contribution"), alt="psi")]
    parts.append(html.section("Population stability", "<br>".join(figs),
                              note="Platform-wide columns (one value per month) are binned as below / inside / "
                                   "above the range seen in training."))
    if drift.bands is not None:
        parts.append(html.section(
            "Bands and top reasons", '<div class="grid">' + html.figure(_shares(drift.bands, "band shares"))
            + html.figure(_shares(drift.reasons, "top reason mix")) + "</div>",
            html.table(drift.bands), html.table(drift.reasons)))
    if migration is not None:
        m = migration.moves()
        shares = migration.shares().mul(100).round(1).reset_index(names=f"band at {migration.from_month}")
        counts = migration.counts.reset_index(names=f"band at {migration.from_month}")
        parts.append(html.section(
            f"Band migration, month {migration.from_month} to {migration.to_month}",
            html.key_values({"accounts at both months": m["accounts"], "same band": m["stayed"],
                             "to a riskier band (or down)": m["worse"], "to a safer band": m["better"]}),
            html.table(shares, digits=1), html.table(counts),
            note="Rows: the band at the earlier month; columns: the band now. First table: % of the row's "
                 "accounts; second: accounts. Suspended and closed accounts have their status as band."))
    parts.append(html.section("Features", html.table(drift.features, max_rows=40)))
    parts.append(html.section("Factors", html.table(drift.factors)))
    if backtest_table is not None:
        bt = doc["backtest"]
        parts.append(html.section(
            "Back-test", html.key_values({k: bt[k] for k in ("n", "n_without_outcome", "events", "predicted_rate",
                                                             "observed_rate", "auc", "ks", "bands_ok")}),
            html.figure(backtest_figure(backtest_table)), html.table(backtest_table),
            note=f"Realised outcomes over months {doc.get('as_of')}+1 .. +{doc.get('horizon')}; a band is ok when "
                 "predicted and observed differ by at most the tolerance or the prediction is inside the interval."))
    return html.page("riskml monitoring report", parts, subtitle=f"batch {doc.get('input')}")

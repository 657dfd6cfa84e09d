"""The evaluation steps of a training run, kept out of ``train.py``'s flow:
test metrics, the leakage scan, the oracle gap, explanation fidelity,
importance by factor and the plots. Stage code: arrays in, numbers, tables
and figures out; the caller (``riskml.train``) tracks them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from riskml import explain
from riskml.evaluation import kit
from riskml.explain.recovery import recovery_rule, recovery_side
from riskml.features import build_snapshots
from riskml.simulate import oracle, simulate
from riskml.measure import metrics
from riskml.training.datasets import Dataset
from riskml.training.models import FittedModel

log = logging.getLogger(__name__)


class Cache(Protocol):
    """Where the evaluation's simulations are kept (``riskml.io.eval_cache.EvalCache``): ``make()`` runs at
    most once per ``(kind, parts)``."""

    def frame(self, kind: str, parts: Mapping[str, Any], make: Callable[[], pd.DataFrame]) -> pd.DataFrame: ...


class _NoCache:
    def frame(self, kind: str, parts: Mapping[str, Any], make: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        return make()

    latest = frame


def adverse_label(y: np.ndarray) -> np.ndarray:
    """1 where the class is not the normal one (class 0)."""
    return (np.asarray(y) > 0).astype(np.int64)


def evaluate_predictions(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Test metrics from ``riskml.measure.metrics`` (ROC/PR-AUC per class and adverse, KS, Gini, Brier, log-loss, ECE)."""
    return {k: float(v) for k, v in metrics.classification_metrics(y, proba, list(classes)).items()}


def scan_leakage(ds: Dataset, train: np.ndarray, threshold: float) -> list[tuple[str, float]]:
    """The leakage scan of single features on the training rows, against the adverse label.

    Returns ``(feature, auc)`` pairs (``training.metrics.leakage_scan``); the
    caller records them and then applies ``training.metrics.raise_on_leaks``.
    """
    train = train[metrics.leakage_rows(len(train))]  # the scan's own sample, before the rows are copied out
    return [(str(f), float(a)) for f, a in metrics.leakage_scan(ds.X.iloc[train], adverse_label(ds.y[train]),
                                                                 float(threshold))]


def oracle_metrics(ds: Dataset, test: np.ndarray, proba: np.ndarray, cfg: Mapping[str, Any], *,
                   cache: Cache | None = None) -> dict[str, float]:
    """The simulator's oracle on a subsample of the test snapshots and the model's gap to it.

    ``oracle_auc_adverse`` (the Bayes limit's adverse ROC-AUC), its PR-AUC,
    Brier and log-loss, and ``auc_gap_to_oracle`` (oracle minus model AUC on
    the same rows). Only status targets have an oracle (it gives the worst
    status over the horizon). ``cache`` keeps the oracle's answer for the same
    question (the adverse and status models ask the same one).
    """
    ev = cfg["eval"]
    if not ev.get("oracle", True) or ds.sim is None or cfg["target"]["name"] == "recovery_6m":
        return {}
    rng = np.random.default_rng(int(cfg["seed"]))
    n = min(len(test), int(ev["oracle_max_rows"]))
    pick = np.sort(rng.choice(len(test), size=n, replace=False))
    keys = ds.keys.iloc[test[pick]][["borrower_id", "month"]].reset_index(drop=True)
    horizon, n_paths, seed = int(cfg["target"]["horizon"]), int(ev["oracle_n_paths"]), int(cfg["seed"])
    orc = (cache or _NoCache()).frame(
        "oracle", {"sim": ds.sim.to_dict(), "keys": keys, "horizon": horizon, "n_paths": n_paths, "seed": seed},
        lambda: oracle(ds.sim, keys, horizon=horizon, n_paths=n_paths, seed=seed))
    orc = keys.merge(orc, on=["borrower_id", "month"], how="left")
    gap = metrics.oracle_gap(ds.y[test[pick]], proba[pick], metrics.oracle_proba(orc, ds.classes), ds.classes)
    gap["oracle_auc_adverse"] = gap.pop("oracle_roc_auc_adverse")
    gap["model_auc_adverse_oracle_rows"] = gap["oracle_auc_adverse"] - gap["auc_gap_to_oracle"]
    gap["oracle_rows"] = float(n)
    return gap


def side_of(target: str) -> str:
    """The side of the question a target answers: ``adverse`` (why at risk) or ``recovery`` (what stands in the way)."""
    return "recovery" if target == "recovery_6m" else "adverse"


def top1_reasons(expl: explain.FactorExplainer, X: pd.DataFrame, proba: np.ndarray, *, side: str,
                 status: Any = None, cause: Any = None) -> tuple[pd.Series, np.ndarray]:
    """The top reason of each row as batch prediction gives it (NA: no documented factor), and which rows
    the recovery rule explained (all False on the adverse side).

    Adverse side: the factor that raises P(adverse) most. Recovery side: the
    user's factor that lowers P(recovery) most, unless the recovery rule names
    the cause on record (``explain.recovery.recovery_rule``: a maintenance
    suspension, a policy or fraud closure, or no factor of the user's stands in
    the way). ``status`` and ``cause`` (the cause on record) feed the rule.
    """
    contrib = explain.adverse_contributions(expl.contributions(X), proba, adverse_classes=range(1, proba.shape[1]))
    top = explain.top_reasons(contrib if side == "adverse" else -recovery_side(contrib, expl.factors), expl.factors,
                              k=1)
    top1 = np.full(len(X), None, dtype=object)
    top1[top["row"].to_numpy()] = top["factor"].astype(object).to_numpy()
    by_rule = np.zeros(len(X), dtype=bool)
    if side == "recovery":
        # a lender's panel may have no maintenance flag (its feature left out): the flag is then unknown
        flag = X["maintenance"] if "maintenance" in X.columns else np.full(len(X), np.nan)
        rule, _ = recovery_rule(status, cause, flag, X["months_in_status"], pd.notna(top1))
        by_rule = pd.notna(rule)
        top1 = np.where(by_rule, rule, top1)
    return pd.Series(top1, dtype="object"), by_rule


def _fidelity(top1: pd.Series, by_rule: np.ndarray, cause: pd.Series, min_events: int) -> explain.Fidelity:
    """``explain.fidelity`` with a ``by_rule`` column: the share of each cause's events the recovery rule explained."""
    cause = cause.reset_index(drop=True)
    fid = explain.fidelity(top1, cause, min_events=min_events)
    share = pd.Series(by_rule, dtype=float).groupby(cause.astype(str).to_numpy()).mean()
    fid.per_cause["by_rule"] = share.reindex(fid.per_cause.index).to_numpy()
    return fid


def _event_rows(y: np.ndarray, cause: pd.Series, side: str) -> np.ndarray:
    """Rows judged: adverse side, accounts that turned adverse; recovery side, every down account with a cause."""
    known = cause.notna().to_numpy()
    return np.flatnonzero(known & (np.asarray(y) > 0) if side == "adverse" else known)


def fidelity_metrics(ds: Dataset, test: np.ndarray, proba: np.ndarray, model: FittedModel,
                     cfg: Mapping[str, Any]) -> explain.Fidelity | None:
    """Explanation fidelity on the test snapshots, on the side the target answers.

    Adverse side (status targets): the top reason of each snapshot that turned
    adverse vs the cause of the first change. Recovery side (``recovery_6m``):
    the top reason standing in the way of each suspended or closed snapshot vs
    the cause on record. Overall and per cause, with the confusion table.
    ``None`` (not measured) for baselines, for data without causes, or when
    ``eval.fidelity`` is false.
    """
    if not cfg["eval"].get("fidelity", True) or model.kind != "lightgbm" or ds.cause is None:
        return None
    side = side_of(cfg["target"]["name"])
    cause = ds.cause.iloc[test].reset_index(drop=True)
    rows = _event_rows(ds.y[test], cause, side)
    if len(rows) == 0:
        return None
    expl = kit.explainer(model, ds.feature_factors)
    top1, by_rule = top1_reasons(expl, ds.X.iloc[test[rows]], proba[rows], side=side,
                                 status=ds.keys["status"].iloc[test[rows]].astype(str), cause=cause.iloc[rows])
    return _fidelity(top1, by_rule, cause.iloc[rows], int(cfg["eval"].get("fidelity_min_events", 50)))


@dataclass
class FidelityReport:
    """Fidelity of one model on fresh portfolios, one per scenario.

    Attributes:
        metrics: ``fidelity_<side>_<scenario>_top1`` (overall), ``..._events`` and
            ``..._top1_<cause>`` per cause.
        per_cause: rows (side, scenario, cause): ``n_events``, ``top1_rate``, ``judged``
            and ``by_rule`` (share of events the recovery rule explained, not the model).
        confusion: rows (side, scenario, true_cause), one column per top-1 factor: counts.
    """

    metrics: dict[str, float]
    per_cause: pd.DataFrame
    confusion: pd.DataFrame


def scenario_fidelity(model: FittedModel, ds: Dataset, cfg: Mapping[str, Any], *,
                      cache: Cache | None = None) -> FidelityReport | None:
    """Fidelity on a fresh simulation per scenario of ``eval.fidelity_scenarios``, on the target's side.

    Each portfolio is the training data's platform under the scenario, with
    ``min(eval.fidelity_n_borrowers, the data's)`` borrowers and the seed
    ``data seed + eval.fidelity_seed_offset``: borrowers the model never saw.
    ``None`` where :func:`fidelity_metrics` measures nothing, or without scenarios.
    ``cache`` keeps each portfolio for the run's other models (and a rerun).
    """
    ev = cfg["eval"]
    scenarios = ev.get("fidelity_scenarios") or {}
    if not ev.get("fidelity", True) or not scenarios or model.kind != "lightgbm" or ds.sim is None:
        return None
    side = side_of(cfg["target"]["name"])
    n = min(int(ev.get("fidelity_n_borrowers", 20_000)), ds.sim.n_borrowers)
    seed = ds.sim.seed + int(ev.get("fidelity_seed_offset", 1))
    expl = kit.explainer(model, ds.feature_factors)
    metrics, per, conf = {}, [], []
    # the what-if's scenarios last: it asks for their snapshots next (EvalCache.latest)
    later = set(ev.get("whatif_scenarios") or ()) if ev.get("whatif", True) else set()
    for name, scenario in sorted(scenarios.items(), key=lambda item: item[0] in later):
        sim = ds.sim.with_scenario(scenario, n_borrowers=n, seed=seed)
        snaps = scenario_snapshots(sim, ds, cfg, cache=cache)
        rows = _event_rows(snaps.y, snaps.cause, side)
        X = snaps.X.iloc[rows]
        top1, by_rule = top1_reasons(expl, X, model.predict_proba(X), side=side,
                                     status=snaps.keys["status"].iloc[rows].astype(str), cause=snaps.cause.iloc[rows])
        fid = _fidelity(top1, by_rule, snaps.cause.iloc[rows], int(ev.get("fidelity_min_events", 50)))
        metrics.update({f"fidelity_{side}_{name}_{k[len('fidelity_'):]}": v for k, v in fid.as_dict().items()})
        key = {"side": side, "scenario": name}
        per.append(fid.per_cause.reset_index().assign(**key))
        conf.append(fid.confusion.reset_index().assign(**key))
        log.info("fidelity %s side, %s: top-1 %.3f over %d events", side, name, fid.overall, fid.n_events)
    index = ["side", "scenario"]
    per_cause = pd.concat(per, ignore_index=True).set_index([*index, "cause"])
    confusion = pd.concat(conf, ignore_index=True).fillna(0).set_index([*index, "true_cause"])
    return FidelityReport(metrics, per_cause, confusion.astype(np.int64))


def scenario_snapshots(sim: Any, ds: Dataset, cfg: Mapping[str, Any], *, cache: Cache | None = None) -> Any:
    """The target's snapshots of the fresh portfolio ``sim`` (simulated once per run: ``cache``)."""
    cache = cache or _NoCache()
    panel = cache.frame("portfolio", {"sim": sim.to_dict()}, lambda: simulate(sim).panel)
    parts = {"sim": sim.to_dict(), "target": cfg["target"]["name"], "horizon": int(cfg["target"]["horizon"]),
             "min_history": int(cfg["data"]["min_history"]), "windows": list(ds.meta["windows"])}
    # the what-if reads the snapshots of the scenario the fidelity read last: built once for both
    return cache.latest("snapshots", parts, lambda: build_snapshots(
        panel, target=parts["target"], horizon=parts["horizon"], min_history=parts["min_history"],
        windows=tuple(parts["windows"])))


def importance_by_factor(model: FittedModel, ds: Dataset, rows: np.ndarray, *, seed: int) -> pd.Series:
    """Feature importance summed per factor (gain for LightGBM, permutation for baselines), largest first."""
    imp = model.feature_importance(ds.X.iloc[rows], ds.y[rows], seed=seed)
    by = imp.groupby(pd.Series(ds.feature_factors)).sum()
    return by.sort_values(ascending=False)


def plots(y: np.ndarray, proba: np.ndarray, classes: list[str], importance: pd.Series, *,
          n_bins: int = 10) -> dict[str, Any]:
    """Artifact name -> matplotlib Figure: ROC, calibration curve (adverse), importance by factor."""
    return {"plots/roc.png": metrics.plot_roc(y, proba, list(classes)),
            "plots/calibration.png": metrics.plot_calibration(adverse_label(y), 1.0 - proba[:, 0], n_bins=n_bins),
            "plots/importance_by_factor.png": metrics.plot_factor_importance(importance)}


def summarise_folds(per_fold: list[dict[str, float]]) -> dict[str, float]:
    """One fold: its metrics. Several: the mean under each name and ``<name>_std``."""
    if len(per_fold) == 1:
        return dict(per_fold[0])
    frame = pd.DataFrame(per_fold)
    out = frame.mean().to_dict()
    out.update({f"{k}_std": v for k, v in frame.std(ddof=1).to_dict().items()})
    out["n_folds"] = float(len(per_fold))
    return out


def validation_metrics(model: FittedModel, ds: Dataset, valid: np.ndarray) -> dict[str, float]:
    """Adverse AUC on the validation slice: what tuning selects on, so the test set stays unseen."""
    adverse = ds.y[valid] > 0
    if len(valid) == 0 or adverse.all() or not adverse.any():
        return {}
    return {"valid_roc_auc_adverse": float(roc_auc_score(adverse, 1 - model.predict_proba(ds.X.iloc[valid])[:, 0]))}

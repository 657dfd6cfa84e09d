"""The evaluation steps of a training run, kept out of ``train.py``'s flow:
test metrics, the leakage scan, the oracle gap, explanation fidelity,
importance by factor and the plots. Stage code: arrays in, numbers, tables
and figures out; the caller (``riskml.train``) tracks them.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd

from riskml import explain
from riskml.simulate import oracle
from riskml.training import metrics
from riskml.training.datasets import Dataset
from riskml.training.models import FittedModel

log = logging.getLogger(__name__)


def adverse_label(y: np.ndarray) -> np.ndarray:
    """1 where the class is not the normal one (class 0)."""
    return (np.asarray(y) > 0).astype(np.int64)


def evaluate_predictions(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Test metrics from ``riskml.training.metrics`` (ROC/PR-AUC per class and adverse, KS, Gini, Brier, log-loss, ECE)."""
    return {k: float(v) for k, v in metrics.classification_metrics(y, proba, list(classes)).items()}


def scan_leakage(ds: Dataset, train: np.ndarray, threshold: float) -> list[tuple[str, float]]:
    """The leakage scan of single features on the training rows, against the adverse label.

    Returns ``(feature, auc)`` pairs (``training.metrics.leakage_scan``); the
    caller records them and then applies ``training.metrics.raise_on_leaks``.
    """
    return [(str(f), float(a)) for f, a in metrics.leakage_scan(ds.X.iloc[train], adverse_label(ds.y[train]),
                                                                 float(threshold))]


def oracle_metrics(ds: Dataset, test: np.ndarray, proba: np.ndarray, cfg: Mapping[str, Any]) -> dict[str, float]:
    """The simulator's oracle on a subsample of the test snapshots and the model's gap to it.

    ``oracle_auc_adverse`` (the Bayes limit's adverse ROC-AUC), its PR-AUC,
    Brier and log-loss, and ``auc_gap_to_oracle`` (oracle minus model AUC on
    the same rows). Only status targets have an oracle (it gives the worst
    status over the horizon).
    """
    ev = cfg["eval"]
    if not ev.get("oracle", True) or ds.sim is None or cfg["target"]["name"] == "recovery_6m":
        return {}
    rng = np.random.default_rng(int(cfg["seed"]))
    n = min(len(test), int(ev["oracle_max_rows"]))
    pick = np.sort(rng.choice(len(test), size=n, replace=False))
    keys = ds.keys.iloc[test[pick]][["borrower_id", "month"]].reset_index(drop=True)
    orc = oracle(ds.sim, keys, horizon=int(cfg["target"]["horizon"]), n_paths=int(ev["oracle_n_paths"]),
                 seed=int(cfg["seed"]))
    orc = keys.merge(orc, on=["borrower_id", "month"], how="left")
    gap = metrics.oracle_gap(ds.y[test[pick]], proba[pick], metrics.oracle_proba(orc, ds.classes), ds.classes)
    gap["oracle_auc_adverse"] = gap.pop("oracle_roc_auc_adverse")
    gap["model_auc_adverse_oracle_rows"] = gap["oracle_auc_adverse"] - gap["auc_gap_to_oracle"]
    gap["oracle_rows"] = float(n)
    return gap


def fidelity_metrics(ds: Dataset, test: np.ndarray, proba: np.ndarray, model: FittedModel,
                     cfg: Mapping[str, Any]) -> explain.Fidelity | None:
    """Explanation fidelity on the adverse test snapshots.

    Top-1 factor of ``riskml.explain`` vs the true cause of the first change,
    overall and per cause, with the confusion table. ``None`` (not measured)
    for baselines, for data without true causes, or when ``eval.fidelity`` is
    false.
    """
    if (not cfg["eval"].get("fidelity", True) or model.kind != "lightgbm" or ds.cause is None
            or cfg["target"]["name"] == "recovery_6m"):  # a recovery has no "first change" cause to find
        return None
    cause = ds.cause.iloc[test].reset_index(drop=True)
    rows = np.flatnonzero(cause.notna().to_numpy() & (ds.y[test] > 0))
    if len(rows) == 0:
        return None
    expl = explain.FactorExplainer(model.booster, ds.feature_factors)
    contrib = expl.contributions(ds.X.iloc[test[rows]])
    adverse = explain.adverse_contributions(contrib, proba[rows], adverse_classes=range(1, len(model.classes)))
    top = explain.top_reasons(adverse, expl.factors, k=1)
    top1 = pd.Series(pd.NA, index=range(len(rows)), dtype="object")
    top1.iloc[top["row"].to_numpy()] = top["factor"].astype(object).to_numpy()
    return explain.fidelity(top1, cause.iloc[rows].reset_index(drop=True),
                            min_events=int(cfg["eval"].get("fidelity_min_events", 50)))


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

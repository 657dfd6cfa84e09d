"""The evaluation steps of a training run, kept out of ``train.py``'s flow:
test metrics, the leakage guard, the oracle gap, explanation fidelity,
importance by factor and the plots. Stage code: arrays in, numbers and
figures out; the caller tracks them.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd

from riskml.datasets import Dataset
from riskml.exceptions import LeakageError
from riskml.models import FittedModel

log = logging.getLogger(__name__)

MAX_LEAK_ROWS = 200_000


def adverse_label(y: np.ndarray) -> np.ndarray:
    """1 where the class is not the normal one (class 0)."""
    return (np.asarray(y) > 0).astype(np.int64)


def evaluate_predictions(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Test metrics from ``riskml.evaluate`` (ROC/PR-AUC per class and adverse, KS, Gini, Brier, log-loss, ECE)."""
    from riskml import evaluate

    return {k: float(v) for k, v in evaluate.classification_metrics(y, proba, list(classes)).items()}


def check_leakage(ds: Dataset, train: np.ndarray, leak_cfg: Mapping[str, Any]) -> list[tuple[str, float]]:
    """Scan single features on the training rows; log and record leaks; fail unless allowed.

    Categorical features are scanned through their codes.
    """
    from riskml import evaluate, tracking

    X = ds.X.iloc[train]
    cats = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    if cats:
        X = X.assign(**{c: X[c].cat.codes.where(X[c].notna()).astype("float32") for c in cats})
    y = adverse_label(ds.y[train])
    if len(X) > MAX_LEAK_ROWS:  # a seeded subsample: single-feature AUCs are stable long before this
        pick = np.sort(np.random.default_rng(0).choice(len(X), MAX_LEAK_ROWS, replace=False))
        X, y = X.iloc[pick], y[pick]
    leaks = [(str(f), float(a)) for f, a in evaluate.leakage_scan(X, y, float(leak_cfg["threshold"]))]
    tracking.log_metrics({"leakage_features": float(len(leaks))})
    if not leaks:
        return leaks
    text = ", ".join(f"{f} (AUC {a:.4f})" for f, a in leaks)
    log.warning("leakage guard: %d feature(s) alone separate the target on training data: %s", len(leaks), text)
    tracking.set_tags({"riskml.leakage": text[:5000]})
    tracking.log_dict({f: a for f, a in leaks}, "leakage.json")
    if not leak_cfg.get("allow", False):
        raise LeakageError(f"leakage guard: feature(s) {text} reach a single-feature AUC beyond the threshold "
                           f"{leak_cfg['threshold']} on the training data; expected none (drop them, or set "
                           "leakage.allow=true to train anyway)")
    return leaks


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
    from riskml import evaluate
    from riskml.simulate import oracle

    rng = np.random.default_rng(int(cfg["seed"]))
    n = min(len(test), int(ev["oracle_max_rows"]))
    pick = np.sort(rng.choice(len(test), size=n, replace=False))
    keys = ds.keys.iloc[test[pick]][["borrower_id", "month"]].reset_index(drop=True)
    orc = oracle(ds.sim, keys, horizon=int(cfg["target"]["horizon"]), n_paths=int(ev["oracle_n_paths"]),
                 seed=int(cfg["seed"]))
    orc = keys.merge(orc, on=["borrower_id", "month"], how="left")
    gap = evaluate.oracle_gap(ds.y[test[pick]], proba[pick], evaluate.oracle_proba(orc, ds.classes), ds.classes)
    gap["oracle_auc_adverse"] = gap.pop("oracle_roc_auc_adverse")
    gap["model_auc_adverse_oracle_rows"] = gap["oracle_auc_adverse"] - gap["auc_gap_to_oracle"]
    gap["oracle_rows"] = float(n)
    return gap


def fidelity_metrics(ds: Dataset, test: np.ndarray, proba: np.ndarray, model: FittedModel,
                     cfg: Mapping[str, Any]) -> dict[str, float]:
    """HOOK (issue #4): explanation fidelity on the adverse test snapshots.

    Top-1 factor of ``riskml.explain`` vs the true cause of the first change,
    overall and per cause; the confusion table is logged as an artifact.
    Skipped for baselines, for data without true causes, or when
    ``eval.fidelity`` is false.
    """
    if (not cfg["eval"].get("fidelity", True) or model.kind != "lightgbm" or ds.cause is None
            or cfg["target"]["name"] == "recovery_6m"):  # a recovery has no "first change" cause to find
        return {}
    from riskml import explain, tracking

    cause = ds.cause.iloc[test].reset_index(drop=True)
    rows = np.flatnonzero(cause.notna().to_numpy() & (ds.y[test] > 0))
    if len(rows) == 0:
        return {}
    expl = explain.FactorExplainer(model.booster, ds.feature_factors)
    contrib = expl.contributions(ds.X.iloc[test[rows]])
    adverse = explain.adverse_contributions(contrib, proba[rows], adverse_classes=range(1, len(model.classes)))
    top = explain.top_reasons(adverse, expl.factors, k=1)
    top1 = pd.Series(pd.NA, index=range(len(rows)), dtype="object")
    top1.iloc[top["row"].to_numpy()] = top["factor"].astype(object).to_numpy()
    fid = explain.fidelity(top1, cause.iloc[rows].reset_index(drop=True),
                           min_events=int(cfg["eval"].get("fidelity_min_events", 50)))
    tracking.log_table(fid.confusion, "fidelity_confusion.csv")
    tracking.log_table(fid.per_cause, "fidelity_per_cause.csv")
    return fid.as_dict()


def importance_by_factor(model: FittedModel, ds: Dataset, rows: np.ndarray, *, seed: int) -> pd.Series:
    """Feature importance summed per factor (gain for LightGBM, permutation for baselines), largest first."""
    imp = model.feature_importance(ds.X.iloc[rows], ds.y[rows], seed=seed)
    by = imp.groupby(pd.Series(ds.feature_factors)).sum()
    return by.sort_values(ascending=False)


def plots(y: np.ndarray, proba: np.ndarray, classes: list[str], importance: pd.Series, *,
          n_bins: int = 10) -> dict[str, Any]:
    """Artifact name -> matplotlib Figure: ROC, calibration curve (adverse), importance by factor."""
    from riskml import evaluate

    return {"plots/roc.png": evaluate.plot_roc(y, proba, list(classes)),
            "plots/calibration.png": evaluate.plot_calibration(adverse_label(y), 1.0 - proba[:, 0], n_bins=n_bins),
            "plots/importance_by_factor.png": evaluate.plot_factor_importance(importance)}

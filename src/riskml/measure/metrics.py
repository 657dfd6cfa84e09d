"""Metrics, the leakage guard and the evaluation plots: plain functions over arrays.

Conventions: ``y_true`` holds class indices ``0..K-1`` in the order of
``classes``; ``proba`` is ``(n, K)`` (a 1-d array is read as P(class 1) of a
binary target). "Adverse" is every class but the first: ``p_adverse = 1 -
p_normal`` (suspended + closed for ``status_3m``; the positive class of a
binary target). Plots return a matplotlib ``Figure`` and write no file.

Example:
    >>> y, p = [0, 0, 1, 0, 1, 1], [0.1, 0.4, 0.35, 0.8, 0.7, 0.9]
    >>> round(ks_statistic(y, p), 4), round(expected_calibration_error(y, p, n_bins=2), 4)
    (0.3333, 0.0917)
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score, roc_curve

from riskml.exceptions import ConfigError, LeakageError, whole_number
from riskml.schema import class_probabilities

log = logging.getLogger(__name__)


def _proba_2d(proba, n_classes: int) -> np.ndarray:
    p = class_probabilities(proba)
    if p.ndim != 2 or p.shape[1] != n_classes:
        raise ValueError(f"proba has shape {p.shape}; expected (n_rows, {n_classes}) for classes of that length")
    return p


def _binary_ok(y: np.ndarray) -> bool:
    return 0 < y.sum() < len(y)


def ks_statistic(y_true, score) -> float:
    """Kolmogorov-Smirnov: the largest gap ``max |TPR - FPR|`` over thresholds."""
    y = np.asarray(y_true).astype(bool)
    if not _binary_ok(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, np.asarray(score, dtype=np.float64))
    return float(np.max(np.abs(tpr - fpr)))


def expected_calibration_error(y_true, p, n_bins: int = 10) -> float:
    """ECE: ``sum over equal-width bins of (n_bin / n) * |mean(y) - mean(p)|``.

    Bin ``k`` holds ``k/n_bins <= p < (k+1)/n_bins`` (the last bin includes 1).
    """
    whole_number("n_bins", n_bins, 1)
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return float("nan")
    b = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    gap = np.abs(np.bincount(b, y, n_bins) - np.bincount(b, p, n_bins))  # n_bin * |mean(y) - mean(p)|
    return float(gap.sum() / len(y))


def _auc(y: np.ndarray, s: np.ndarray, fn) -> float:
    return float(fn(y, s)) if _binary_ok(y) else float("nan")


def classification_metrics(y_true, proba, classes: Sequence[str]) -> dict[str, float]:
    """Test-set metrics of a classifier.

    Returns ``roc_auc_<class>`` and ``pr_auc_<class>`` (one-vs-rest) for every
    class, ``roc_auc_adverse``, ``pr_auc_adverse``, ``ks``, ``gini`` (= 2 AUC - 1),
    ``brier`` and ``ece`` of ``p_adverse``, the multiclass ``brier_multi``
    (mean over rows of the summed squared errors) and ``log_loss``. A metric
    that is undefined on this sample (a class absent) is NaN.
    """
    k = len(classes)
    if k < 2:
        raise ConfigError("classes", list(classes), "at least two class names")
    y = np.asarray(y_true).astype(np.int64)
    p = _proba_2d(proba, k)
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but proba has {len(p)}; expected the same rows")
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"y_true holds labels {sorted(set(y.tolist()))[:5]}; expected 0..{k - 1} for {list(classes)}")
    out: dict[str, float] = {}
    onehot = np.eye(k)[y]
    for j, c in enumerate(classes):
        out[f"roc_auc_{c}"] = _auc(onehot[:, j], p[:, j], roc_auc_score)
        out[f"pr_auc_{c}"] = _auc(onehot[:, j], p[:, j], average_precision_score)
    adverse = (y > 0).astype(np.int64)
    p_adv = np.clip(1.0 - p[:, 0], 0.0, 1.0)
    out["roc_auc_adverse"] = _auc(adverse, p_adv, roc_auc_score)
    out["pr_auc_adverse"] = _auc(adverse, p_adv, average_precision_score)
    out["ks"] = ks_statistic(adverse, p_adv)
    out["gini"] = 2.0 * out["roc_auc_adverse"] - 1.0
    out["brier"] = float(brier_score_loss(adverse, p_adv)) if len(y) else float("nan")
    out["brier_multi"] = float(np.mean(np.sum((p - onehot) ** 2, axis=1))) if len(y) else float("nan")
    out["log_loss"] = float(log_loss(y, np.clip(p, 1e-15, 1.0), labels=list(range(k)))) if len(y) else float("nan")
    out["ece"] = expected_calibration_error(adverse, p_adv)
    return out


def oracle_proba(oracle: pd.DataFrame, classes: Sequence[str], *, keys: pd.DataFrame | None = None) -> np.ndarray:
    """The oracle's probabilities (``p_normal``, ``p_suspended``, ``p_closed``) in a target's classes.

    Three classes map one to one; two classes are (normal, adverse) with
    ``p_adverse = 1 - p_normal``. With ``keys`` (the snapshots' borrower_id and
    month), the oracle rows must be those snapshots in that order.
    """
    missing = [c for c in ("p_normal", "p_suspended", "p_closed") if c not in oracle.columns]
    if missing:
        raise ValueError(f"oracle frame lacks columns {missing}; expected p_normal, p_suspended, p_closed")
    if keys is not None:
        k = ["borrower_id", "month"]
        a, b = oracle[k].to_numpy(np.int64), keys[k].to_numpy(np.int64)
        if a.shape != b.shape or not (a == b).all():
            i = int(np.flatnonzero((a != b).any(axis=1))[0]) if a.shape == b.shape else min(len(a), len(b))
            raise ValueError(f"oracle rows do not match the snapshot keys (first at row {i}; "
                             f"{len(a)} oracle rows, {len(b)} keys); expected the same (borrower_id, month) in order")
    pn = oracle["p_normal"].to_numpy(np.float64)
    if len(classes) == 3:
        return np.column_stack([pn, oracle["p_suspended"].to_numpy(np.float64), oracle["p_closed"].to_numpy(np.float64)])
    if len(classes) == 2:
        return np.column_stack([pn, 1.0 - pn])
    raise ConfigError("classes", list(classes), "2 (normal, adverse) or 3 (normal, suspended, closed) classes")


def oracle_gap(y_true, proba, oracle_p, classes: Sequence[str]) -> dict[str, float]:
    """The oracle's (Bayes limit) metrics on the same snapshots and the model's gap to it.

    Returns ``oracle_roc_auc_adverse``, ``oracle_pr_auc_adverse``,
    ``oracle_brier``, ``oracle_log_loss`` and ``auc_gap_to_oracle`` (oracle AUC
    minus model AUC; near 0 is as good as the data allows).
    """
    model = classification_metrics(y_true, proba, classes)
    orc = classification_metrics(y_true, oracle_p, classes)
    return {"oracle_roc_auc_adverse": orc["roc_auc_adverse"], "oracle_pr_auc_adverse": orc["pr_auc_adverse"],
            "oracle_brier": orc["brier"], "oracle_log_loss": orc["log_loss"],
            "auc_gap_to_oracle": orc["roc_auc_adverse"] - model["roc_auc_adverse"]}


def _rank_auc(x: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney AUC of one feature; NaN ranks below every value."""
    x = np.where(np.isnan(x), -np.inf, x)
    ranks = pd.Series(x).rank(method="average").to_numpy()
    n1 = int(y.sum())
    n0 = len(y) - n1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


#: rows the leakage scan reads at most (a seeded sample past it)
LEAKAGE_MAX_ROWS = 200_000


def leakage_rows(n: int, max_rows: int | None = LEAKAGE_MAX_ROWS, seed: int = 0) -> np.ndarray:
    """The positions of ``n`` rows the leakage scan reads: all, or past ``max_rows`` a seeded sorted sample
    (a caller holding the rows elsewhere takes them out before copying them)."""
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def leakage_scan(X: pd.DataFrame, y_binary, threshold: float, *, max_rows: int | None = LEAKAGE_MAX_ROWS,
                 seed: int = 0) -> list[tuple[str, float]]:
    """Features whose own AUC on ``y_binary`` is near perfect: ``max(AUC, 1 - AUC) >= threshold``.

    Returns ``(feature, auc)`` pairs, strongest first (``auc`` as measured; a
    value near 0 is a perfect inverse predictor). Missing values rank lowest.
    Past ``max_rows`` rows, a seeded random sample of that many rows is scanned
    (a near-perfect feature stays near perfect on a sample). Categorical
    columns are scanned through their codes.
    """
    if not 0.5 < float(threshold) <= 1.0:
        raise ConfigError("leakage_threshold", threshold, "a number in (0.5, 1]")
    y = np.asarray(y_binary).astype(bool)
    if len(y) != len(X):
        raise ValueError(f"y_binary has {len(y)} rows but X has {len(X)}; expected the same rows")
    if max_rows is not None and len(y) > max_rows:
        rows = leakage_rows(len(y), max_rows, seed)
        X, y = X.iloc[rows], y[rows]
    if not _binary_ok(y):
        return []
    hits = []
    for name in X.columns:
        x = X[name]
        if isinstance(x.dtype, pd.CategoricalDtype):
            x = x.cat.codes.where(x.notna())
        auc = _rank_auc(x.to_numpy(np.float64, na_value=np.nan), y)
        if max(auc, 1.0 - auc) >= threshold:
            hits.append((str(name), auc))
    return sorted(hits, key=lambda h: -max(h[1], 1.0 - h[1]))


def raise_on_leaks(hits: list[tuple[str, float]], *, threshold: float, allow: bool = False) -> None:
    """The leakage guard's verdict: log every suspect feature by name; raise unless ``allow``.

    Raises:
        LeakageError: naming each feature and its AUC, when any is found and
            ``allow`` is false (config key ``leakage.allow``).
    """
    for name, auc in hits:
        log.warning("leakage guard: feature %r alone has AUC %.4f on the training labels (threshold %.3f)",
                    name, auc, threshold)
    if hits and not allow:
        listed = ", ".join(f"{n} (AUC {a:.4f})" for n, a in hits)
        raise LeakageError(f"features predict the target near perfectly on their own: {listed}; "
                           f"expected every single-feature AUC within (1 - {threshold}, {threshold}). "
                           "Fix the feature or set leakage.allow=true")


def plot_roc(y_true, proba, classes: Sequence[str]) -> Figure:
    """ROC curves: one-vs-rest per class and adverse, with their AUCs in the legend."""
    y = np.asarray(y_true).astype(np.int64)
    p = _proba_2d(proba, len(classes))
    curves = [(f"{c}", y == j, p[:, j]) for j, c in enumerate(classes) if len(classes) > 2 or j == 0]
    curves.append(("adverse", y > 0, 1.0 - p[:, 0]))
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for label, yy, s in curves:
        if _binary_ok(yy):
            fpr, tpr, _ = roc_curve(yy, s)
            ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(yy, s):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    return fig


def plot_calibration(y_binary, p, n_bins: int = 10) -> Figure:
    """Reliability curve of ``p`` (equal-width bins) with the ECE in the title."""
    y = np.asarray(y_binary, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    b = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    has = n > 0
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.plot((np.bincount(b, p, n_bins)[has] / n[has]), (np.bincount(b, y, n_bins)[has] / n[has]), marker="o")
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency",
           title=f"calibration (ECE {expected_calibration_error(y, p, n_bins):.4f})", xlim=(0, 1), ylim=(0, 1))
    return fig


def plot_factor_importance(importance_by_factor: Mapping[str, float]) -> Figure:
    """Horizontal bars of importance summed by factor, largest on top."""
    items = sorted(importance_by_factor.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(6, 0.4 * max(len(items), 1) + 1.2))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel="importance (summed over the factor's features)", title="importance by factor")
    fig.tight_layout()
    return fig

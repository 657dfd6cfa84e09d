"""Reasons in the documented factors: contributions, top reasons, advice, what-if, fidelity.

Contributions are exact Shapley values of LightGBM's path-dependent TreeSHAP
game with the *factors as players* (:mod:`riskml.explain.treeshap`): each factor's
features enter a coalition together. They sum, with the bias, to the raw
score. They are not LightGBM's per-feature ``pred_contrib`` summed per factor
(those treat features as players and differ when one path splits on two
features of a factor); with one feature per factor the two coincide.

Example:
    >>> import numpy as np
    >>> c = np.array([[0.4, -0.1, 0.4, 0.2], [-0.3, -0.2, -0.1, 0.0]])
    >>> r = top_reasons(c, ["overdue", "multi_lending", "abnormal_use", "other"], k=2, include_other=True)
    >>> r[["row", "rank", "factor"]].values.tolist()  # a tie goes to the catalogue's order; row 1 has none
    [[0, 1, 'overdue'], [0, 2, 'abnormal_use']]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import lightgbm as lgb
import numba as nb
import numpy as np
import pandas as pd

from riskml import factors as catalogue
from riskml.explain import trees, treeshap
from riskml.features.windows import FeatureSpec, rectify
from riskml.exceptions import ConfigError, ModelError, SchemaError, whole_number
from riskml.explain.kernel_threads import kernel_threads

_log = logging.getLogger(__name__)

#: Adverse-action practice lists at most four reasons.
MAX_REASONS = 4


def check_top_k(k: object, *, key: str = "top_k") -> int:
    """Validate a number of reasons (1..``MAX_REASONS``); ``key`` names the config key in the error."""
    return whole_number(key, k, 1, MAX_REASONS, note="adverse-action practice")


#: the options of a scoring run that shape a row, at their defaults (``riskml.predict``'s config keys, and
#: the ``params`` a request to the served model may pass)
SCORE_OPTIONS = {"as_of": None, "top_k": 3, "what_if": True, "include_other": False}


def check_score_options(opts: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """:data:`SCORE_OPTIONS` as ``opts`` sets them, checked the one way a batch job's config and a served
    request's ``params`` (``prefix="params."``) are checked: a word such as 'maybe' is not taken for true."""
    out = {k: opts.get(k, v) for k, v in SCORE_OPTIONS.items()}
    if out["as_of"] is not None:
        out["as_of"] = whole_number(f"{prefix}as_of", out["as_of"], 0,
                                    what="null (each borrower's last month) or a month index")
    out["top_k"] = check_top_k(out["top_k"], key=f"{prefix}top_k")
    for key in ("what_if", "include_other"):
        if not isinstance(out[key], (bool, np.bool_)):
            raise ConfigError(f"{prefix}{key}", out[key], "true or false")
        out[key] = bool(out[key])
    return out


class FactorExplainer:
    """Per-factor TreeSHAP for one LightGBM booster; tables are built once here.

    Args:
        booster: a trained ``lightgbm.Booster`` (binary or multiclass).
        feature_factors: factor id of every model feature.
        factor_order: order of the factors in the output; default catalogue
            order, factors unknown to the catalogue next, ``other`` last.
        n_threads: threads for :meth:`contributions` (default: numba's, all cores).
        dump: the booster's :func:`riskml.explain.trees.dump_model`, when the caller has it already.

    Attributes:
        factors: the factor ids present, in output order.
        method_: ``"tables"`` (factor TreeSHAP) or ``"pred_contrib"`` (fallback
            for models the tables do not cover, e.g. linear trees: LightGBM's
            per-feature values summed per factor).
        table_bytes_: memory held by the precomputed tables.
    """

    def __init__(self, booster: lgb.Booster, feature_factors: dict[str, str],
                 factor_order: Sequence[str] | None = None, *, n_threads: int | None = None,
                 dump: dict | None = None):
        most = nb.config.NUMBA_NUM_THREADS
        if n_threads is not None:
            whole_number("n_threads", n_threads, 1, most, what="None or a whole number")
        self.booster, self.n_threads = booster, n_threads
        self.features_ = list(booster.feature_name())
        missing = [f for f in self.features_ if f not in feature_factors]
        if missing:
            raise SchemaError(f"feature_factors has no factor for model features {missing[:10]}; "
                              "expected a factor id for every feature of the booster")
        present = list(dict.fromkeys(feature_factors[f] for f in self.features_))
        self.factors = _order_factors(present, factor_order)
        index = {f: i for i, f in enumerate(self.factors)}
        self.feature_factor_ = np.array([index[feature_factors[f]] for f in self.features_], dtype=np.int64)
        dump = dump or trees.dump_model(booster)  # exact thresholds (the JSON dump clamps inf)
        self.n_outputs_ = int(dump.get("num_tree_per_iteration", 1))
        try:
            self.tables_: treeshap.TreeTables | None = treeshap.compile_model(dump, self.feature_factor_,
                                                                               len(self.factors))
            self.method_ = "tables"
            self.table_bytes_ = self.tables_.nbytes
        except treeshap.Unsupported as e:
            # Still exact Shapley values, but of features (summed per factor) and 50-100x slower.
            _log.warning("factor TreeSHAP tables not built (%s); using LightGBM's pred_contrib summed per factor", e)
            self.tables_, self.method_, self.table_bytes_ = None, "pred_contrib", 0

    def matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """``X`` in the booster's feature order: float32 if it is all float32, else float64."""
        if isinstance(X, pd.DataFrame):
            absent = [f for f in self.features_ if f not in X.columns]
            if absent:
                raise SchemaError(f"feature frame lacks model features {absent[:10]}; expected all of "
                                  f"{len(self.features_)} features the model was trained on")
            X = X[self.features_]
            f32 = all(dt == np.float32 for dt in X.dtypes)
            X = X.to_numpy(dtype=np.float32 if f32 else np.float64, na_value=np.nan)
        X = np.asarray(X)
        X = X.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)
        if X.ndim != 2 or X.shape[1] != len(self.features_):
            raise SchemaError(f"feature matrix has shape {X.shape}; expected (n_rows, {len(self.features_)})")
        return X

    def contributions(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Raw-score contributions per factor, bias last.

        Returns:
            ``(n_rows, n_outputs, n_factors + 1)``: log-odds (binary,
            ``n_outputs = 1``) or per-class softmax scores (multiclass); each
            row sums to ``predict(X, raw_score=True)``.
        """
        X = self.matrix(X)
        if self.tables_ is not None:
            with kernel_threads(self.n_threads):
                return treeshap.contributions(self.tables_, X)
        threads = {"num_threads": self.n_threads} if self.n_threads else {}
        raw = np.asarray(self.booster.predict(X, pred_contrib=True, **threads))
        n_feat = len(self.features_)
        raw = raw.reshape(X.shape[0], self.n_outputs_, n_feat + 1)
        out = np.zeros((X.shape[0], self.n_outputs_, len(self.factors) + 1))
        for j, f in enumerate(self.feature_factor_):  # loop over features, not rows
            out[:, :, f] += raw[:, :, j]
        out[:, :, -1] = raw[:, :, -1]
        return out


def _order_factors(present: list[str], order: Sequence[str] | None) -> list[str]:
    if order is not None:
        unknown = [f for f in present if f not in order]
        if unknown:
            raise ConfigError("factor_order", list(order), f"a list that includes every factor present {unknown}")
        return [f for f in order if f in present]
    known = [f for f in catalogue.factor_ids() if f in present and f != catalogue.OTHER]
    extra = [f for f in present if f not in catalogue.CATALOGUE]
    return known + extra + ([catalogue.OTHER] if catalogue.OTHER in present else [])


def adverse_contributions(contrib: np.ndarray, proba: np.ndarray, *,
                          adverse_classes: Sequence[int] = (1, 2)) -> np.ndarray:
    """Contributions to the log-odds of an adverse outcome, per factor.

    Binary models: the log-odds contributions themselves. Multiclass models:
    the log-odds of adverse vs normal (class 0) is
    ``L = log(sum_{c in A} exp(z_c)) - z_0``; linearised at the current
    probabilities, ``dL = sum_{c in A} (p_c / p_A) dz_c - dz_0``, which is applied
    to each factor's per-class contributions ``dz``.

    Args:
        contrib: ``(n_rows, n_outputs, n_factors + 1)`` from
            :meth:`FactorExplainer.contributions`.
        proba: ``(n_rows, n_classes)`` class probabilities (ignored for binary).
        adverse_classes: the adverse class indices.

    Returns:
        ``(n_rows, n_factors)``.
    """
    if contrib.ndim != 3:
        raise SchemaError(f"contrib has shape {contrib.shape}; expected (n_rows, n_outputs, n_factors + 1)")
    if contrib.shape[1] == 1:
        return contrib[:, 0, :-1]
    proba = np.asarray(proba, dtype=np.float64)
    adv = list(adverse_classes)
    if proba.shape != contrib.shape[:2] or not adv or min(adv) < 1 or max(adv) >= contrib.shape[1]:
        raise SchemaError(f"proba shape {proba.shape} / adverse_classes {adv} do not fit contributions of shape "
                          f"{contrib.shape}; expected (n_rows, n_classes) and classes in 1..{contrib.shape[1] - 1}")
    p_adv = proba[:, adv].sum(axis=1, keepdims=True)
    # An adverse probability that underflows to 0 leaves the mix undefined; weigh classes equally then.
    w = np.divide(proba[:, adv], p_adv, out=np.full((len(proba), len(adv)), 1.0 / len(adv)), where=p_adv > 0)
    return np.einsum("nc,ncf->nf", w, contrib[:, adv, :-1]) - contrib[:, 0, :-1]


def top_reasons(contrib_adverse: np.ndarray, factor_ids: Sequence[str], *, k: int = 3,
                include_other: bool = False) -> pd.DataFrame:
    """The risk-increasing factors of each row, largest first.

    Ties are broken by catalogue order. By default only documented factors
    are reasons: the notice a user gets names a documented cause, and the
    ``other`` pseudo-factor (limit, usage, income, status history) is no
    cause the user or the platform can name. With ``include_other=True`` it
    may be a reason too, marked ``documented=False``.

    Returns:
        Long frame: ``row`` (position), ``rank`` (1..k), ``factor``, ``label``
        (catalogue name), ``contribution`` (> 0), ``documented``.
    """
    order, vals = rank_factors(contrib_adverse, factor_ids, k=k, include_other=include_other)
    rows, ranks = np.nonzero(order >= 0)
    col = order[rows, ranks]
    ids = list(factor_ids)
    return pd.DataFrame({
        "row": rows.astype(np.int64),
        "rank": (ranks + 1).astype(np.int64),
        "factor": pd.array(np.asarray(ids, dtype=object)[col], dtype="string"),
        "label": pd.array(np.asarray([_label(f) for f in ids], dtype=object)[col], dtype="string"),
        "contribution": vals[rows, ranks],
        "documented": np.array([f in catalogue.CAUSES for f in ids], dtype=bool)[col],
    })


def rank_factors(contrib_adverse: np.ndarray, factor_ids: Sequence[str], *, k: int = 3,
                 include_other: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_reasons` as arrays: ``(n, k)`` indices into ``factor_ids`` (-1: no further reason)
    and their contributions (NaN where none)."""
    check_top_k(k, key="reasons.k")
    c = np.asarray(contrib_adverse, dtype=np.float64)
    ids = list(factor_ids)
    if c.ndim != 2 or c.shape[1] != len(ids):
        raise SchemaError(f"contributions have shape {c.shape}; expected (n_rows, {len(ids)}) for factors {ids}")
    if not include_other:
        c = np.where(np.isin(np.asarray(ids), list(catalogue.CAUSES)), c, -np.inf)
    rank_of = {f: i for i, f in enumerate(catalogue.factor_ids())}
    tie = np.argsort([rank_of.get(f, len(rank_of)) for f in ids], kind="stable")
    order = tie[np.argsort(-c[:, tie], axis=1, kind="stable")[:, :k]]
    vals = np.take_along_axis(c, order, axis=1)
    keep = vals > 0  # positive values come first in every row, so the ranks stay 1..n
    return np.where(keep, order, -1), np.where(keep, vals, np.nan)


def _label(factor_id: str) -> str:
    f = catalogue.CATALOGUE.get(factor_id)
    return f.name if f is not None else factor_id


def advice_for(factor_id: str) -> tuple[bool, str]:
    """``(actionable, text)``: the catalogue's advice, or why nothing can be done."""
    f = catalogue.get(factor_id)
    if f.actionable:
        return True, f.advice
    return False, f"Not actionable: {f.advice}"


def what_if(predict_fn: Callable[[pd.DataFrame], np.ndarray], X: pd.DataFrame, factor: str,
            specs: Sequence[FeatureSpec]) -> np.ndarray:
    """The adverse probability after rectifying one factor's features.

    Args:
        predict_fn: scores a feature frame; returns adverse probabilities
            ``(n,)`` or class probabilities ``(n, C)`` with normal as class 0.
        X: the feature frame.
        factor: an actionable factor id.
        specs: the feature specs ``X`` was built with (their factors and what-if rules).

    Returns:
        ``(n,)`` adverse probability after :func:`riskml.features.rectify`.
    """
    if not catalogue.get(factor).actionable:
        raise ConfigError("factor", factor, f"an actionable factor, one of "
                          f"{[f.id for f in catalogue.CATALOGUE.values() if f.actionable]}")
    p = np.asarray(predict_fn(rectify(X, factor, list(specs))), dtype=np.float64)
    if p.ndim == 2:
        return p[:, 1] if p.shape[1] == 2 else 1.0 - p[:, 0]
    if p.ndim != 1 or len(p) != len(X):
        raise ModelError(f"predict_fn returned shape {p.shape}; expected ({len(X)},) or ({len(X)}, n_classes)")
    return p


@dataclass
class Fidelity:
    """How often the top reason names the true cause of an adverse change.

    Attributes:
        overall: top-1 hit rate over all events.
        n_events: events scored (true cause known).
        per_cause: index cause; ``n_events``, ``top1_rate``, ``judged``
            (at least ``min_events`` events).
        confusion: counts, true cause (rows) x top-1 factor (columns,
            ``none`` when no factor raised the risk).
    """

    overall: float
    n_events: int
    per_cause: pd.DataFrame
    confusion: pd.DataFrame

    def as_dict(self) -> dict[str, float]:
        """Flat metrics for tracking: ``fidelity_top1`` and ``fidelity_top1_<cause>``."""
        out = {"fidelity_top1": self.overall, "fidelity_events": float(self.n_events)}
        out.update({f"fidelity_top1_{c}": float(r) for c, r in self.per_cause["top1_rate"].items()})
        return out


def fidelity(top1: pd.Series, true_cause: pd.Series, *, min_events: int = 50) -> Fidelity:
    """Top-1 reason vs true cause, over the rows whose true cause is known.

    Args:
        top1: top-1 factor id per row (NA when no factor raised the risk).
        true_cause: the cause of the adverse change (NA when none happened).
        min_events: causes with fewer events are reported but not judged.
    """
    if len(top1) != len(true_cause):
        raise SchemaError(f"top1 has {len(top1)} rows but true_cause has {len(true_cause)}; expected equal")
    truth = pd.Series(np.asarray(true_cause, dtype=object))
    pred = pd.Series(np.asarray(top1, dtype=object))
    keep = truth.notna().to_numpy()
    truth, pred = truth[keep].astype(str), pred[keep].fillna("none").astype(str)
    hit = (truth.to_numpy() == pred.to_numpy())
    per = pd.DataFrame({"cause": truth.to_numpy(), "hit": hit}).groupby("cause")["hit"].agg(["size", "mean"])
    order = [c for c in catalogue.factor_ids() if c in per.index] + sorted(set(per.index) - set(catalogue.CATALOGUE))
    per = per.reindex(order).rename(columns={"size": "n_events", "mean": "top1_rate"})
    per["judged"] = per["n_events"] >= min_events
    per.index.name = "cause"
    cols = [c for c in catalogue.factor_ids() if c in set(pred)] + sorted(set(pred) - set(catalogue.CATALOGUE))
    confusion = pd.crosstab(pd.Categorical(truth, categories=order), pd.Categorical(pred, categories=cols),
                            dropna=False).rename_axis(index="true_cause", columns="top1")
    return Fidelity(overall=float(hit.mean()) if len(hit) else float("nan"), n_events=int(len(hit)),
                    per_cause=per, confusion=confusion)

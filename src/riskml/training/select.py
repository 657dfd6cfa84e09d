"""``model=auto``: candidates sized to the data, blended by out-of-fold scores, shipped as one LightGBM model.

A LightGBM default that suits a 300k-snapshot panel over-regularises a table
of a few thousand rows, and on such tables a logistic scorecard is often as
good as a tree model. Instead of one fixed setting, ``fit_auto`` takes the
training rows it is given (the training fold; it never sees the test fold)
and

1. fits a few candidates sized to them: LightGBM with leaves, leaf size and
   learning rate scaled to the row count (a small and a larger one), and the
   logistic scorecard (median imputation, scaling, one-hot; its penalty grows
   below 10 events per column), each scored out
   of fold over ``inner_folds`` stratified folds of the training rows (the
   LightGBM rounds are chosen by those folds' validation loss);
2. blends them with non-negative weights fitted to the out-of-fold scores
   (logistic stacking: a weight of 0 drops a candidate), and keeps the blend
   only if its out-of-fold AUC beats the best single candidate's, else that
   candidate alone;
3. refits the kept candidates on all training rows and writes them as one
   LightGBM text model (:mod:`riskml.training.trees`): the LightGBM trees
   scaled by their weight, the scorecard as one step-function tree per
   feature. TreeSHAP, the pyfunc and ``riskml.predict`` treat it like any
   riskml model.

What was chosen and why is in ``FittedModel.selection``. A multiclass target
gets the small sized LightGBM alone (the scorecard blend is binary).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from riskml.exceptions import ConfigError
from riskml.training import trees
from riskml.training.models import FittedModel, fit_one, monotone_constraints

log = logging.getLogger(__name__)

#: The candidates ``model=auto`` knows (``model.candidates`` picks among them).
CANDIDATES = ("lightgbm", "lightgbm_large", "logistic")
#: Numeric features with more distinct values than this get at most this many bins in the scorecard trees.
MAX_BINS = 512


def sized_params(n_rows: int, n_features: int, *, large: bool = False) -> dict[str, Any]:
    """LightGBM settings scaled to the training rows and features (no per-data-set tuning).

    Leaves grow with the square root of the rows (4 at 1,000 rows, 8 at 4,000,
    16 at 16,000, at most 64), so does the leaf size (16 at 1,000 rows, 50 at
    10,000, at most 500); the learning rate is 0.05 up to 10,000 rows and
    rises slowly after (0.1 at 160,000). With fewer than 10 features every
    tree sees all of them: sampling 80% of 3 features leaves 2 and hides
    their interactions. A leaf also needs a hessian sum of 1 (about 30 rows
    at a 3% event rate, fewer than the leaf size at 10% or more): with rare
    events a small leaf is noise. ``large``: 4 times the leaves, a quarter of the leaf size.

    >>> p = sized_params(1000, 3)
    >>> p["num_leaves"], p["min_data_in_leaf"], p["learning_rate"], p["feature_fraction"]
    (4, 16, 0.05, 1.0)
    >>> sized_params(10000, 20, large=True)["num_leaves"]
    64
    """
    n = max(int(n_rows), 1)
    leaves = int(np.clip(2 ** np.round(np.log2(np.sqrt(n) / 8)), 4, 64))
    leaf_size = int(np.clip(round(np.sqrt(n) / 2), 10, 500))
    if large:
        leaves, leaf_size = leaves * 4, max(5, leaf_size // 4)
    return {"num_leaves": leaves, "min_data_in_leaf": leaf_size,
            "learning_rate": float(np.clip(0.05 * (n / 10_000) ** 0.25, 0.05, 0.1)),
            "feature_fraction": 1.0 if n_features < 10 else 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
            "lambda_l2": 1.0, "max_bin": 255, "min_sum_hessian_in_leaf": 1.0}


def _lgb_base(params: Mapping[str, Any], n_classes: int, *, seed: int, num_threads: int,
              constraints: list[int] | None) -> dict[str, Any]:
    out = dict(params, seed=seed, deterministic=True, force_col_wise=True, num_threads=num_threads, verbose=-1,
               feature_pre_filter=False)
    out.update({"objective": "binary", "metric": "binary_logloss"} if n_classes == 2 else
               {"objective": "multiclass", "num_class": n_classes, "metric": "multi_logloss"})
    if constraints is not None and any(constraints):
        out["monotone_constraints"] = constraints
    return out


def _lgb_oof(X: pd.DataFrame, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], params: dict[str, Any],
             *, max_rounds: int, patience: int) -> tuple[np.ndarray, int]:
    """Out-of-fold raw scores and the round count with the lowest mean validation loss (``lgb.cv``)."""
    res = lgb.cv(params, lgb.Dataset(X, label=y, free_raw_data=False), num_boost_round=max_rounds, folds=folds,
                 callbacks=[lgb.early_stopping(patience, verbose=False)], return_cvbooster=True)
    rounds = len(next(v for k, v in res.items() if k.endswith("-mean")))
    oof = np.zeros(len(y))
    for booster, (_, test) in zip(res["cvbooster"].boosters, folds):
        oof[test] = booster.predict(X.iloc[test], num_iteration=rounds, raw_score=True)
    return oof, rounds


def scorecard_C(C: float, y: np.ndarray, X: pd.DataFrame) -> float:
    """The scorecard's inverse regularisation: ``C``, shrunk below 10 events per column.

    Fewer than about 10 events (rows of the rarer class) per model column
    overfit a logistic regression; the penalty then grows in proportion.
    Columns count one per numeric feature and one per level of a categorical.

    >>> X = pd.DataFrame({"a": np.zeros(100), "b": np.zeros(100)})
    >>> scorecard_C(1.0, np.r_[np.zeros(90), np.ones(10)], X)  # 10 events, 2 columns: 5 per column
    0.5
    """
    cols = sum(len(X[c].cat.categories) if isinstance(X[c].dtype, pd.CategoricalDtype) else 1 for c in X.columns)
    events = int(np.bincount(np.asarray(y, dtype=np.int64)).min())
    return float(C * min(1.0, events / (10.0 * max(cols, 1))))


def _logistic(X: pd.DataFrame, y: np.ndarray, *, C: float, seed: int, num_threads: int,
              directions: Mapping[str, int]) -> FittedModel:
    """The scorecard on ``X`` (``C`` as :func:`scorecard_C` shrinks it); a numeric feature whose weight
    contradicts its monotone direction is left out."""
    cfg = {"name": "logistic", "C": scorecard_C(C, y, X), "max_iter": 1000}
    model = fit_one(cfg, X, y, classes=["0", "1"], seed=seed, num_threads=num_threads)
    wrong = [c for c in X.columns if directions.get(c, 0) and not isinstance(X[c].dtype, pd.CategoricalDtype)
             and np.sign(_slope(model, X, c)) == -np.sign(directions[c])]
    if wrong and len(wrong) < X.shape[1]:
        log.info("scorecard: %s left out (weight against the monotone direction)", wrong)
        model = fit_one(cfg, X.drop(columns=wrong), y, classes=["0", "1"], seed=seed, num_threads=num_threads)
    return model


def _decision(model: FittedModel, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.estimator.decision_function(X[model.feature_names]), dtype=np.float64)


def _slope(model: FittedModel, X: pd.DataFrame, col: str) -> float:
    ref = _reference(X)
    two = pd.concat([ref, ref], ignore_index=True)
    two[col] = np.array([np.nanmin(X[col]), np.nanmax(X[col])], dtype=X[col].dtype)
    d = _decision(model, two)
    return float(d[1] - d[0])


def _reference(X: pd.DataFrame) -> pd.DataFrame:
    """One row of typical values (median, most frequent level) to vary one feature at a time from."""
    row = {}
    for c in X.columns:
        s = X[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            mode = s.mode()
            row[c] = pd.Categorical([mode.iloc[0] if len(mode) else None], categories=s.cat.categories)
        else:
            med = s.median()
            row[c] = np.array([0.0 if pd.isna(med) else med], dtype=s.dtype)
    return pd.DataFrame(row)


def scorecard_trees(model: FittedModel, X: pd.DataFrame, *, hessian: float) -> tuple[list[str], float]:
    """The scorecard as one step-function tree per feature (in ``X``'s column order) and its intercept.

    The logistic model is additive in its input columns, so its log-odds are
    ``b + sum_j g_j(x_j)``; each ``g_j`` is read off the fitted pipeline by
    varying column ``j`` from a reference row. Numeric columns get a bin per
    distinct training value (past ``MAX_BINS``, bins cut at quantiles and at even steps), categorical
    ones a bin per level (LightGBM sees their codes), and a missing value its
    own leaf.
    """
    ref = _reference(X)
    base = float(_decision(model, ref)[0])
    out = []
    for j, col in enumerate(X.columns):
        if col not in model.feature_names:
            continue
        s = X[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            levels = list(s.cat.categories)
            grid = pd.Categorical(levels + [None], categories=levels)
            counts = np.bincount(s.cat.codes[s.cat.codes >= 0], minlength=len(levels))
            thresholds = np.arange(len(levels) - 1) + 0.5
        else:
            v = s.to_numpy(dtype=np.float64)
            v = np.sort(v[np.isfinite(v)])
            if v.size == 0:
                continue
            uniq = np.unique(v)
            if len(uniq) > MAX_BINS:
                # cut after training values at quantiles (fine where the rows are) and at even steps (fine in
                # the tails, where a linear score moves most), midway to the next value
                half = MAX_BINS // 2
                steps = uniq[np.searchsorted(uniq, np.linspace(uniq[0], uniq[-1], half + 1)[1:-1], side="right") - 1]
                cut = np.union1d(np.quantile(v, np.linspace(0, 1, half + 1)[1:-1], method="lower"), steps)
                pos = np.searchsorted(uniq, cut[cut < uniq[-1]])
                thresholds = (uniq[pos] + uniq[pos + 1]) / 2
            else:
                thresholds = (uniq[1:] + uniq[:-1]) / 2
            bins = np.searchsorted(thresholds, v, side="left")
            counts = np.bincount(bins, minlength=len(thresholds) + 1)
            reps = np.bincount(bins, weights=v, minlength=len(thresholds) + 1) / counts  # every bin holds a value
            grid = np.r_[reps, np.nan].astype(s.dtype)
        rows = pd.concat([ref] * len(grid), ignore_index=True)
        rows[col] = grid
        g = _decision(model, rows) - base
        out.append(trees.additive_tree(j, thresholds=thresholds, values=g[:-1], counts=counts, nan_value=g[-1],
                                       nan_count=int(s.isna().sum()), hessian=hessian))
    return out, base


def stack_weights(Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative weights and a bias for the columns of ``Z`` (raw scores) minimising the log-loss of ``y``.

    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=4000)
    >>> y = (rng.random(4000) < 1 / (1 + np.exp(-2 * z))).astype(int)
    >>> w, b = stack_weights(np.column_stack([z, rng.normal(size=4000)]), y)
    >>> bool(1.8 < w[0] < 2.2 and w[1] < 0.1)
    True
    """
    Z, y = np.asarray(Z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    k = Z.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = Z @ theta[:k] + theta[k]
        p = 1.0 / (1.0 + np.exp(-z))
        g = p - y
        return float(np.mean(np.logaddexp(0.0, z) - y * z)), np.r_[Z.T @ g, g.sum()] / len(y)

    res = minimize(loss, np.r_[np.full(k, 1.0 / k), 0.0], jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * k + [(None, None)])
    return res.x[:k], float(res.x[k])


def _inner_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    k = min(int(k), int(np.bincount(y).min()))
    if k < 2:
        return None
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def fit_auto(model_cfg: Mapping[str, Any], X_train: pd.DataFrame, y_train: np.ndarray, *, classes: list[str],
             X_valid: pd.DataFrame | None = None, y_valid: np.ndarray | None = None,
             feature_directions: Mapping[str, int] | None = None, seed: int = 0,
             num_threads: int = 0) -> FittedModel:
    """Fit ``model=auto`` on the training rows (train and valid together); see the module docstring."""
    if X_valid is not None and y_valid is not None and len(y_valid):
        X = pd.concat([X_train, X_valid], ignore_index=True)
        y = np.concatenate([y_train, y_valid]).astype(np.int64)
    else:
        X, y = X_train.reset_index(drop=True), np.asarray(y_train, dtype=np.int64)
    n, p = X.shape
    directions = dict(feature_directions or {})
    cons = monotone_constraints(list(X.columns), directions) if model_cfg.get("monotone", True) else None
    max_rounds, patience = int(model_cfg.get("num_boost_round", 2000)), int(model_cfg.get("early_stopping_rounds", 50))
    names = [c for c in model_cfg.get("candidates", CANDIDATES)]
    unknown = [c for c in names if c not in CANDIDATES]
    if unknown or not names:
        raise ConfigError("model.candidates", names, f"a non-empty list drawn from {list(CANDIDATES)}")
    binary = len(classes) == 2
    if not binary:
        names = [c for c in names if c != "logistic"] or ["lightgbm"]
        names = names[:1]
    folds = _inner_folds(y, int(model_cfg.get("inner_folds", 5)), seed)
    report: dict[str, Any] = {"rows": n, "features": p, "inner_folds": 0 if folds is None else len(folds),
                              "candidates": {}}
    lgb_params = {c: _lgb_base(sized_params(n, p, large=c == "lightgbm_large"), len(classes), seed=seed,
                               num_threads=num_threads, constraints=cons) for c in names if c != "logistic"}
    oof: dict[str, np.ndarray] = {}
    rounds: dict[str, int] = {}
    for c, prm in lgb_params.items():
        if folds is None:  # too few rows of a class for inner folds: a fixed, short run
            rounds[c] = min(max_rounds, 100)
            continue
        oof[c], rounds[c] = _lgb_oof(X, y, folds, prm, max_rounds=max_rounds, patience=patience)
    C = float(model_cfg.get("C", 1.0))
    if "logistic" in names and folds is not None:
        oof["logistic"] = np.zeros(n)
        for tr, te in folds:
            m = _logistic(X.iloc[tr], y[tr], C=C, seed=seed, num_threads=num_threads, directions=directions)
            oof["logistic"][te] = _decision(m, X.iloc[te])

    weights, bias, chosen, why = _choose(names, oof, y, binary)
    for c in names:
        report["candidates"][c] = {"oof_auc": _auc(y, oof.get(c)), "weight": float(weights.get(c, 0.0)),
                                   **({"rounds": rounds[c], **{k: lgb_params[c][k] for k in
                                      ("num_leaves", "min_data_in_leaf", "learning_rate", "feature_fraction")}}
                                      if c in lgb_params else {"C": C})}
    report.update(chosen=chosen, why=why, bias=bias)

    blocks, header, footer = [], None, None
    for c, w in weights.items():
        if c == "logistic":
            continue
        booster = lgb.train(lgb_params[c], lgb.Dataset(X, label=y), num_boost_round=rounds[c])
        header, body, footer = trees.split_model(booster.model_to_string())
        blocks += body if w == 1.0 else [trees.scale_tree(b, w) for b in body]
    if "logistic" in weights:
        sc = _logistic(X, y, C=C, seed=seed, num_threads=num_threads, directions=directions)
        if header is None:  # a one-round model on the same columns gives the header (names, categories)
            template = lgb.train(dict(next(iter(lgb_params.values()), _lgb_base(sized_params(n, p), 2, seed=seed,
                                      num_threads=num_threads, constraints=None))), lgb.Dataset(X, label=y), 1)
            header, _, footer = trees.split_model(template.model_to_string())
        rate = float(y.mean())
        card, intercept = scorecard_trees(sc, X, hessian=rate * (1 - rate))
        w = weights["logistic"]
        card = [trees.scale_tree(b, w) for b in card]
        card[0] = trees.shift_tree(card[0], w * intercept)
        blocks += card
    if bias:
        blocks[0] = trees.shift_tree(blocks[0], bias)
    booster = lgb.Booster(model_str=trees.join_model(header, blocks, footer))
    log.info("model=auto on %d rows: %s (%s)", n, chosen, why)
    params = {"auto": chosen, "objective": lgb_params[next(iter(lgb_params))]["objective"] if lgb_params else "binary"}
    if cons is not None and any(cons):
        params["monotone_constraints"] = cons
    return FittedModel("lightgbm", booster, list(classes), list(X.columns), booster.num_trees(), params,
                       num_threads, selection=report)


def _auc(y: np.ndarray, score: np.ndarray | None) -> float | None:
    if score is None or len(np.unique(y)) != 2:
        return None
    return float(roc_auc_score(y, score))


def _choose(names: list[str], oof: dict[str, np.ndarray], y: np.ndarray, binary: bool
            ) -> tuple[dict[str, float], float, str, str]:
    """Blend weights (candidate -> weight), bias, what was chosen and why."""
    if not binary or len(names) == 1 or len(oof) < len(names):
        c = names[0]
        why = ("multiclass target: the sized LightGBM alone" if not binary else
               "one candidate" if len(names) == 1 else "too few rows of a class for inner folds")
        return {c: 1.0}, 0.0, c, why
    Z = np.column_stack([oof[c] for c in names])
    w, bias = stack_weights(Z, y)
    aucs = {c: float(roc_auc_score(y, oof[c])) for c in names}
    best = max(aucs, key=aucs.get)
    blend_auc = float(roc_auc_score(y, Z @ w)) if w.sum() > 0 else 0.0
    if blend_auc <= aucs[best]:
        return ({best: 1.0}, 0.0, best, f"out-of-fold AUC {aucs[best]:.4f}, the blend's {blend_auc:.4f} is not higher")
    kept = {c: float(x) for c, x in zip(names, w) if x > 1e-6}
    chosen = "blend of " + ", ".join(f"{c} x{x:.3f}" for c, x in kept.items())
    return kept, bias, chosen, (f"out-of-fold AUC {blend_auc:.4f} vs {aucs[best]:.4f} for the best single "
                                f"candidate ({best})")


def selection_metrics(model: FittedModel) -> dict[str, float]:
    """A fold's choice as metrics (averaged over folds by the run): each candidate's weight and out-of-fold AUC."""
    if not model.selection:
        return {}
    out = {}
    for c, r in model.selection["candidates"].items():
        out[f"auto_weight_{c}"] = r["weight"]
        if r["oof_auc"] is not None:
            out[f"auto_oof_auc_{c}"] = r["oof_auc"]
    return out


def selection_tags(model: FittedModel) -> dict[str, str]:
    """What the shipped model chose and why, as run tags."""
    if not model.selection:
        return {}
    s = model.selection
    return {"riskml.auto.chosen": s["chosen"], "riskml.auto.why": f"{s['why']} ({s['rows']} training rows, "
            f"{s['inner_folds']} inner folds)"}

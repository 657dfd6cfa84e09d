"""Estimators: LightGBM (the model riskml ships) and two scikit-learn baselines.

Stage code: plain numpy/pandas in, fitted models out; no MLflow, no files.
Every model is wrapped in :class:`FittedModel` so that training, evaluation
and tracking treat them alike (``predict_proba`` gives one column per class).
Only LightGBM models are exported and registered: the batch predictor and the
explainer need TreeSHAP on a LightGBM text model, and riskml never pickles.

Example:
    >>> import numpy as np, pandas as pd
    >>> X = pd.DataFrame({"a": np.arange(200, dtype="float32") % 7})
    >>> y = (X["a"] > 3).to_numpy().astype(int)
    >>> m = fit_one({"name": "logistic", "C": 1.0, "max_iter": 200}, X, y, classes=["0", "1"])
    >>> m.predict_proba(X).shape
    (200, 2)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from riskml import __version__

from riskml.exceptions import ConfigError, whole_number
from riskml.schema import class_probabilities
from riskml.measure.calibration import Calibrator, fit_calibrator

log = logging.getLogger(__name__)

#: The models a config may name (``model.name``).
MODELS: tuple[str, ...] = ("lightgbm", "hist_gbm", "logistic", "auto")

#: Keys of a model config that are riskml's, not the estimator's parameters.
CONTROL_KEYS = frozenset({"name", "monotone", "num_boost_round", "early_stopping_rounds", "calibration",
                          "inner_folds", "candidates"})


@dataclass
class FittedModel:
    """A fitted estimator with the class order and feature order it was trained on."""

    kind: str
    estimator: Any
    classes: list[str]
    feature_names: list[str]
    best_iteration: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    num_threads: int = 0
    curve: list[float] = field(default_factory=list)  # LightGBM: validation loss after each boosting round
    calibrator: Calibrator | None = None  # fitted on the validation split; applied by predict_proba
    selection: dict[str, Any] | None = None  # model=auto: the candidates, their scores and what was chosen
    whatif: Any = None  # the learned what-if (measure.whatif_map.WhatIfModel), shipped in the manifest
    #: LightGBM: a scorer giving ``Booster.predict``'s probabilities faster, attached by a stage above
    #: (``riskml.evaluation.kit.attach_scorer``: the compiled scorer); None: ``Booster.predict``
    scorer: Any = field(default=None, repr=False)

    @property
    def booster(self) -> lgb.Booster:
        if self.kind != "lightgbm":
            raise TypeError(f"a {self.kind} model has no LightGBM booster")
        return self.estimator

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, shape (n_rows, n_classes), columns in ``classes`` order."""
        X = X[self.feature_names]
        if self.kind == "lightgbm":
            raw = self.scorer(X) if self.scorer is not None else self.estimator.predict(
                X, num_threads=self.num_threads or 0)
            p = class_probabilities(raw)
            return p if self.calibrator is None else self.calibrator.apply_proba(p)
        with threadpool_limits(self.num_threads or None):
            p = np.asarray(self.estimator.predict_proba(X), dtype=np.float64)
        # a baseline fitted on float32 features computes its probabilities in float32, whose rows sum to one
        # only within 3e-8; in float64 they sum to one as a probability must
        p /= p.sum(axis=1, keepdims=True)
        seen = np.asarray(self.estimator.classes_, dtype=np.int64)
        if len(seen) == len(self.classes):
            return p
        full = np.zeros((len(X), len(self.classes)))  # a class absent from training gets probability 0
        full[:, seen] = p
        return full

    def feature_importance(self, X: pd.DataFrame | None = None, y: np.ndarray | None = None,
                           *, seed: int = 0, max_rows: int = 2000) -> pd.Series:
        """Importance per feature: total gain for LightGBM; for the baselines the
        permutation importance (drop in log-loss) on up to ``max_rows`` rows of ``X, y``."""
        if self.kind == "lightgbm":
            gain = self.estimator.feature_importance(importance_type="gain")
            return pd.Series(gain, index=self.feature_names, dtype=float)
        if X is None or y is None:
            raise ValueError("permutation importance of a baseline needs X and y")
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(X), size=min(max_rows, len(X)), replace=False)
        with threadpool_limits(self.num_threads or None):
            r = permutation_importance(self.estimator, X.iloc[idx][self.feature_names], y[idx],
                                       scoring="neg_log_loss", n_repeats=2, random_state=seed)
        return pd.Series(np.clip(r.importances_mean, 0, None), index=self.feature_names, dtype=float)


# (low, high, whole number) of the parameters a config commonly sets; the estimator checks the rest
_INT, _NUM = True, False
_RULES: dict[str, tuple[float, float, bool]] = {
    "num_leaves": (2, 131072, _INT), "num_boost_round": (1, 1e7, _INT), "early_stopping_rounds": (1, 1e7, _INT),
    "min_data_in_leaf": (1, 1e9, _INT), "max_bin": (2, 1e6, _INT), "bagging_freq": (0, 1e6, _INT),
    "max_iter": (1, 1e7, _INT), "max_leaf_nodes": (2, 1e6, _INT), "min_samples_leaf": (1, 1e9, _INT),
    "n_iter_no_change": (1, 1e6, _INT), "max_depth": (-1, 1e3, _INT),
    "learning_rate": (1e-12, 1e3, _NUM), "feature_fraction": (1e-12, 1, _NUM), "bagging_fraction": (1e-12, 1, _NUM),
    "lambda_l1": (0, 1e12, _NUM), "lambda_l2": (0, 1e12, _NUM), "l2_regularization": (0, 1e12, _NUM),
    "validation_fraction": (1e-12, 1 - 1e-12, _NUM), "C": (1e-12, 1e12, _NUM),
}


def check_model_config(model_cfg: Mapping[str, Any]) -> str:
    """Return ``model.name``; raise :class:`ConfigError` for an unknown model or a parameter out of range.

    Checked before any data is read, so ``model.num_leaves=1`` or
    ``model.learning_rate=-1`` fail in one line instead of inside LightGBM.
    """
    name = model_cfg.get("name")
    if name not in MODELS:
        raise ConfigError("model.name", name, f"one of {list(MODELS)}")
    for key, value in model_cfg.items():
        if key not in _RULES or (value is None and key == "early_stopping_rounds"):
            continue
        lo, hi, whole = _RULES[key]
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        ok = ok and lo <= value <= hi and (not whole or float(value) == int(value))
        if not ok:
            kind = "a whole number" if whole else "a number"
            raise ConfigError(f"model.{key}", value, f"{kind} in [{lo:g}, {hi:g}]")
    return name


def monotone_constraints(feature_names: list[str], feature_directions: Mapping[str, int]) -> list[int]:
    """LightGBM's ``monotone_constraints``: each feature's direction (+1/-1/0), in column order."""
    return [int(np.sign(feature_directions.get(f, 0))) for f in feature_names]


def lgb_params(model_cfg: Mapping[str, Any], *, n_classes: int, seed: int, num_threads: int,
               constraints: list[int] | None = None, n_rows: int | None = None) -> dict[str, Any]:
    """The LightGBM parameter dict riskml trains with (deterministic, seeded, quiet).

    With ``n_rows`` (training rows) ``min_data_in_leaf`` is capped at 5% of
    them, so that a tabular set of a few hundred rows can still split under a
    default tuned for 300k snapshots.
    """
    params = {k: v for k, v in model_cfg.items() if k not in CONTROL_KEYS}
    if n_rows is not None and params.get("min_data_in_leaf", 20) > max(5, n_rows // 20):
        log.info("min_data_in_leaf %s capped at %d (5%% of %d training rows)", params["min_data_in_leaf"],
                 max(5, n_rows // 20), n_rows)
        params["min_data_in_leaf"] = max(5, n_rows // 20)
    if n_classes == 2:
        params.update(objective="binary", metric="binary_logloss")
    else:
        params.update(objective="multiclass", num_class=n_classes, metric="multi_logloss")
    params.update(seed=seed, deterministic=True, force_col_wise=True, num_threads=num_threads, verbose=-1)
    if constraints is not None and any(constraints):
        params["monotone_constraints"] = constraints
    return params


def fit_lightgbm(X_train: pd.DataFrame, y_train: np.ndarray, *, params: Mapping[str, Any],
                 num_boost_round: int, X_valid: pd.DataFrame | None = None, y_valid: np.ndarray | None = None,
                 early_stopping_rounds: int | None = None, progress: str | None = None
                 ) -> tuple[lgb.Booster, list[float]]:
    """Build the training ``Dataset`` once and run ``lgb.train``; returns the booster and the
    validation loss after every boosting round (empty without a validation set).

    Pandas ``category`` columns are LightGBM categoricals (the level order is
    saved in the model text). With a validation set and ``early_stopping_rounds``
    training stops when the validation loss stops improving and the booster
    keeps its best iteration. ``progress`` (a label) shows a bar on a terminal.
    """
    train = lgb.Dataset(X_train, label=y_train, free_raw_data=True)
    valid_sets, callbacks, evals = [], [], {}
    if X_valid is not None and y_valid is not None:
        valid_sets = [lgb.Dataset(X_valid, label=y_valid, reference=train)]
        callbacks.append(lgb.record_evaluation(evals))
        if early_stopping_rounds:
            callbacks.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
    bar = tqdm(total=num_boost_round, desc=progress or "boosting", unit="round", disable=None, leave=False)
    callbacks.append(lambda env: bar.update())
    try:
        booster = lgb.train(dict(params), train, num_boost_round=num_boost_round, valid_sets=valid_sets,
                            callbacks=callbacks)
    finally:
        bar.close()
    if booster.best_iteration and booster.best_iteration < booster.current_iteration():
        # Keep the best iteration only, so model.txt and every consumer agree.
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    curve = next(iter(next(iter(evals.values())).values()), []) if evals else []
    return booster, [float(v) for v in curve]


def _logistic(model_cfg: Mapping[str, Any], X: pd.DataFrame, seed: int):
    cats = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    nums = [c for c in X.columns if c not in cats]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                            keep_empty_features=True), StandardScaler()), nums),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="__missing__"),
                              OneHotEncoder(handle_unknown="ignore")), cats),
    ])
    params = {k: v for k, v in model_cfg.items() if k not in CONTROL_KEYS}
    return Pipeline([("prep", prep), ("clf", LogisticRegression(random_state=seed, **params))])


def _to_object(X: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as object columns (NaN kept) for the sklearn imputer."""
    cats = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    if not cats:
        return X
    X = X.copy()
    for c in cats:
        X[c] = X[c].astype(object).where(X[c].notna(), np.nan)
    return X


def fit_one(model_cfg: Mapping[str, Any], X_train: pd.DataFrame, y_train: np.ndarray, *, classes: list[str],
            X_valid: pd.DataFrame | None = None, y_valid: np.ndarray | None = None,
            feature_directions: Mapping[str, int] | None = None, seed: int = 0, num_threads: int = 0,
            progress: str | None = None) -> FittedModel:
    """Fit the one estimator ``model_cfg`` names (``lightgbm``, ``hist_gbm``, ``logistic``) on integer labels
    ``0..len(classes)-1``; ``model=auto`` chooses among them (:func:`riskml.training.fit.fit`).

    LightGBM early-stops on ``X_valid``; the baselines train on train + valid
    (HistGradientBoosting keeps its own internal validation split).
    """
    kind = check_model_config(model_cfg)
    if kind == "auto":
        raise ValueError("fit_one fits one estimator; model=auto is riskml.training.fit.fit's")
    features = list(X_train.columns)
    if kind == "lightgbm":
        cons = monotone_constraints(features, feature_directions or {}) if model_cfg.get("monotone") else None
        params = lgb_params(model_cfg, n_classes=len(classes), seed=seed, num_threads=num_threads, constraints=cons,
                            n_rows=len(X_train))
        booster, curve = fit_lightgbm(X_train, y_train, params=params,
                                      num_boost_round=int(model_cfg["num_boost_round"]), X_valid=X_valid,
                                      y_valid=y_valid, early_stopping_rounds=model_cfg.get("early_stopping_rounds"),
                                      progress=progress)
        return finish_lightgbm(booster, curve, model_cfg=model_cfg, classes=classes, features=features, params=params,
                               num_threads=num_threads, X_valid=X_valid, y_valid=y_valid)

    if X_valid is not None and y_valid is not None:
        X_fit, y_fit = pd.concat([X_train, X_valid], ignore_index=True), np.concatenate([y_train, y_valid])
    else:
        X_fit, y_fit = X_train, y_train
    params = {k: v for k, v in model_cfg.items() if k not in CONTROL_KEYS}
    if kind == "hist_gbm":
        est = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed, **params)
    else:
        est = Pipeline([("obj", FunctionTransformer(_to_object)), ("model", _logistic(model_cfg, X_fit, seed))])
    with threadpool_limits(num_threads or None):
        est.fit(X_fit, y_fit)
    n_iter = getattr(est, "n_iter_", None)
    return FittedModel(kind, est, list(classes), features, int(n_iter) if n_iter is not None else None,
                       params, num_threads)


def finish_lightgbm(booster: lgb.Booster, curve: list[float], *, model_cfg: Mapping[str, Any], classes: list[str],
                    features: list[str], params: dict[str, Any], num_threads: int, X_valid: pd.DataFrame | None,
                    y_valid: np.ndarray | None) -> FittedModel:
    """A trained booster as a :class:`FittedModel`, calibrated on the validation split as ``model.calibration``
    says (also what a cluster fit, :mod:`riskml.training.distributed`, returns)."""
    model = FittedModel("lightgbm", booster, list(classes), features, booster.current_iteration(), params,
                        num_threads, curve)
    model.calibrator = _calibrate(model, model_cfg.get("calibration"), X_valid, y_valid)
    return model


def _calibrate(model: FittedModel, cal_cfg: Mapping[str, Any] | None, X_valid: pd.DataFrame | None,
               y_valid: np.ndarray | None) -> Calibrator | None:
    """The calibrator of P(not class 0) on the validation split (``model.calibration``), or None."""
    if not cal_cfg or not cal_cfg.get("enabled", False):
        return None
    if X_valid is None or y_valid is None or len(y_valid) == 0:
        log.info("no validation split: the model stays uncalibrated")
        return None
    per_bin = cal_cfg.get("events_per_bin", 40)
    per_bin = whole_number("model.calibration.events_per_bin", per_bin, 5)
    raw = class_probabilities(model.booster.predict(X_valid[model.feature_names], num_threads=model.num_threads or 0))
    cal = fit_calibrator(np.asarray(y_valid) > 0, 1.0 - raw[:, 0], events_per_bin=per_bin)
    if cal is None:
        log.info("too few validation events to calibrate (need %d on each side); the model stays uncalibrated",
                 2 * per_bin)
    return cal


def build_manifest(model: FittedModel, *, feature_factors: Mapping[str, str], feature_directions: Mapping[str, int],
                   categories: Mapping[str, list[str]], target: str, horizon: int | None, windows: list[int] | None,
                   metrics: Mapping[str, float], data_digest: str, data_kind: str, name: str,
                   id_column: str | None = None) -> dict[str, Any]:
    """The JSON manifest that travels with a LightGBM ``model.txt`` (see ``riskml.io.files.export_model_dir``).

    ``id_column``: a table's id column, which scoring a table with the model echoes per row.
    """
    return {
        "model_name": name, "model_version": None, "riskml_version": __version__,
        "framework": "lightgbm", "lightgbm_version": lgb.__version__,
        "features": list(model.feature_names),
        "feature_factors": {f: feature_factors[f] for f in model.feature_names},
        "feature_directions": {f: int(feature_directions.get(f, 0)) for f in model.feature_names},
        "categories": {f: list(v) for f, v in categories.items()},
        "classes": list(model.classes), "target": target, "horizon": horizon, "windows": windows,
        "best_iteration": model.best_iteration, "data_digest": data_digest, "data_kind": data_kind,
        **({"id_column": id_column} if id_column else {}),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "params": {k: v for k, v in model.params.items() if k != "monotone_constraints"},
        "monotone": "monotone_constraints" in model.params,
        "calibration": None if model.calibrator is None else model.calibrator.to_dict(),
        **({"selection": model.selection} if model.selection else {}),
        **({"whatif_model": model.whatif.to_dict()} if model.whatif is not None else {}),
    }


def example_input(X: pd.DataFrame) -> pd.DataFrame:
    """A few rows as the MLflow model takes them: categoricals as strings, numbers as float64."""
    out = X.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(object).where(out[c].notna(), None)
        else:
            out[c] = out[c].astype("float64")
    return out.reset_index(drop=True)


def proba_frame(model: FittedModel, X: pd.DataFrame) -> pd.DataFrame:
    """``predict_proba`` as the MLflow model returns it: one ``p_<class>`` column per class."""
    return pd.DataFrame(model.predict_proba(X), columns=[f"p_{c}" for c in model.classes])

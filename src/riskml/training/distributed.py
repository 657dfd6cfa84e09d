"""LightGBM on a Dask cluster: ``lightgbm.dask`` on snapshot partitions that stay on the workers.

The training rows of each partition are selected where the partition lives
(only row numbers travel; one piece per worker), and ``DaskLGBMClassifier`` trains with LightGBM's
data-parallel tree learner, each worker on its own partitions. The result
is an ordinary ``lgb.Booster`` (LightGBM text), wrapped in the same
:class:`~riskml.training.models.FittedModel` as a single-machine fit and
calibrated on the same validation split.

``lightgbm.dask`` has no early stopping (a known limitation upstream: it
hangs when workers hold different validation parts), so the booster trains
``num_boost_round`` rounds and the early-stopping rule of ``lgb.early_stopping``
(stop after ``early_stopping_rounds`` rounds without a strictly lower
validation loss; keep the best iteration) is applied afterwards on the
validation rows, which are small and on the client: the same best iteration
the single-machine fit would stop at on the same trees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
from lightgbm import Booster, DaskLGBMClassifier

from riskml.exceptions import ModelError
from riskml.training.models import FittedModel, check_model_config, finish_lightgbm, lgb_params, monotone_constraints

#: the label column of a snapshot partition
LABEL = "_y"


@dataclass
class Partitions:
    """Snapshot frames held on a cluster's workers, in the order of the rows of the gathered :class:`Dataset`.

    Attributes:
        client: the ``dask.distributed.Client`` they live on.
        futures: one future per partition, a frame with the features and ``_y``.
        offsets: first Dataset row of each partition, and the total at the end.
    """

    client: Any
    futures: list[Any]
    offsets: np.ndarray


def _take(columns: list[str], *pairs: Any) -> pd.DataFrame:
    """On a worker: the rows of each (partition, row numbers) pair, in that order, as one frame."""
    frames, rows = pairs[0::2], pairs[1::2]
    return pd.concat([f.iloc[r][columns] for f, r in zip(frames, rows)], ignore_index=True)


def select(parts: Partitions, index: np.ndarray, columns: list[str]) -> list[Any]:
    """One future per worker: the rows ``index`` (Dataset rows, ascending) of the partitions it holds,
    selected there, in partition order.

    One piece per worker, made of the same partitions in the same order every
    time (they were placed by partition number), because ``lightgbm.dask``
    orders a worker's pieces as a set of task keys comes out: several pieces
    would reach LightGBM in a different row order each run, and bagging,
    which draws by row position, would draw other rows.
    """
    index = np.sort(np.asarray(index, dtype=np.int64))
    cuts = np.searchsorted(index, parts.offsets)
    where = parts.client.who_has(parts.futures)
    held: dict[str, list[Any]] = {}
    for i, fut in enumerate(parts.futures):
        local = index[cuts[i]:cuts[i + 1]] - parts.offsets[i]
        if len(local):
            held.setdefault(sorted(where[fut.key])[0], []).extend([fut, local])
    return [parts.client.submit(_take, columns, *pairs, pure=False, workers=[w], allow_other_workers=False)
            for w, pairs in held.items()]


def validation_curve(booster: Booster, X: pd.DataFrame, y: np.ndarray, n_classes: int) -> list[float]:
    """The validation log-loss after every boosting round, as LightGBM's own evaluation reports it."""
    data = np.ascontiguousarray(X.to_numpy(dtype=np.float32))
    width = 1 if n_classes == 2 else n_classes
    raw = np.zeros((len(X), width))
    eps = 1e-15
    curve = []
    for it in range(booster.current_iteration()):
        raw += booster.predict(data, start_iteration=it, num_iteration=1, raw_score=True).reshape(len(X), width)
        if width == 1:
            p = np.clip(1.0 / (1.0 + np.exp(-raw[:, 0])), eps, 1 - eps)
            curve.append(float(-np.mean(np.where(y > 0, np.log(p), np.log(1 - p)))))
        else:
            z = raw - raw.max(axis=1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            curve.append(float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, None)))))
    return curve


def stop_at(curve: list[float], rounds: int | None) -> int:
    """The best iteration (1-based) ``lgb.early_stopping(rounds)`` keeps on this validation curve.

    Example:
        >>> stop_at([0.5, 0.4, 0.41, 0.39, 0.395, 0.396, 0.2], rounds=2)
        4
    """
    best, best_i = np.inf, 0
    for i, v in enumerate(curve):
        if v < best:
            best, best_i = v, i
        elif rounds and i - best_i >= rounds:
            break
    return best_i + 1


def fit_dask(parts: Partitions, model_cfg: Mapping[str, Any], *, train: np.ndarray, valid: np.ndarray,
             X_valid: pd.DataFrame, y_valid: np.ndarray, classes: list[str], features: list[str],
             feature_directions: Mapping[str, int] | None = None, seed: int = 0, num_threads: int = 0
             ) -> FittedModel:
    """Fit ``model_cfg`` (LightGBM) with ``lightgbm.dask`` on the ``train`` rows of ``parts``.

    ``valid`` rows (on the client as ``X_valid, y_valid``) choose the best
    iteration and fit the calibrator, as in :func:`riskml.training.models.fit_one`;
    ``num_threads`` is what the returned model predicts with on the client.
    """
    import dask.dataframe as dd  # with the cluster path only: the single-machine import stays light

    if check_model_config(model_cfg) != "lightgbm":
        raise ModelError(f"model.name={model_cfg['name']}: a cluster trains LightGBM only (lightgbm.dask)")
    cons = monotone_constraints(features, feature_directions or {}) if model_cfg.get("monotone") else None
    params = lgb_params(model_cfg, n_classes=len(classes), seed=seed, num_threads=num_threads, constraints=cons,
                        n_rows=len(train))  # what the manifest records, as for a single-machine fit
    # the classifier sets num_class from the labels, and lightgbm.dask num_threads from each worker's threads
    on_workers = {k: v for k, v in params.items() if k not in ("num_class", "num_threads")}
    pieces = select(parts, train, [*features, LABEL])
    meta = pd.DataFrame({**{f: pd.Series(dtype="float32") for f in features}, LABEL: pd.Series(dtype="int64")})
    frame = dd.from_delayed(pieces, meta=meta, verify_meta=False)
    est = DaskLGBMClassifier(client=parts.client, n_estimators=int(model_cfg["num_boost_round"]), **on_workers)
    est.fit(frame[features], frame[LABEL])
    if len(est.classes_) != len(classes):
        raise ModelError(f"the training rows hold {len(est.classes_)} of the {len(classes)} classes {classes}; "
                         "a cluster fit needs every class in training")
    booster = est.booster_
    curve = validation_curve(booster, X_valid[features], np.asarray(y_valid), len(classes))
    best = stop_at(curve, model_cfg.get("early_stopping_rounds"))
    booster = Booster(model_str=booster.model_to_string(num_iteration=best))
    stopped = min(len(curve), best + int(model_cfg.get("early_stopping_rounds") or len(curve)))
    return finish_lightgbm(booster, curve[:stopped], model_cfg=model_cfg, classes=classes, features=features,
                           params=params, num_threads=num_threads, X_valid=X_valid, y_valid=y_valid)

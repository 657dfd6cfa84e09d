"""Fit the model a config names: one estimator (:func:`riskml.training.models.fit_one`), or
``model=auto``'s choice among them (:func:`riskml.training.select.fit_auto`)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from riskml.training.models import FittedModel, check_model_config, fit_one
from riskml.training.select import fit_auto


def fit(model_cfg: Mapping[str, Any], X_train: pd.DataFrame, y_train: np.ndarray, *, classes: list[str],
        X_valid: pd.DataFrame | None = None, y_valid: np.ndarray | None = None,
        feature_directions: Mapping[str, int] | None = None, seed: int = 0, num_threads: int = 0,
        progress: str | None = None) -> FittedModel:
    """Fit the model ``model_cfg`` names on integer labels ``0..len(classes)-1``."""
    if check_model_config(model_cfg) == "auto":
        return fit_auto(model_cfg, X_train, y_train, classes=classes, X_valid=X_valid, y_valid=y_valid,
                        feature_directions=feature_directions, seed=seed, num_threads=num_threads)
    return fit_one(model_cfg, X_train, y_train, classes=classes, X_valid=X_valid, y_valid=y_valid,
                   feature_directions=feature_directions, seed=seed, num_threads=num_threads, progress=progress)

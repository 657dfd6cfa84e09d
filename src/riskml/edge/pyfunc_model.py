"""The MLflow pyfunc of a riskml model, logged as "model from code" (no pickle).

MLflow copies this file into the logged model and runs it on load; the model's
artifacts are the exported folder's two files, ``model`` (LightGBM text) and
``manifest`` (JSON). ``predict`` returns one probability column per class,
``p_<class>`` (``p_normal, p_suspended, p_closed`` or ``p_0, p_1``).

Self-contained on purpose (lightgbm, numpy, pandas only) so that a model
served from the registry loads without riskml installed.
"""

from __future__ import annotations

import hashlib
import json

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd


class RiskmlModel(mlflow.pyfunc.PythonModel):
    """Class probabilities from a LightGBM text model and its manifest."""

    def load_context(self, context) -> None:
        model_path, manifest_path = context.artifacts["model"], context.artifacts["manifest"]
        with open(manifest_path) as f:
            self.manifest = json.load(f)
        with open(model_path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if self.manifest.get("model_sha256") not in (None, digest):
            raise ValueError(f"{model_path}: sha256 {digest} does not match the manifest")
        self.booster = lgb.Booster(model_file=model_path)
        self.features = list(self.manifest["features"])
        self.categories = dict(self.manifest.get("categories") or {})
        self.columns = [f"p_{c}" for c in self.manifest["classes"]]
        self.calibration = self.manifest.get("calibration")  # issue #13: knots of riskml.training.calibration

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        missing = [c for c in self.features if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks feature column(s) {missing}")
        X = pd.DataFrame(index=model_input.index)
        for c in self.features:
            if c in self.categories:
                X[c] = pd.Categorical(model_input[c].astype("string").astype(object), categories=self.categories[c])
            else:
                X[c] = pd.to_numeric(model_input[c], errors="coerce").astype("float64")
        p = self.booster.predict(X)
        if p.ndim == 1:
            p = np.column_stack([1.0 - p, p])
        if self.calibration:
            p = _calibrated(p, self.calibration)
        return pd.DataFrame(p, columns=self.columns, index=model_input.index)


# --- issue #13: the calibration map of riskml.training.calibration.Calibrator, restated here because this
# file must run without riskml installed; tests/test_calibration.py checks that the two agree.
def _calibrated(p: np.ndarray, cal: dict) -> np.ndarray:
    raw = np.clip(1.0 - p[:, 0], 1e-9, 1.0 - 1e-9)
    x, y = np.asarray(cal["x"], dtype=np.float64), np.asarray(cal["y"], dtype=np.float64)
    z = np.log(raw / (1.0 - raw))
    out = np.where(z < x[0], y[0] + z - x[0], np.where(z > x[-1], y[-1] + z - x[-1], np.interp(z, x, y)))
    q = 1.0 / (1.0 + np.exp(-out))
    p = p * (q / raw)[:, None]
    p[:, 0] = 1.0 - q
    return p
# --- end issue #13


mlflow.models.set_model(RiskmlModel())

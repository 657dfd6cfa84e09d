"""The MLflow pyfunc of a single riskml model, logged as "model from code" (no pickle).

Used for single-model experiments (``target=adverse_3m``, a table's model);
the scoring system has its own (``pyfunc_system.py``). MLflow copies this file
into the logged model and runs it on load (the artifact store's trust
boundary, see ``riskml.store.registry``); the model's artifacts are the
exported folder's ``model.txt``, ``manifest.json`` and ``checksums.json``,
verified before LightGBM reads them. ``predict`` takes feature rows and returns
one (calibrated) probability column per class, ``p_<class>``.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd

from riskml.store.model_store import load_model_dir
from riskml.explain.scoring import ScoringModel


class RiskmlModel(mlflow.pyfunc.PythonModel):
    """Class probabilities from a LightGBM text model and its manifest."""

    def load_context(self, context) -> None:
        folder = Path(context.artifacts["model"]).parent
        booster, manifest = load_model_dir(folder, verify=(folder / "checksums.json").is_file())
        self.model = ScoringModel(booster, manifest, folder=folder)
        self.categories = dict(manifest.get("categories") or {})
        self.columns = [f"p_{c}" for c in manifest["classes"]]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        missing = [c for c in self.model.features if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks feature column(s) {missing}")
        X = pd.DataFrame(index=model_input.index)
        for c in self.model.features:
            if c in self.categories:
                X[c] = pd.Categorical(model_input[c].astype("string").astype(object), categories=self.categories[c])
            else:
                X[c] = pd.to_numeric(model_input[c], errors="coerce").astype("float64")
        return pd.DataFrame(self.model.proba(X), columns=self.columns, index=model_input.index)


mlflow.models.set_model(RiskmlModel())

"""The MLflow pyfunc of a riskml scoring system, logged as "model from code" (no pickle).

MLflow copies this file into the logged model and runs it on load
(``mlflow.pyfunc.load_model``, ``mlflow models serve``): that is the trust
boundary of the artifact store (see ``riskml.store.registry``). The model's
one artifact is the exported system folder (``system.json`` and the adverse,
status and recovery models as LightGBM text + JSON), verified against its
checksums before LightGBM reads it.

``predict`` takes borrower-month rows (the panel columns; any order, any
number of months per borrower) and returns exactly what ``riskml.predict``
writes for those borrowers: one row per borrower in the prediction contract.
Rows that fail validation raise one error naming each bad row and its reason
(a batch job puts them in its rejects file instead).
"""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException
import numpy as np
import pandas as pd
import pyarrow as pa

from riskml.batch.stream import FILE, ROW
from riskml.batch.bucket import prepare, split_rows
from riskml.store.model_store import open_system, registered_version
from riskml.exceptions import ConfigError, RiskmlError, SchemaError, whole_number
from riskml.explain.reasons import check_top_k
from riskml.schema import PANEL, missing_columns, prediction_schema
from riskml.measure.scale import Bands, PointsScale

#: the options of ``riskml.predict`` that shape a row, at their defaults (a request may pass ``params``)
DEFAULTS = {"as_of": None, "top_k": 3, "what_if": True, "include_other": False}


class RiskmlSystem(mlflow.pyfunc.PythonModel):
    """Borrower histories in, explained predictions out."""

    def load_context(self, context) -> None:
        folder = context.artifacts["system"]
        self.system = open_system(folder, **{k[len("model_"):]: str(v)
                                             for k, v in registered_version(folder).items()})

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """The prediction contract for ``model_input``; missing values (P(recovery) of a normal account, a
        third reason) are nullable floats and strings, so a served response holds ``null``, valid JSON,
        where NaN and categoricals would give a bare ``NaN``.
        A bad request raises MLflow's own error type with riskml's one-line message: the server answers
        it as a bad request without a stack trace of the server's paths."""
        try:
            scored = score_rows(self.system, model_input, **request_options(params))
        except RiskmlError as e:
            raise MlflowException.invalid_parameter_value(str(e)) from None
        nullable = {c: "Float64" if t.kind == "f" else "string" for c, t in scored.dtypes.items()
                    if t.kind == "f" or isinstance(t, pd.CategoricalDtype)}
        return scored.astype(nullable)


def request_options(params) -> dict:
    """A request's ``params`` over :data:`DEFAULTS`, checked as ``riskml.predict`` checks its config;
    a key riskml does not know is refused, not ignored."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ConfigError("params", unknown, f"only {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None or k == "as_of"}}
    if opts["as_of"] is not None:
        opts["as_of"] = whole_number("params.as_of", opts["as_of"], 0, what="null or a month index")
    opts["top_k"] = check_top_k(opts["top_k"], key="params.top_k")
    for key in ("what_if", "include_other"):
        if not isinstance(opts[key], (bool, np.bool_)):
            raise ConfigError(f"params.{key}", opts[key], "true or false")
    return opts


def score_rows(system, rows: pd.DataFrame, *, as_of=None, top_k=3, what_if=True, include_other=False
               ) -> pd.DataFrame:
    """Validate panel rows as a batch job does and score them (with the points and bands the system was
    trained with); raise on any bad row."""
    missing = missing_columns(rows, PANEL.required)
    if missing:
        raise SchemaError(f"model input: missing required panel column(s) {missing}; expected at least "
                          f"{list(PANEL.required)}")
    raw = rows.reset_index(drop=True).assign(**{FILE: np.int32(0), ROW: np.arange(len(rows), dtype=np.int64)})
    good, rejects = split_rows(prepare(pa.Table.from_pandas(raw, preserve_index=False)), as_of=as_of)
    if len(rejects):
        listed = "; ".join(f"row {int(r)}: {why}" for r, why in zip(rejects[ROW][:5], rejects["reason"][:5]))
        raise SchemaError(f"model input: {len(rejects)} bad row(s), e.g. {listed}; expected rows that pass the "
                          "panel contract (riskml.schema.PANEL)")
    schema = prediction_schema(top_k)
    scale = PointsScale.from_config(system.info["points"]) if "points" in system.info else PointsScale()
    bands = Bands.from_config(system.info["bands"]) if "bands" in system.info else Bands()
    scored = system.score(good, as_of=as_of, top_k=top_k, what_if=what_if, include_other=include_other,
                          scale=scale, bands=bands)
    # the types the batch job writes (its parquet schema), so both give the same values
    return pa.Table.from_pandas(scored[schema.names], schema=schema, preserve_index=False).to_pandas(
        ignore_metadata=True)


mlflow.models.set_model(RiskmlSystem())

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
from riskml.exceptions import ConfigError, RiskmlError, SchemaError
from riskml.explain.reasons import SCORE_OPTIONS, check_score_options
from riskml.io.lender import LenderSchema, dated_months
from riskml.schema import PANEL, missing_columns, prediction_schema
from riskml.measure.scale import Bands, PointsScale

#: the options of ``riskml.predict`` that shape a row, at their defaults (a request may pass ``params``)
DEFAULTS = SCORE_OPTIONS


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
    return check_score_options({k: v for k, v in params.items() if v is not None or k == "as_of"},
                               prefix="params.")


def score_rows(system, rows: pd.DataFrame, *, as_of=None, top_k=3, what_if=True, include_other=False
               ) -> pd.DataFrame:
    """Validate panel rows as a batch job does and score them (with the points and bands the system was
    trained with); raise on any bad row."""
    lender = lender_schema(system, rows)
    required = PANEL.required if lender is None else lender.required
    missing = missing_columns(rows, required)
    if missing:
        raise SchemaError(f"model input: missing required {'panel' if lender is None else 'schema'} column(s) "
                          f"{missing}; expected at least {list(required)}")
    raw = rows.reset_index(drop=True)
    table = pa.Table.from_pandas(raw if lender is None else raw[[c for c in raw.columns if c in set(
        lender.read_columns(list(raw.columns), file="model input"))]], preserve_index=False)
    table = table if lender is None else lender.to_contract(table)
    table = table.append_column(FILE, pa.array(np.zeros(len(rows), dtype=np.int32))).append_column(
        ROW, pa.array(np.arange(len(rows), dtype=np.int64)))
    good, rejects = split_rows(prepare(table), as_of=as_of)
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
    out = pa.Table.from_pandas(scored[schema.names], schema=schema, preserve_index=False).to_pandas(
        ignore_metadata=True)
    if lender is None:
        return out
    return lender.from_contract(out, text_months=dated_months(raw[lender.month]))


def lender_schema(system, rows: pd.DataFrame) -> LenderSchema | None:
    """The lender's schema the system was trained in, when ``rows`` are in it (rows in riskml's own panel
    contract are read as they are)."""
    raw = system.info.get("schema")
    if not raw:
        return None
    schema = LenderSchema.from_dict(raw, source="the model's schema")
    return None if "borrower_id" in rows.columns and schema.id not in rows.columns else schema


mlflow.models.set_model(RiskmlSystem())

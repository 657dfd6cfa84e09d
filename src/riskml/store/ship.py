"""Shipping a trained model: log it to the run, register one version, export it
to ``models/<name>/`` and move the ``champion`` alias, in that order.

The order is what keeps the registry and the export folder in step under a
kill: the version is registered first, the export is swapped in whole next,
and the alias moves last; a train killed between the export and the alias
leaves the folder ahead of the alias, which the next train mends
(:func:`riskml.store.registry.mend_export`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from riskml.io.files import check_writable
from riskml.evaluation.report import Reports
from riskml.store import registry
from riskml.store import tracking
from riskml.store.model_store import checksums_sha256, open_system, write_model_dir, write_system_dir
from riskml.store.pyfunc_system import DEFAULTS, score_rows
from riskml.schema import PANEL, prediction_schema

log = logging.getLogger(__name__)

_MLFLOW_TYPES = {"int64": "long", "int32": "integer", "double": "double", "string": "string", "bool": "boolean"}


def system_signature(top_k: int = 3) -> ModelSignature:
    """The prediction contract out, and the options a request may pass as ``params``.

    No input schema: MLflow would cast the rows before riskml sees them, and its casts refuse the panel
    file ``riskml.generate`` writes (categorical states; "Can not safely convert int64 to float64" where a
    column is declared a double) or read an id beyond 2**53 as a double, making two borrowers one. The
    rows are checked by the panel contract instead, as a batch job checks them, each bad row named with
    its reason; the logged input example shows the columns."""
    # dictionary-encoded text columns travel as strings
    outputs = [ColSpec(_MLFLOW_TYPES["string" if pa.types.is_dictionary(f.type) else str(f.type)], f.name)
               for f in prediction_schema(top_k)]
    # the options a request may pass as ``params`` (declared, so MLflow hands them on rather than drop them)
    params = ParamSchema([ParamSpec(k, "boolean" if isinstance(v, bool) else "long", v) for k, v in DEFAULTS.items()])
    return ModelSignature(inputs=None, outputs=Schema(outputs), params=params)


def request_rows(panel: pd.DataFrame) -> pd.DataFrame:
    """Panel rows as a JSON request carries them: whole-number columns as int64, other numbers as
    floats, categories as strings (null kept)."""
    out = pd.DataFrame(index=panel.index)
    for c in PANEL.columns:
        if c.name not in panel.columns:
            continue
        s = panel[c.name]
        out[c.name] = (s.astype(object).where(s.notna(), None) if c.categories
                       else s.astype("int64" if c.dtype.startswith("int") else "float64"))
    return out.reset_index(drop=True)


def export_dir(cfg: Mapping[str, Any], name: str, base: Path) -> Path:
    out = Path(str(cfg["export"]["dir"]))
    return (out if out.is_absolute() else base / out) / str(cfg["export"].get("name") or name)


def check_export(cfg: Mapping[str, Any], name: str, base: Path) -> None:
    """The export folder can be written (checked before any fit: a train used to fail there at its end)."""
    if cfg["export"].get("enabled") and cfg["tracking"].get("log_model", True):
        check_writable(export_dir(cfg, name, base), key="export.dir")


def ship_folder(folder: Path, *, run_id: str, name: str, cfg: Mapping[str, Any], base: Path,
                input_example: pd.DataFrame, output_example: pd.DataFrame,
                signature: ModelSignature | None = None) -> dict[str, Any]:
    """Log ``folder`` as the run's model, register it, export it if it wins, then move the alias."""
    out: dict[str, Any] = {"model_uri": None, "registration": None, "model_dir": None}
    if not cfg["tracking"].get("log_model", True):
        return out
    out["model_uri"] = tracking.log_model(folder, input_example=input_example, output_example=output_example,
                                          signature=signature, checksums=checksums_sha256(folder))
    reg_cfg, reg = cfg["register"], None
    if reg_cfg.get("enabled"):
        reg = registry.register(run_id, name, reg_cfg["metric"], bool(reg_cfg["greater_is_better"]),
                                alias=reg_cfg["alias"], folder_in_model="artifacts/system" if signature
                                else "artifacts")
        out["registration"] = reg
    if cfg["export"].get("enabled") and (reg is None or reg.promoted):
        out["model_dir"] = registry.export(folder, export_dir(cfg, name, base), name=name,
                                           version=None if reg is None else reg.version)
        log.info("exported %s to %s", name, out["model_dir"])
    elif cfg["export"].get("enabled"):
        log.info("not exporting %s: this run did not become %s", name, reg_cfg["alias"])
    if reg is not None:
        registry.promote(reg, alias=reg_cfg["alias"])
    return out


def ship_single(model_text: str, manifest: Mapping[str, Any], *, run_id: str, name: str, cfg: Mapping[str, Any],
                base: Path, input_example: pd.DataFrame, output_example: pd.DataFrame,
                extras: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One model (a single-target experiment or a table's model), with its report files."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_model_dir(model_text, manifest, Path(tmp) / "model", extra_files=extras)
        return ship_folder(folder, run_id=run_id, name=name, cfg=cfg, base=base, input_example=input_example,
                           output_example=output_example)


def ship_system(models: Mapping[str, tuple], system: Mapping[str, Any], *, run_id: str,
                name: str, cfg: Mapping[str, Any], base: Path, histories: pd.DataFrame) -> dict[str, Any]:
    """The scoring system: ``models`` maps each role to ``(model text, manifest)``; ``histories`` are a
    few borrowers' panel rows, the logged input example (their predictions are the output example)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_system_dir(models, system, Path(tmp) / "system")
        lender = system.get("schema")
        example = request_rows(histories) if not lender else histories
        scored = score_rows(open_system(folder, name=name), example)
        signature = system_signature() if not lender else lender_signature(lender)
        return ship_folder(folder, run_id=run_id, name=name, cfg=cfg, base=base, input_example=example,
                           output_example=scored.replace({np.nan: None}), signature=signature)


def lender_signature(schema: Mapping[str, Any]) -> ModelSignature:
    """A system trained in a lender's schema: as :func:`system_signature` (no input schema: the rows are
    checked by the lender's schema and the panel contract, as a batch job checks them; the logged input
    example shows the lender's columns), the prediction contract out under the lender's id name."""
    sig = system_signature()
    outputs = [ColSpec(c.type, schema["id"] if c.name == "borrower_id" else c.name) for c in sig.outputs.inputs]
    return ModelSignature(inputs=None, outputs=Schema(outputs), params=sig.params)


def report_files(reports: Reports | None) -> dict[str, str]:
    """The files written beside model.txt (the report, the reference profile)."""
    if reports is None:
        return {}
    files = {"report.html": reports.html}
    if reports.profile is not None:
        files["reference_profile.json"] = json.dumps(reports.profile, indent=1, sort_keys=True) + "\n"
    return files

"""The MLflow calls of a run: the store, runs, params, metrics, plots, data sets
and the logged model (the registry and model URIs are ``riskml.store.registry``).

The default store is an absolute ``sqlite:///<launch dir>/mlflow.db`` (MLflow
3's file store is deprecated); experiments created on a local SQLite store
keep their artifacts in ``<db dir>/mlartifacts/<experiment>/`` rather than in
MLflow's cwd-relative default. Any other tracking URI (``http://host:port``,
another database) comes from config, and a server decides its own artifacts.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import importlib.metadata
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, DataType, Schema
from mlflow.tracking import MlflowClient

from riskml import __version__
from riskml.io.files import pid_alive
from riskml.store.tracking_uri import check_server, check_uri, default_tracking_uri, launch_dir, sqlite_path
from riskml.exceptions import ConfigError, ModelError

log = logging.getLogger(__name__)

# Download progress bars are noise in logs of batch jobs and tests.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

MODEL_ARTIFACT = "model"
MODEL_URI_TAG = "riskml.model_uri"
CHECKSUMS_TAG = "riskml.checksums_sha256"
HOST_TAG, PID_TAG = "riskml.host", "riskml.pid"


def connect(uri: str | None, *, create: bool = True, key: str = "tracking.uri") -> str:
    """Point MLflow (tracking and registry) at ``uri`` (null: the default SQLite file); return the URI.

    ``create=False`` is for commands that only read (predict, compare): a
    local SQLite store that does not exist is an error, not a new empty file.
    """
    uri = check_uri(uri, key=key)
    check_server(uri, key=key)
    db = sqlite_path(uri)
    if db is not None:
        if not create and not db.is_file():
            raise ConfigError(key, uri, f"an existing MLflow store; {db} does not exist (python -m riskml.train "
                                        "creates it)")
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def setup(uri: str | None, experiment: str) -> str:
    """Point MLflow (tracking and registry) at ``uri`` and return the experiment's id.

    A missing experiment is created; on a local SQLite store its artifact
    location is ``<db dir>/mlartifacts/<experiment>``.
    """
    db = sqlite_path(connect(uri))
    # Two trains creating one new SQLite store at once race on its tables: the first open (which
    # creates them) and the experiment's creation happen under a lock beside the file.
    with _store_lock(db):
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is not None:
            return exp.experiment_id
        location = (db.parent / "mlartifacts" / experiment).resolve().as_uri() if db is not None else None
        return mlflow.create_experiment(experiment, artifact_location=location)


@contextlib.contextmanager
def _store_lock(db: Path | None) -> Iterator[None]:
    if db is None:
        yield
        return
    with open(db.with_name(f".{db.name}.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # blocking: the other train waits a second, then goes on
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def start_run(experiment_id: str, *, run_name: str | None = None, nested: bool = False,
              tags: Mapping[str, str] | None = None, run_id: str | None = None) -> Iterator[str]:
    """A run (nested under the active one when ``nested``; ``run_id`` resumes one); yields its id."""
    # host and pid let a later train mark this run KILLED if the process dies without ending it (kill -9)
    owner = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested, run_id=run_id,
                          tags={**dict(tags or {}), **owner} if run_id is None else None) as run:
        yield run.info.run_id


def end_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the runs of ``experiment_id`` still RUNNING whose process on this host is gone."""
    client, ended = MlflowClient(), []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if tags.get(HOST_TAG) == socket.gethostname() and tags.get(PID_TAG, "").isdigit() and \
                not pid_alive(int(tags[PID_TAG])):
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
    if ended:
        log.warning("marked %d run(s) KILLED whose process died: %s", len(ended), ", ".join(ended))
    return ended


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"num_leaves": 31}} -> {"model.num_leaves": 31}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def log_params(params: Mapping[str, Any]) -> None:
    """Log params; MLflow batches them (100 a request) and truncates over-long values itself."""
    mlflow.log_params(dict(params))


def log_metrics(metrics: Mapping[str, float]) -> None:
    """Log the finite numeric metrics (NaN/inf are skipped, not logged as garbage)."""
    clean = {k: float(v) for k, v in metrics.items()
             if isinstance(v, (int, float)) and math.isfinite(float(v))}
    mlflow.log_metrics(clean)


def set_tags(tags: Mapping[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_figure(fig, artifact_file: str) -> None:
    """Log a matplotlib figure as a PNG artifact and close it."""
    import matplotlib.pyplot as plt  # lazy: pyplot (0.5 s) only when a run logs figures

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def log_dict(obj: Mapping[str, Any], artifact_file: str) -> None:
    mlflow.log_dict(dict(obj), artifact_file)


def log_table(df: pd.DataFrame, artifact_file: str) -> None:
    """Log a frame as a CSV artifact."""
    mlflow.log_text(df.to_csv(index=True), artifact_file)


def frame_schema(df: pd.DataFrame) -> Schema:
    """The MLflow schema of ``df`` from its dtypes and one vectorised null check per column.

    MLflow's own inference (``mlflow.data.from_pandas``) looks at every value in
    Python to decide whether a column is required: minutes on a training frame of
    hundreds of thousands of rows, where the dtypes and ``isna().any()`` say the same
    in well under a second. Integer columns stay integers, so a model served with
    this schema takes the integers it was trained on.
    """
    nullable = df.isna().any().to_numpy()
    return Schema([ColSpec(_column_type(dtype), str(name), required=not null)
                   for (name, dtype), null in zip(df.dtypes.items(), nullable)])


def _column_type(dtype: Any) -> DataType:
    kind = getattr(dtype, "kind", "O")
    if kind == "b":
        return DataType.boolean
    if kind in "iu":
        return DataType.integer if dtype.itemsize <= 4 and not (kind == "u" and dtype.itemsize == 4) else DataType.long
    if kind == "f":
        return DataType.float if dtype.itemsize <= 4 else DataType.double
    if kind == "M":
        return DataType.datetime
    return DataType.string  # categories, strings, objects


class _FrameDataset(PandasDataset):
    """A pandas data set whose schema is given (see :func:`frame_schema`), not inferred value by value."""

    def __init__(self, df: pd.DataFrame, *, schema: Schema, **kwargs: Any) -> None:
        self._given_schema = schema
        super().__init__(df, **kwargs)

    @property
    def schema(self) -> Schema:  # type: ignore[override]
        return self._given_schema


def log_dataset(df: pd.DataFrame, *, name: str, source: str, digest: str, targets: str | None = None,
                context: str = "training") -> None:
    """Log a data set input (``mlflow.data``): its name, source, riskml's digest, its true row count
    (the profile) and its schema from the frame's dtypes."""
    with warnings.catch_warnings():  # a local path matches two equivalent source types; MLflow picks one
        warnings.filterwarnings("ignore", message="The specified dataset source", category=UserWarning)
        resolved = resolve_dataset_source(source)
    ds = _FrameDataset(df, schema=frame_schema(df), source=resolved, name=name, targets=targets, digest=digest[:36])
    mlflow.log_input(ds, context=context)


#: what a logged model needs, pinned to the versions it was trained with
_PINNED = ("mlflow", "lightgbm", "numpy", "pandas", "pyarrow", "scikit-learn", "numba", "hydra-core", "omegaconf",
           "tqdm", "matplotlib", "optuna")


def pinned_requirements() -> list[str]:
    """``riskml==<this version>`` and every package it runs on, at the versions installed now: a
    served model never resolves an unpinned requirement to a release riskml excludes."""
    return [f"riskml=={__version__}", *(f"{d}=={importlib.metadata.version(d)}" for d in _PINNED)]


def log_model(folder: str | os.PathLike, *, input_example: pd.DataFrame, output_example: pd.DataFrame,
              signature: ModelSignature | None = None, checksums: str | None = None) -> str:
    """Log an exported folder as a pyfunc "model from code" (no pickle); return the model URI.

    A system folder (``system.json``) is logged with ``pyfunc_system.py``: it takes borrower-month rows
    and returns the prediction contract. A single model folder is logged with ``pyfunc_features.py``: it
    takes feature rows and returns class probabilities. The URI and the folder's checksum (``checksums``)
    are recorded on the run, so that a ``runs:/`` URI can be verified on download.
    """
    folder = Path(folder)
    system = (folder / "system.json").is_file()
    code = Path(__file__).with_name("pyfunc_system.py" if system else "pyfunc_features.py")
    # a single model's files side by side (model.txt, manifest, checksums, report, reference profile)
    artifacts = ({"system": str(folder)} if system else
                 {f.stem: str(f) for f in sorted(folder.iterdir()) if f.is_file()})
    info = mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT, python_model=str(code), artifacts=artifacts,
        signature=signature or infer_signature(input_example, output_example),
        input_example=input_example, pip_requirements=pinned_requirements(),
    )
    mlflow.set_tags({MODEL_URI_TAG: info.model_uri, **({CHECKSUMS_TAG: checksums} if checksums else {})})
    return info.model_uri


def log_metric_history(key: str, values: list[float]) -> None:
    """A metric per step (a learning curve in the UI), in as few requests as MLflow allows."""
    if not values:
        return
    now = int(time.time() * 1000)
    run_id = mlflow.active_run().info.run_id
    MlflowClient().log_batch(run_id, metrics=[Metric(key, float(v), now, i) for i, v in enumerate(values)])


def search_runs(experiment: str, uri: str | None = None) -> pd.DataFrame:
    """All runs of ``experiment`` (one row per run: params.*, metrics.*, tags.*); reads only."""
    connect(uri, create=False)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError("experiment", experiment, f"an experiment that exists in {mlflow.get_tracking_uri()}")
    return mlflow.search_runs(experiment_ids=[exp.experiment_id], output_format="pandas")


def log_text(text: str, artifact_file: str) -> None:
    """Log a text artifact (an HTML report, a JSON document)."""
    mlflow.log_text(text, artifact_file)


def tag_model_version(name: str, version: int | str, key: str, value: str) -> bool:
    """Tag a registered model version (e.g. with its latest monitoring run); False when it is not registered."""
    try:
        MlflowClient().set_model_version_tag(name, str(version), key, value)
    except mlflow.exceptions.MlflowException:
        return False
    return True

"""Every MLflow call riskml makes: runs, params, metrics, plots, data sets,
models, the registry (champion alias) and resolving model URIs.

The default store is an absolute ``sqlite:///<launch dir>/mlflow.db`` (MLflow
3's file store is deprecated); experiments created on a local SQLite store
keep their artifacts in ``<db dir>/mlartifacts/<experiment>/`` rather than in
MLflow's cwd-relative default. Any other tracking URI (``http://host:port``,
another database) comes from config, and a server decides its own artifacts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from riskml.edge.files import read_json, write_json
from riskml.exceptions import ConfigError, ModelError

log = logging.getLogger(__name__)

# Download progress bars are noise in logs of batch jobs and tests.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

MODEL_ARTIFACT = "model"
MODEL_URI_TAG = "riskml.model_uri"
PIP_REQUIREMENTS = ["mlflow", "lightgbm", "numpy", "pandas"]


def launch_dir() -> Path:
    """The directory a run was launched from (Hydra 1.3 does not change the cwd)."""
    return Path(os.getcwd()).resolve()


def default_tracking_uri(base: str | os.PathLike | None = None) -> str:
    """``sqlite:///<absolute base or launch dir>/mlflow.db``."""
    return f"sqlite:///{(Path(base) if base else launch_dir()).resolve() / 'mlflow.db'}"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def connect(uri: str | None) -> str:
    """Point MLflow (tracking and registry) at ``uri`` (null: the default SQLite file); return the URI."""
    uri = uri or default_tracking_uri()
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError("tracking.uri", uri, "null or a URI such as sqlite:///abs/path/mlflow.db or http://host:port")
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def setup(uri: str | None, experiment: str) -> str:
    """Point MLflow (tracking and registry) at ``uri`` and return the experiment's id.

    A missing experiment is created; on a local SQLite store its artifact
    location is ``<db dir>/mlartifacts/<experiment>``.
    """
    db = _sqlite_path(connect(uri))
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    location = (db.parent / "mlartifacts" / experiment).resolve().as_uri() if db is not None else None
    return mlflow.create_experiment(experiment, artifact_location=location)


@contextlib.contextmanager
def start_run(experiment_id: str, *, run_name: str | None = None, nested: bool = False,
              tags: Mapping[str, str] | None = None, run_id: str | None = None) -> Iterator[str]:
    """A run (nested under the active one when ``nested``; ``run_id`` resumes one); yields its id."""
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested, run_id=run_id,
                          tags=dict(tags or {}) if run_id is None else None) as run:
        yield run.info.run_id


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


def log_dataset(df: pd.DataFrame, *, name: str, source: str, digest: str, targets: str | None = None,
                context: str = "training") -> None:
    """Log a data set input (``mlflow.data``) carrying riskml's own digest."""
    with warnings.catch_warnings():  # a local path matches two equivalent source types; MLflow picks one
        warnings.filterwarnings("ignore", message="The specified dataset source", category=UserWarning)
        ds = mlflow.data.from_pandas(df, source=source, name=name, targets=targets, digest=digest[:36])
    mlflow.log_input(ds, context=context)


def log_model(model_dir: str | os.PathLike, *, input_example: pd.DataFrame, output_example: pd.DataFrame) -> str:
    """Log an exported model folder as a pyfunc "model from code" returning class probabilities.

    The model's artifacts are the folder's ``model.txt`` and ``manifest.json``;
    requirements are given explicitly (inferring them costs seconds). Returns
    the model URI and records it on the run (tag ``riskml.model_uri``).
    """
    model_dir = Path(model_dir)
    code = Path(__file__).with_name("pyfunc_model.py")
    artifacts = {"model": str(model_dir / "model.txt"), "manifest": str(model_dir / "manifest.json")}
    if (model_dir / "reference_profile.json").is_file():  # issue #13: monitoring reads it beside model.txt
        artifacts["reference_profile"] = str(model_dir / "reference_profile.json")
    info = mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=str(code),
        artifacts=artifacts,
        signature=infer_signature(input_example, output_example),
        input_example=input_example,
        pip_requirements=PIP_REQUIREMENTS,
    )
    mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    return info.model_uri


@dataclass
class Registration:
    """What :func:`register_if_better` did."""

    name: str
    version: int
    promoted: bool
    value: float | None
    champion_value: float | None
    reason: str


def register_if_better(run_id: str, name: str, metric: str, greater_is_better: bool = True,
                       *, alias: str = "champion") -> Registration:
    """Register the run's model under ``name``; move ``alias`` to it if its metric beats the holder's.

    The holder is the version ``alias`` points at now (none: the new version
    wins). The decision is logged and recorded as tags on the run and version.
    """
    client = MlflowClient()
    run = client.get_run(run_id)
    source = run.data.tags.get(MODEL_URI_TAG) or f"runs:/{run_id}/{MODEL_ARTIFACT}"
    value = run.data.metrics.get(metric)
    mv = mlflow.register_model(source, name)
    version = int(mv.version)
    try:
        holder = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        holder = None
    champ_value = None
    if holder is not None:
        champ_value = client.get_run(holder.run_id).data.metrics.get(metric) if holder.run_id else None
    if value is None:
        promoted, reason = False, f"run has no metric {metric!r}"
    elif holder is None:
        promoted, reason = True, f"no {alias} yet"
    elif champ_value is None:
        promoted, reason = True, f"{alias} v{holder.version} has no metric {metric!r}"
    else:
        better = value > champ_value if greater_is_better else value < champ_value
        promoted = bool(better)
        reason = (f"{metric} {value:.5f} {'beats' if better else 'does not beat'} "
                  f"{alias} v{holder.version}'s {champ_value:.5f}")
    if promoted:
        client.set_registered_model_alias(name, alias, str(version))
    client.set_model_version_tag(name, str(version), "riskml.decision", reason)
    client.set_tag(run_id, "riskml.registered", f"{name}/{version}")
    client.set_tag(run_id, f"riskml.{alias}", str(promoted).lower())
    log.info("registered %s v%d; %s %s (%s)", name, version, alias, "moved to it" if promoted else "kept", reason)
    return Registration(name, version, promoted, value, champ_value, reason)


def _model_folder(root: Path) -> Path:
    """The folder under ``root`` that holds model.txt + manifest.json."""
    for cand in [root, root / "artifacts", *root.rglob("artifacts")]:
        if (cand / "model.txt").is_file() and (cand / "manifest.json").is_file():
            return cand
    raise ModelError(f"{root}: downloaded model has no model.txt + manifest.json; expected a riskml LightGBM model")


def resolve_model(uri: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local folder with ``model.txt`` + ``manifest.json`` for a model URI.

    Accepts a local folder, ``models:/<name>@<alias>``, ``models:/<name>/<version>``
    or ``runs:/<run_id>/model``. Registry URIs are resolved to a version first,
    so a moved alias never serves a stale cache entry; downloads are cached
    under ``cache_dir`` (default ``<launch dir>/models/.cache``).
    """
    text = str(uri)
    if "://" not in text and ":/" not in text:
        folder = Path(text)
        if not folder.is_dir():
            raise ModelError(f"model {text!r}: no such folder; expected a models/<name>/ folder or a "
                             "models:/ or runs:/ URI")
        return _model_folder(folder)
    cache = Path(cache_dir) if cache_dir else launch_dir() / "models" / ".cache"
    client = MlflowClient()
    try:
        if text.startswith("models:/"):
            ref = text[len("models:/"):]
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.rsplit("/", 1)
                mv = client.get_model_version(name, version)
            key, download = f"{mv.name}/v{mv.version}", f"models:/{mv.name}/{mv.version}"
        elif text.startswith("runs:/"):
            key, download = "runs/" + text[len("runs:/"):].strip("/"), text
        else:
            raise ModelError(f"model URI {text!r}: expected models:/<name>@<alias>, models:/<name>/<version>, "
                             "runs:/<run_id>/model or a local folder")
        target = cache / key
        if target.exists():
            try:
                return _model_folder(target)
            except ModelError:
                shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        mlflow.artifacts.download_artifacts(artifact_uri=download, dst_path=str(tmp))
        if text.startswith("models:/"):
            # the manifest was logged before the version existed; the registry knows it now
            man_file = _model_folder(tmp) / "manifest.json"
            write_json({**read_json(man_file), "model_name": mv.name, "model_version": int(mv.version)}, man_file)
        os.replace(tmp, target)
    except mlflow.exceptions.MlflowException as e:
        raise ModelError(f"model URI {text!r}: cannot resolve ({e.message})") from None
    return _model_folder(target)


def search_runs(experiment: str, uri: str | None = None) -> pd.DataFrame:
    """All runs of ``experiment`` (one row per run: params.*, metrics.*, tags.*)."""
    connect(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError("experiment", experiment, f"an experiment that exists in {mlflow.get_tracking_uri()}")
    return mlflow.search_runs(experiment_ids=[exp.experiment_id], output_format="pandas")


# --- issue #13: reports and monitoring runs ---

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
# --- end issue #13

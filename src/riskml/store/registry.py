"""The model registry: one registered version per training run, the ``champion``
alias, resolving model URIs to verified local folders, and mending an export
that a killed train left behind.

Trust boundary: a model is LightGBM text and JSON (never unpickled), and
riskml checks every file against the checksum the registry recorded when the
version was registered. But ``mlflow.pyfunc.load_model`` (and ``mlflow models
serve``) runs the Python file stored with the model (``pyfunc_system.py``):
whoever can write the artifact store can run code on every consumer of the
model. ``riskml.predict`` never runs that file; it loads the folder's text
and JSON itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import mlflow
from mlflow.tracking import MlflowClient

from riskml.io.files import atomic_dir, write_json
from riskml.store.model_store import (CHECKSUMS_FILE, MANIFEST_FILE, MODEL_FILE, SYSTEM_FILE, VERSION_FILE,
                                     checksums_sha256, registered_version, swap_in, verify_checksums)
from riskml.store.tracking import CHECKSUMS_TAG, MODEL_ARTIFACT, MODEL_URI_TAG, launch_dir
from riskml.exceptions import ConfigError, ModelError

log = logging.getLogger(__name__)


@dataclass
class Registration:
    """What :func:`register` decided (the alias moves only by :func:`promote`)."""

    name: str
    version: int
    promoted: bool
    value: float | None
    champion_value: float | None
    reason: str


def register(run_id: str, name: str, metric: str, greater_is_better: bool = True, *,
             alias: str = "champion", folder_in_model: str = "artifacts") -> Registration:
    """Register the run's model under ``name`` and decide whether it beats the ``alias`` holder.

    The holder is the version ``alias`` points at now (none: the new version
    wins). The decision and the folder's checksum are recorded as tags on the
    run and the version; the alias is moved by :func:`promote`, after the
    caller has exported the model, so that a kill in between never leaves the
    alias ahead of the export.
    """
    client = MlflowClient()
    run = client.get_run(run_id)
    source = run.data.tags.get(MODEL_URI_TAG) or f"runs:/{run_id}/{MODEL_ARTIFACT}"
    value = run.data.metrics.get(metric)
    if value is None:
        have = sorted(run.data.metrics)
        raise ModelError(f"config key 'register.metric': got {metric!r}; expected a metric of this run, one of "
                         f"{have}")
    mv = mlflow.register_model(source, name)
    version = int(mv.version)
    _stamp_version(source, name, version, folder_in_model)
    if run.data.tags.get(CHECKSUMS_TAG):
        client.set_model_version_tag(name, str(version), CHECKSUMS_TAG, run.data.tags[CHECKSUMS_TAG])
    try:
        holder = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        holder = None
    champ_value = client.get_run(holder.run_id).data.metrics.get(metric) if holder is not None and holder.run_id \
        else None
    if holder is None:
        promoted, reason = True, f"no {alias} yet"
    elif champ_value is None:
        promoted, reason = True, f"{alias} v{holder.version} has no metric {metric!r}"
    else:
        better = value > champ_value if greater_is_better else value < champ_value
        promoted = bool(better)
        reason = (f"{metric} {value:.5f} {'beats' if better else 'does not beat'} "
                  f"{alias} v{holder.version}'s {champ_value:.5f}")
    client.set_model_version_tag(name, str(version), "riskml.decision", reason)
    client.set_tag(run_id, "riskml.registered", f"{name}/{version}")
    client.set_tag(run_id, f"riskml.{alias}", str(promoted).lower())
    log.info("registered %s v%d; %s %s (%s)", name, version, alias, "moves to it" if promoted else "kept", reason)
    return Registration(name, version, promoted, value, champ_value, reason)


def _stamp_version(source: str, name: str, version: int, folder_in_model: str) -> None:
    """Write ``registered.json`` into the logged model beside its folder's files, so that the model,
    loaded by MLflow itself (pyfunc, ``mlflow models serve``), knows the version it was registered as.
    It is not in ``checksums.json``: it says which version, not what is scored."""
    if not source.startswith("models:/m-"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / VERSION_FILE
        write_json({"model_name": name, "model_version": version}, path)
        MlflowClient().log_model_artifact(source[len("models:/"):], str(path), artifact_path=folder_in_model)


def promote(reg: Registration, *, alias: str = "champion") -> None:
    """Move ``alias`` to the registered version (when :func:`register` decided it should)."""
    if reg.promoted:
        MlflowClient().set_registered_model_alias(reg.name, alias, str(reg.version))


def _model_folder(root: Path) -> Path:
    """The folder under ``root`` that holds a system (system.json) or a model (model.txt + manifest.json)."""
    for cand in [root, root / "artifacts", *sorted(root.rglob("artifacts")), *sorted(root.rglob("system"))]:
        if (cand / SYSTEM_FILE).is_file() or ((cand / MODEL_FILE).is_file() and (cand / MANIFEST_FILE).is_file()):
            return cand
    raise ModelError(f"{root}: downloaded model has no {SYSTEM_FILE} or {MODEL_FILE} + {MANIFEST_FILE}; expected a "
                     "riskml model")


_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _parse_model_uri(text: str) -> tuple[str, str, str]:
    """``(kind, name-or-run id, alias/version/path)`` of a registry or run URI, checked so that no part
    of the text can reach the file system unvalidated (``runs:/../../x`` is refused here)."""
    expected = ("expected models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/<artifact path> "
                "or an exported model folder")
    if text.startswith("models:/"):
        ref = text[len("models:/"):]
        name, sep, rest = ref.partition("@") if "@" in ref else ref.rpartition("/")
        if not name or not rest or not _SAFE.match(rest) or (sep == "/" and not rest.isdigit()):
            raise ModelError(f"model URI {text!r}: {expected}")
        return "models", name, rest if sep == "@" else f"/{rest}"
    if text.startswith("runs:/"):
        run_id, _, path = text[len("runs:/"):].partition("/")
        parts = [p for p in path.split("/") if p]
        if not _RUN_ID.match(run_id) or not parts or any(not _SAFE.match(p) or p in (".", "..") for p in parts):
            raise ModelError(f"model URI {text!r}: the run id must be 32 hexadecimal characters and the "
                             f"artifact path plain names; {expected}")
        return "runs", run_id, "/".join(parts)
    raise ModelError(f"model URI {text!r}: {expected}")


def resolve_model(uri: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local, verified folder for a model URI (a system folder or a single model folder).

    Accepts a local folder, ``models:/<name>@<alias>``, ``models:/<name>/<version>``
    or ``runs:/<run_id>/model``. Registry URIs are resolved to a version first,
    so a moved alias never serves a stale cache entry; downloads are cached
    under ``cache_dir`` (default ``<launch dir>/models/.cache``) at paths made
    of validated ids only, nothing outside that cache is ever removed, and the
    download is checked against the checksum recorded at registration before
    it is used.
    """
    text = str(uri)
    if "://" not in text and ":/" not in text:
        folder = Path(text)
        if not folder.is_dir():
            raise ModelError(f"model {text!r}: no such folder; expected a models/<name>/ folder or a "
                             "models:/ or runs:/ URI")
        return _model_folder(folder)
    kind, ident, ref = _parse_model_uri(text)
    cache = (Path(cache_dir) if cache_dir else launch_dir() / "models" / ".cache").resolve()
    # one cache for every store: entries are keyed by the store too (two stores both have a riskml v1)
    store = hashlib.sha256(mlflow.get_registry_uri().encode()).hexdigest()[:12]
    client = MlflowClient()
    try:
        if kind == "models":
            mv = (client.get_model_version(ident, ref[1:]) if ref.startswith("/")
                  else client.get_model_version_by_alias(ident, ref))
            name_key = mv.name if _SAFE.match(mv.name) else hashlib.sha256(mv.name.encode()).hexdigest()[:16]
            key, download = f"registry/{store}/{name_key}/v{int(mv.version)}", f"models:/{mv.name}/{mv.version}"
            expected, version = (mv.tags or {}).get(CHECKSUMS_TAG), (mv.name, int(mv.version))
        else:
            run = client.get_run(ident)  # an unknown run fails here, before any folder is made
            key, download = f"runs/{store}/{ident}/{ref}", f"runs:/{ident}/{ref}"
            expected, version = run.data.tags.get(CHECKSUMS_TAG), None
        target = (cache / key).resolve()
        if cache not in target.parents:  # invariant: ids are validated above
            raise ModelError(f"model URI {text!r}: resolves outside the model cache {cache}")
        if target.exists():
            try:
                return _verified(target, expected)
            except ModelError as e:  # a damaged entry of our own cache: fetch it again, once
                log.warning("model cache entry %s failed verification (%s); downloading it again", target, e)
                shutil.rmtree(target)
        _download(download, target, version)
    except mlflow.exceptions.MlflowException as e:
        raise ModelError(f"model URI {text!r}: cannot resolve ({e.message})") from None
    return _verified(target, expected)


def _verified(target: Path, expected: str | None) -> Path:
    folder = _model_folder(target)
    if (folder / CHECKSUMS_FILE).is_file():
        verify_checksums(folder, expected=expected)
    return folder


def _download(uri: str, target: Path, version: tuple[str, int] | None) -> None:
    """Download ``uri`` into ``target`` whole (a hidden temporary renamed into place)."""
    with atomic_dir(target) as tmp:
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp))
        for stamp in tmp.rglob(VERSION_FILE):  # a stamp of another registration of the same logged model
            stamp.unlink()
        if version is not None:  # the registry knows which version this download is
            write_json({"model_name": version[0], "model_version": version[1]}, _model_folder(tmp) / VERSION_FILE)


def export(folder: str | os.PathLike, out: str | os.PathLike, *, name: str, version: int | None) -> Path:
    """Copy a model folder to ``out`` (swapped in whole) with the registered version beside it."""
    folder = Path(folder)

    def write(tmp: Path) -> None:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)  # tmp: the empty folder atomic_dir made
        write_json({"model_name": name, "model_version": version}, tmp / VERSION_FILE)

    return swap_in(out, write)


def mend_export(name: str, out: str | os.PathLike, *, alias: str = "champion") -> bool:
    """Make ``out`` hold the version ``alias`` points at, when a killed train left it elsewhere.

    Returns whether it re-exported. Nothing happens when the registry has no
    such model or alias, or when the folder already holds that version.
    """
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return False
    out = Path(out)
    have = registered_version(out).get("model_version") if out.exists() else None
    if have == int(mv.version):
        return False
    log.warning("models folder %s holds version %s of %s but %s is v%s (a train was killed); exporting v%s",
                out, have, name, alias, mv.version, mv.version)
    folder = resolve_model(f"models:/{name}/{mv.version}", cache_dir=out.parent / ".cache")
    export(folder, out, name=name, version=int(mv.version))
    return True


__all__ = ["Registration", "checksums_sha256", "export", "mend_export", "promote", "register", "registered_version",
           "resolve_model"]


#: Families of metrics a run logs beyond the test metrics of its classes (oracle, fidelity, validation,
#: the system's other roles, a panel's input counts).
_METRIC_FAMILIES = ("oracle_", "auc_gap", "model_auc", "fidelity_", "valid_", "status/", "recovery/", "panel_",
                    "snapshot_", "n_", "fit_", "best_", "leakage_", "iv_", "psi", "selection_")


def check_register_metric(cfg: Mapping[str, Any], targets: Mapping[str, Any]) -> None:
    """``register.metric`` names a metric the run will log: found wrong after the fits, the whole train
    was lost at its end. ``targets``: the targets whose classes name the test metrics."""
    metric = cfg["register"].get("metric")
    if not cfg["register"].get("enabled") or not isinstance(metric, str):
        return
    classes = {c for t in targets.values() for c in t.classes} | {"adverse"}
    known = {f"{m}_{c}" for m in ("roc_auc", "pr_auc") for c in classes}
    known |= {"ks", "gini", "brier", "ece", "brier_multi", "log_loss"}
    base = metric[:-len("_std")] if metric.endswith("_std") else metric
    if base not in known and not base.startswith(_METRIC_FAMILIES):
        raise ConfigError("register.metric", metric, "a metric this run logs, e.g. roc_auc_adverse, pr_auc_adverse, "
                          "ks, gini, brier, ece, log_loss, valid_roc_auc_adverse")

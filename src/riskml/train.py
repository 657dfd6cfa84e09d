"""``python -m riskml.train``: fit one model, evaluate it, track it in MLflow.

``run(cfg)`` does the work and is what tests and ``riskml.tune`` call;
``main`` only carries ``@hydra.main``. One call is one MLflow run: the
flattened config as params, the data set's digest, test metrics (mean and
spread over folds for k-fold), the leakage scan, plots and, for LightGBM, the
model (a pyfunc returning class probabilities), its registration under the
target's name with the ``champion`` alias moved when it beats the holder, and
its export to ``models/<name>/`` (LightGBM text + JSON manifest).

The baselines (``hist_gbm``, ``logistic``) are tracked the same way but never
registered or exported: the batch predictor and the explainer need TreeSHAP
on a LightGBM text model, and riskml never pickles a model.

Examples::

    python -m riskml.train                                   # LightGBM, status_3m, synthetic data
    python -m riskml.train target=adverse_3m model=logistic
    python -m riskml.train -m model=lightgbm,hist_gbm,logistic
    python -m riskml.train data=tabular data.path=tests/data/credit.csv data.target_column=default
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from omegaconf import DictConfig, OmegaConf

from riskml.edge import tracking
from riskml.edge.files import export_model_dir
from riskml.edge.sources import load_data, panel_record
from riskml.exceptions import ConfigError, exit_on_error
from riskml.features import get_target
from riskml.training.datasets import Dataset, Fold, kfold_splits, out_of_time_split, time_cut, valid_mask
from riskml.training.metrics import raise_on_leaks
from riskml.training.select import selection_metrics, selection_tags
from riskml.training.models import FittedModel, build_manifest, check_model_config, example_input, fit, proba_frame
from riskml.training.steps import (evaluate_predictions, fidelity_metrics, importance_by_factor, oracle_metrics,
                                   plots, scan_leakage)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What one training run produced."""

    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    model: FittedModel
    dataset: Dataset
    leaks: list[tuple[str, float]] = field(default_factory=list)
    registration: tracking.Registration | None = None
    model_uri: str | None = None
    model_dir: Path | None = None
    fold_metrics: list[dict[str, float]] = field(default_factory=list)
    test_index: np.ndarray | None = None  # rows of ``dataset`` the final model was scored on


def check_config(cfg: dict[str, Any]) -> None:
    """Fail on a bad config before any data is read or model trained."""
    check_model_config(cfg["model"])
    kind = cfg["data"].get("kind")
    if kind not in ("synthetic", "panel", "tabular"):
        raise ConfigError("data.kind", kind, "'synthetic', 'panel' or 'tabular'")
    if kind != "tabular":
        get_target(cfg["target"]["name"])
    thr = cfg["leakage"]["threshold"]
    if not isinstance(thr, (int, float)) or not 0.5 < thr <= 1.0:
        raise ConfigError("leakage.threshold", thr, "a number in (0.5, 1]")


def make_folds(ds: Dataset, cfg: dict[str, Any]) -> list[Fold]:
    """Out-of-time when the data has a time, else stratified k-fold."""
    split, seed = cfg["split"], int(cfg["seed"])
    if ds.time is not None:
        held = None
        if ds.from_panel:  # simulated or a lender's panel: the same out-of-time split with held-out borrowers
            cut = time_cut(ds.time, test_months=split["test_months"], cut=split.get("cut_month"))
            held = split.get("test_entity_fraction")
        else:
            cut = time_cut(ds.time, test_fraction=float(split["time_test_fraction"]))
        return [out_of_time_split(ds.time, ds.groups, cut=cut, valid_fraction=float(split["valid_fraction"]),
                                  seed=seed, test_entity_fraction=None if held is None else float(held))]
    return kfold_splits(ds.y, ds.groups, n_splits=int(split["n_splits"]),
                        valid_fraction=float(split["valid_fraction"]), seed=seed)


def _fit(cfg: dict[str, Any], ds: Dataset, train: np.ndarray, valid: np.ndarray) -> FittedModel:
    return fit(cfg["model"], ds.X.iloc[train], ds.y[train], classes=ds.classes, X_valid=ds.X.iloc[valid],
               y_valid=ds.y[valid], feature_directions=ds.feature_directions, seed=int(cfg["seed"]),
               num_threads=int(cfg["num_threads"]))


def _summarise(per_fold: list[dict[str, float]]) -> dict[str, float]:
    """One fold: its metrics. Several: the mean under each name and ``<name>_std``."""
    if len(per_fold) == 1:
        return dict(per_fold[0])
    frame = pd.DataFrame(per_fold)
    out = frame.mean().to_dict()
    out.update({f"{k}_std": v for k, v in frame.std(ddof=1).to_dict().items()})
    out["n_folds"] = float(len(per_fold))
    return out


def model_name(cfg: dict[str, Any]) -> str:
    """The registered (and exported) model name: ``register.name`` or the target's / table's."""
    if cfg["register"].get("name"):
        return str(cfg["register"]["name"])
    if cfg["data"]["kind"] == "tabular":
        return str(cfg["data"].get("registered_name") or "riskml_tabular")
    return str(cfg["target"]["registered_name"])


def validation_metrics(model: FittedModel, ds: Dataset, valid: np.ndarray) -> dict[str, float]:
    """Adverse AUC on the validation slice: what tuning selects on, so the test set stays unseen."""
    adverse = ds.y[valid] > 0
    if len(valid) == 0 or adverse.all() or not adverse.any():
        return {}
    return {"valid_roc_auc_adverse": float(roc_auc_score(adverse, 1 - model.predict_proba(ds.X.iloc[valid])[:, 0]))}


def run(cfg: DictConfig | dict[str, Any]) -> TrainResult:
    """Train, evaluate and track one model as ``cfg`` says; see the module docstring."""
    cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False) if isinstance(cfg, DictConfig) else cfg
    check_config(cfg)
    base = tracking.launch_dir()
    ds = load_data(cfg, base)
    folds = make_folds(ds, cfg)
    exp_id = tracking.setup(cfg["tracking"].get("uri"), cfg["tracking"]["experiment"])
    kind = cfg["model"]["name"]
    tags = {"riskml.model": kind, "riskml.data": ds.kind, "riskml.target": cfg["target"]["name"]
            if ds.from_panel else cfg["data"]["target_column"]}
    run_name = cfg["tracking"].get("run_name") or f"{kind}-{tags['riskml.target']}"
    with tracking.start_run(exp_id, run_name=run_name, nested=bool(cfg.get("_nested")), tags=tags) as run_id:
        tracking.log_params({k: v for k, v in tracking.flatten(cfg).items() if not k.startswith("_")})
        tracking.log_dataset(ds.X.head(1000), name=f"{ds.kind}:{Path(ds.source).name}", source=ds.source,
                             digest=ds.digest)
        tracking.set_tags({"riskml.data_digest": ds.digest})
        leaks = _guard_leakage(ds, folds[0].train, cfg["leakage"])
        per_fold, oof, model, t_fit = [], [], None, 0.0
        for fold in folds:
            t0 = time.perf_counter()
            model = _fit(cfg, ds, fold.train, fold.valid)
            t_fit += time.perf_counter() - t0
            oof.append(model.predict_proba(ds.X.iloc[fold.test]))
            per_fold.append(evaluate_predictions(ds.y[fold.test], oof[-1], ds.classes))
            per_fold[-1].update(validation_metrics(model, ds, fold.valid))
            per_fold[-1].update(selection_metrics(model))  # model=auto: each fold's choice (issue 10)
        metrics = _summarise(per_fold)
        # scored rows: the test set, or every row out of fold (k-fold); plots use these predictions
        test, proba = np.concatenate([f.test for f in folds]), np.concatenate(oof)
        if len(folds) > 1:  # k-fold: the model that ships is refit on all rows (a valid slice for early stopping)
            everything = np.arange(len(ds.y))
            valid = everything[valid_mask(ds.groups, everything, float(cfg["split"]["valid_fraction"]),
                                          int(cfg["seed"]))]
            model = _fit(cfg, ds, np.setdiff1d(everything, valid), valid)
        metrics.update(leakage_features=float(len(leaks)), fit_seconds=t_fit, n_train=float(len(folds[0].train)), n_test=float(len(folds[0].test)),
                       n_features=float(ds.X.shape[1]))
        if model.best_iteration is not None:
            metrics["best_iteration"] = float(model.best_iteration)
        if ds.from_panel:
            metrics.update(oracle_metrics(ds, test, proba, cfg))  # {} without a simulator (a lender's panel)
            fid = fidelity_metrics(ds, test, proba, model, cfg)
            if fid is not None:
                metrics.update(fid.as_dict())
                tracking.log_table(fid.confusion, "fidelity_confusion.csv")
                tracking.log_table(fid.per_cause, "fidelity_per_cause.csv")
            if ds.kind == "panel":  # a lender's panel (issue 10): input counts, rejects, what was not measured
                extra, notes = panel_record(ds, fidelity_measured=fid is not None)
                metrics.update(extra)
                tracking.set_tags(notes)
                tracking.log_table(ds.rejects.set_index("borrower_id"), "rejects.csv")
        tracking.log_metrics(metrics)
        importance = importance_by_factor(model, ds, test, seed=int(cfg["seed"]))
        tracking.log_table(importance.to_frame("importance"), "importance_by_factor.csv")
        if cfg["eval"].get("plots", True):
            for fname, fig in plots(ds.y[test], proba, ds.classes, importance,
                                     n_bins=int(cfg["eval"]["ece_bins"])).items():
                tracking.log_figure(fig, fname)
        result = TrainResult(run_id, exp_id, metrics, model, ds, leaks, fold_metrics=per_fold, test_index=test)
        if model.selection:  # model=auto (issue 10): what the shipped model chose and why
            tracking.set_tags(selection_tags(model))
            tracking.log_dict(model.selection, "selection.json")
        if model.kind == "lightgbm":  # model=auto ships a LightGBM text model too
            _ship(result, cfg, ds, test, base)
    log.info("run %s (%s on %s): %s", run_id, kind, ds.kind,
             ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "roc_auc" in k or k in ("ece", "log_loss")))
    return result


def _guard_leakage(ds: Dataset, train: np.ndarray, leak_cfg: dict[str, Any]) -> list[tuple[str, float]]:
    """Scan for leaks, record what was found on the run, then fail unless ``leakage.allow``."""
    threshold = float(leak_cfg["threshold"])
    leaks = scan_leakage(ds, train, threshold)
    tracking.log_metrics({"leakage_features": float(len(leaks))})
    if leaks:
        text = ", ".join(f"{f} (AUC {a:.4f})" for f, a in leaks)
        tracking.set_tags({"riskml.leakage": text[:5000]})
        tracking.log_dict({f: a for f, a in leaks}, "leakage.json")
    raise_on_leaks(leaks, threshold=threshold, allow=bool(leak_cfg.get("allow", False)))
    return leaks


def _ship(result: TrainResult, cfg: dict[str, Any], ds: Dataset, test: np.ndarray, base: Path) -> None:
    """Log the LightGBM model, register it, and export it when it is the champion (or unregistered)."""
    name = model_name(cfg)
    synthetic = ds.from_panel  # a lender's panel ships like a simulated one (target, horizon, windows)
    manifest = build_manifest(
        result.model, feature_factors=ds.feature_factors, feature_directions=ds.feature_directions,
        categories=ds.categories, target=cfg["target"]["name"] if synthetic else str(cfg["data"]["target_column"]),
        horizon=int(cfg["target"]["horizon"]) if synthetic else None,
        windows=list(cfg["data"]["windows"]) if synthetic else None, metrics=result.metrics,
        data_digest=ds.digest, data_kind=ds.kind, name=name,
        id_column=None if synthetic else str(cfg["data"]["id_column"]))  # a table model scores tables (issue 10)
    text = result.model.booster.model_to_string()
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_model_dir(text, manifest, Path(tmp) / "model")
        if cfg["tracking"].get("log_model", True):
            example = ds.X.iloc[test[:5]]
            result.model_uri = tracking.log_model(folder, input_example=example_input(example),
                                                  output_example=proba_frame(result.model, example))
        reg, version = cfg["register"], None
        promoted = True
        if reg.get("enabled") and result.model_uri:
            result.registration = tracking.register_if_better(result.run_id, name, reg["metric"],
                                                              bool(reg["greater_is_better"]), alias=reg["alias"])
            promoted, version = result.registration.promoted, result.registration.version
        if cfg["export"].get("enabled") and promoted:
            out = Path(str(cfg["export"]["dir"]))
            out = (out if out.is_absolute() else base / out) / str(cfg["export"].get("name") or name)
            result.model_dir = export_model_dir(text, {**manifest, "model_version": version,
                                                       "run_id": result.run_id}, out)
            log.info("exported %s to %s", name, result.model_dir)
        elif cfg["export"].get("enabled"):
            log.info("not exporting %s: this run did not become %s", name, reg["alias"])


@hydra.main(version_base="1.3", config_path="pkg://riskml.conf", config_name="train")
@exit_on_error("riskml.train")
def main(cfg: DictConfig) -> float | None:
    result = run(cfg)
    return result.metrics.get(str(cfg.register.metric))


if __name__ == "__main__":
    main()

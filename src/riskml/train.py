"""``python -m riskml.train``: train, evaluate and track in MLflow; register what batch prediction uses.

``run(cfg)`` does the work and is what tests and ``riskml.tune`` call;
``main`` only carries ``@hydra.main``.

**The default (``target=system``)** trains the scoring system that
``riskml.predict`` and the registered MLflow model use: the adverse model
(P(adverse), the reasons and the what-ifs), the status model (its split into
suspended and closed) and the recovery model (suspended and closed
accounts), as one MLflow run with a nested run per model (each with its
metrics, learning curve, plots and fidelity). It registers **one** version of
one registered model (``riskml``) whose ``champion`` alias moves for the
system as a whole, when the adverse model's ``register.metric`` beats the
champion's, and exports it to ``models/riskml/``.

**Single-model experiments** (``target=adverse_3m|status_3m|recovery_6m``,
``data=tabular``, the baselines, sweeps, ``riskml.tune``) are one run each,
comparable in ``riskml.compare``; a LightGBM one registers under its target's
name. The baselines (``hist_gbm``, ``logistic``) are tracked but never
registered: batch prediction needs TreeSHAP on a LightGBM text model, and
riskml never pickles a model.

Examples::

    python -m riskml.train                                   # the scoring system on the synthetic default
    python -m riskml.train target=adverse_3m model=logistic  # one baseline
    python -m riskml.train -m target=adverse_3m model=lightgbm,hist_gbm,logistic
    python -m riskml.train data=tabular data.path=tests/data/credit.csv data.target_column=default
    python -m riskml.train cluster=local cluster.workers=2   # snapshots and lightgbm.dask on a Dask cluster
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from riskml import __version__
from riskml.store import registry, tracking
from riskml.cluster.client import check_cluster, connect
from riskml.io.eval_cache import CACHE_DIR, EvalCache
from riskml.io.files import check_known_keys
from riskml.store.model_store import ROLES
from riskml.store.ship import check_export, export_dir, report_files, ship_single, ship_system
from riskml.store.tracking_uri import check_server, check_uri
from riskml.sources import example_rows, load_data, panel_record
from riskml.exceptions import ConfigError, exit_on_error, whole_number
from riskml.features import TARGETS, get_target
from riskml.training.datasets import Dataset, check_split_config, make_folds, valid_mask
from riskml.measure.metrics import raise_on_leaks
from riskml.training.select import selection_metrics, selection_tags
from riskml.training.fit import fit
from riskml.training.models import FittedModel, build_manifest, check_model_config, example_input, proba_frame
from riskml.evaluation import kit
from riskml.evaluation.report import Reports, build_reports, check_report
from riskml.explain import warmup
from riskml.evaluation.steps import (evaluate_predictions, fidelity_metrics, importance_by_factor, oracle_metrics,
                                     plots, scan_leakage, scenario_fidelity, summarise_folds, validation_metrics)
from riskml.evaluation.whatif import check_eval, whatif_metrics

log = logging.getLogger(__name__)

#: the target value that trains the whole scoring system
SYSTEM = "system"


@dataclass
class TrainResult:
    """What one training run of one model produced."""

    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    model: FittedModel
    dataset: Dataset
    leaks: list[tuple[str, float]] = field(default_factory=list)
    registration: registry.Registration | None = None
    model_uri: str | None = None
    model_dir: Path | None = None
    fold_metrics: list[dict[str, float]] = field(default_factory=list)
    test_index: np.ndarray | None = None  # rows of ``dataset`` the final model was scored on
    reports: Reports | None = None  # tables, HTML report, reference profile


@dataclass
class SystemResult:
    """What training the scoring system produced: one parent run, a nested run per role."""

    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    parts: dict[str, TrainResult]
    registration: registry.Registration | None = None
    model_uri: str | None = None
    model_dir: Path | None = None


def check_config(cfg: dict[str, Any]) -> None:
    """Fail on a bad config before any data is read or model trained."""
    check_known_keys(cfg, "train")
    for key in ("seed", "num_threads"):
        whole_number(key, cfg.get(key), 0)
    check_model_config(cfg["model"])
    if not isinstance(cfg["register"].get("metric"), str):
        raise ConfigError("register.metric", cfg["register"].get("metric"), "a metric name, e.g. roc_auc_adverse")
    kind = cfg["data"].get("kind")
    if kind not in ("synthetic", "panel", "tabular"):
        raise ConfigError("data.kind", kind, "'synthetic', 'panel' or 'tabular'")
    if kind != "tabular" and cfg["target"]["name"] != SYSTEM:
        get_target(cfg["target"]["name"])
    if is_system(cfg) and cfg["model"]["name"] != "lightgbm":
        raise ConfigError("model.name", cfg["model"]["name"], "lightgbm for target=system (the scoring system "
                          "needs TreeSHAP on LightGBM models); train a baseline one target at a time, e.g. "
                          "target=adverse_3m model=logistic")
    if check_cluster(cfg.get("cluster")).kind != "none":  # what a cluster trains
        if kind == "tabular":
            raise ConfigError("cluster.kind", cfg["cluster"]["kind"], "none for data=tabular (a cluster trains on a "
                              "panel; a table trains in this process)")
        if cfg["model"]["name"] != "lightgbm":
            raise ConfigError("cluster.kind", cfg["cluster"]["kind"], f"none for model={cfg['model']['name']} "
                              "(a cluster trains LightGBM only, with lightgbm.dask)")
    check_eval(cfg["eval"])
    check_report(cfg["report"])
    registry.check_register_metric(cfg, TARGETS)
    thr = cfg["leakage"]["threshold"]
    if not isinstance(thr, (int, float)) or not 0.5 < thr <= 1.0:
        raise ConfigError("leakage.threshold", thr, "a number in (0.5, 1]")
    check_split_config(cfg["split"])
    # a tracking server that is down fails here, in seconds, not after the data and the fits
    check_server(check_uri(cfg["tracking"].get("uri"), key="tracking.uri"), key="tracking.uri")


def is_system(cfg: dict[str, Any]) -> bool:
    return cfg["data"]["kind"] != "tabular" and cfg["target"]["name"] == SYSTEM


def _fit(cfg: dict[str, Any], ds: Dataset, train: np.ndarray, valid: np.ndarray, label: str) -> FittedModel:
    """The fitted model, scored by the compiled scorer (the evaluation scores it many times)."""
    if "partitions" in ds.meta:  # lightgbm.dask on the snapshot partitions held by the workers
        from riskml.training.distributed import fit_dask  # imports dask: the cluster path only

        return kit.attach_scorer(fit_dask(
            ds.meta["partitions"], cfg["model"], train=train, valid=valid, X_valid=ds.X.iloc[valid],
            y_valid=ds.y[valid], classes=ds.classes, features=list(ds.X.columns),
            feature_directions=ds.feature_directions, seed=int(cfg["seed"]), num_threads=int(cfg["num_threads"])))
    return kit.attach_scorer(fit(cfg["model"], ds.X.iloc[train], ds.y[train], classes=ds.classes,
                                 X_valid=ds.X.iloc[valid], y_valid=ds.y[valid],
                                 feature_directions=ds.feature_directions, seed=int(cfg["seed"]),
                                 num_threads=int(cfg["num_threads"]), progress=label))


def model_name(cfg: dict[str, Any]) -> str:
    """The registered (and exported) model name: ``register.name`` or the target's / table's."""
    if cfg["register"].get("name"):
        return str(cfg["register"]["name"])
    if cfg["data"]["kind"] == "tabular":
        return str(cfg["data"].get("registered_name") or "riskml_tabular")
    return str(cfg["target"]["registered_name"])


def run(cfg: DictConfig | dict[str, Any]) -> TrainResult | SystemResult:
    """Train as ``cfg`` says: the scoring system (``target=system``) or one model; see the module docstring."""
    cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False) if isinstance(cfg, DictConfig) else cfg
    check_config(cfg)
    if cfg["model"]["name"] == "lightgbm" and cfg["data"]["kind"] != "tabular":
        warmup.start()  # the scoring kernels compile while the models fit, not after
    base = tracking.launch_dir()
    check_export(cfg, model_name(cfg), base)
    with connect(cfg.get("cluster")) as client:  # none: None, this process
        # the data first: a bad input fails before a tracking store is created or a run started
        if is_system(cfg):
            data = {role: load_data(component_config(cfg, target), base, client) for role, target in ROLES.items()}
        else:
            data = load_data(cfg, base, client)
        exp_id = tracking.setup(cfg["tracking"].get("uri"), cfg["tracking"]["experiment"])
        tracking.end_dead_runs(exp_id)  # runs of trains killed before they could end them
        if is_system(cfg):
            return run_system(cfg, data, exp_id=exp_id, base=base)
        return run_single(cfg, data, exp_id=exp_id, base=base)


def _target_label(cfg: dict[str, Any], ds: Dataset) -> str:
    return cfg["target"]["name"] if ds.from_panel else str(cfg["data"]["target_column"])


def eval_cache(cfg: dict[str, Any], ds: Dataset) -> EvalCache:
    """Where the evaluation's simulations are kept: beside a simulated data set (``eval.cache``), else in memory."""
    keep = cfg["eval"].get("cache", True) and ds.sim is not None
    return EvalCache(Path(ds.source) / CACHE_DIR if keep else None)


def run_single(cfg: dict[str, Any], ds: Dataset, *, exp_id: str, base: Path, nested: bool = False,
               ship: bool = True, cache: EvalCache | None = None) -> TrainResult:
    """Train, evaluate and track one model on ``ds`` as one MLflow run (nested under the active run when
    ``nested``); ``cache`` is shared by the models of one system."""
    cache = cache or eval_cache(cfg, ds)
    folds = make_folds(ds, cfg)
    kind, target = cfg["model"]["name"], _target_label(cfg, ds)
    tags = {"riskml.model": kind, "riskml.data": ds.kind, "riskml.target": target}
    run_name = cfg["tracking"].get("run_name") or f"{kind}-{target}"
    with tracking.start_run(exp_id, run_name=run_name, nested=nested or bool(cfg.get("_nested")),
                            tags=tags) as run_id:
        tracking.log_params({k: v for k, v in tracking.flatten(cfg).items() if not k.startswith("_")})
        tracking.log_dataset(ds.X, name=f"{ds.kind}:{Path(ds.source).name}:{target}", source=ds.source,
                             digest=ds.digest)
        tracking.set_tags({"riskml.data_digest": ds.digest})
        for warning in ds.meta.get("warnings", []):
            log.warning("%s: %s", ds.source, warning)
        if ds.meta.get("warnings"):
            tracking.set_tags({"riskml.data_warnings": " | ".join(ds.meta["warnings"])[:5000]})
        leaks = _guard_leakage(ds, folds[0].train, cfg["leakage"])
        per_fold, oof, model, t_fit = [], [], None, 0.0
        for k, fold in enumerate(folds):
            t0 = time.perf_counter()
            model = _fit(cfg, ds, fold.train, fold.valid, f"{target}" + (f" fold {k + 1}" if len(folds) > 1 else ""))
            t_fit += time.perf_counter() - t0
            oof.append(model.predict_proba(ds.X.iloc[fold.test]))
            per_fold.append(evaluate_predictions(ds.y[fold.test], oof[-1], ds.classes))
            per_fold[-1].update(validation_metrics(model, ds, fold.valid))
            per_fold[-1].update(selection_metrics(model))  # model=auto: each fold's choice
        tracking.log_metric_history("valid_log_loss", model.curve)  # the learning curve of the last fit
        metrics = summarise_folds(per_fold)
        # scored rows: the test set, or every row out of fold (k-fold); plots use these predictions
        test, proba = np.concatenate([f.test for f in folds]), np.concatenate(oof)
        if len(folds) > 1:  # k-fold: the model that ships is refit on all rows (a valid slice for early stopping)
            everything = np.arange(len(ds.y))
            valid = everything[valid_mask(ds.groups, everything, float(cfg["split"]["valid_fraction"]),
                                          int(cfg["seed"]))]
            model = _fit(cfg, ds, np.setdiff1d(everything, valid), valid, f"{target} refit")
        metrics.update(leakage_features=float(len(leaks)), fit_seconds=t_fit, n_train=float(len(folds[0].train)),
                       n_test=float(len(folds[0].test)), n_features=float(ds.X.shape[1]))
        if model.best_iteration is not None:
            metrics["best_iteration"] = float(model.best_iteration)
        fid, advice = (_evaluate_on_panel(cfg, ds, folds[0], test, proba, model, metrics, cache) if ds.from_panel
                       else (None, None))
        tracking.log_metrics(metrics)
        importance = importance_by_factor(model, ds, test, seed=int(cfg["seed"]))
        tracking.log_table(importance.to_frame("importance"), "importance_by_factor.csv")
        if cfg["eval"].get("plots", True):
            for fname, fig in plots(ds.y[test], proba, ds.classes, importance,
                                     n_bins=int(cfg["eval"]["ece_bins"])).items():
                tracking.log_figure(fig, fname)
        reports = None
        if cfg["report"].get("enabled", True):  # the risk team's tables, the model report, the reference profile
            reports = _log_reports(build_reports(ds=ds, model=model, train=folds[0].train, valid=folds[0].valid,
                                                 test=test, proba=proba, metrics=metrics, leaks=leaks, cfg=cfg,
                                                 importance=importance, fidelity=fid, whatif=advice), metrics)
        result = TrainResult(run_id, exp_id, metrics, model, ds, leaks, fold_metrics=per_fold, test_index=test)
        if model.selection:  # model=auto: what the shipped model chose and why
            tracking.set_tags(selection_tags(model))
            tracking.log_dict(model.selection, "selection.json")
        result.reports = reports
        if model.kind == "lightgbm" and ship:  # model=auto ships a LightGBM text model too
            example = ds.X.iloc[test[:5]]
            shipped = ship_single(result.model.booster.model_to_string(), _manifest(result, cfg), run_id=run_id,
                                  name=model_name(cfg), cfg=cfg, base=base, input_example=example_input(example),
                                  output_example=proba_frame(result.model, example), extras=report_files(reports))
            result.model_uri, result.registration, result.model_dir = (shipped["model_uri"], shipped["registration"],
                                                                       shipped["model_dir"])
    log.info("run %s (%s on %s): %s", run_id, kind, ds.kind,
             ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "roc_auc" in k or k in ("ece", "log_loss")))
    return result


def _evaluate_on_panel(cfg: dict[str, Any], ds: Dataset, fold: Any, test: np.ndarray, proba: np.ndarray,
                       model: Any, metrics: dict[str, float], cache: EvalCache):
    """A panel's evaluation, tracked on the active run and added to ``metrics``: the gap to the oracle and the
    what-if against the simulator following the advice (simulated data), explanation fidelity on the test set
    and on fresh portfolios, a lender's input counts and rejects. Returns the fidelity and the what-if."""
    metrics.update(oracle_metrics(ds, test, proba, cfg, cache=cache))
    fid = fidelity_metrics(ds, test, proba, model, cfg)
    if fid is not None:
        metrics.update(fid.as_dict())
        tracking.log_table(fid.confusion, "fidelity_confusion.csv")
        tracking.log_table(fid.per_cause, "fidelity_per_cause.csv")
    report = scenario_fidelity(model, ds, cfg, cache=cache)  # fresh portfolios, one per scenario
    if report is not None:
        metrics.update(report.metrics)
        tracking.log_table(report.confusion, "fidelity_scenarios_confusion.csv")
        tracking.log_table(report.per_cause, "fidelity_scenarios_per_cause.csv")
    advice = whatif_metrics(model, ds, test, proba, cfg, cache=cache, learn_rows=np.r_[fold.train, fold.valid])
    metrics.update(advice.metrics)  # each actionable reason's p_after against the simulator following the advice
    for name, table in advice.tables.items():
        tracking.log_table(table, name)
    if ds.kind == "panel":  # a lender's panel: input counts, rejects, what was not measured
        extra, notes = panel_record(ds, fidelity_measured=fid is not None)
        metrics.update(extra)
        tracking.set_tags(notes)
        tracking.log_table(ds.rejects.set_index("borrower_id"), "rejects.csv")
    return fid, advice


def _log_reports(reports: Reports, metrics: dict[str, float]) -> Reports:
    """Track a run's reports (tables, HTML report, reference profile) and add their metrics to ``metrics``."""
    metrics.update(reports.metrics)
    tracking.log_metrics(reports.metrics)
    for name, frame in reports.tables.items():
        tracking.log_table(frame, name)
    tracking.log_text(reports.html, "report.html")
    if reports.profile is not None:
        tracking.log_dict(reports.profile, "reference_profile.json")
    return reports


def _manifest(result: TrainResult, cfg: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    ds = result.dataset
    synthetic = ds.from_panel  # a lender's panel ships like a simulated one (target, horizon, windows)
    return build_manifest(
        result.model, feature_factors=ds.feature_factors, feature_directions=ds.feature_directions,
        categories=ds.categories, target=cfg["target"]["name"] if synthetic else str(cfg["data"]["target_column"]),
        horizon=int(cfg["target"]["horizon"]) if synthetic else None,
        windows=list(cfg["data"]["windows"]) if synthetic else None, metrics=result.metrics,
        data_digest=ds.digest, data_kind=ds.kind, name=name or model_name(cfg),
        id_column=None if synthetic else str(cfg["data"]["id_column"])) | {"run_id": result.run_id,
                                                                              "signals": ds.meta.get("signals") or {}}


def component_config(cfg: dict[str, Any], target: str) -> dict[str, Any]:
    """The single-model config of one role of the system: its target, nothing shipped on its own."""
    sub = copy.deepcopy(cfg)
    horizon = cfg["target"].get("recovery_horizon" if target == ROLES["recovery"] else "horizon")
    sub["target"] = {"name": target, "horizon": int(horizon or TARGETS[target].horizon), "registered_name": None}
    sub["register"]["enabled"] = sub["export"]["enabled"] = sub["tracking"]["log_model"] = False
    sub["tracking"]["run_name"] = f"{cfg['model']['name']}-{target}"
    # riskml.monitor reads a system's adverse model's profile, and a system serves normal accounts the adverse
    # model's reasons and what-ifs (the status model only splits P(adverse) into suspended and closed): the
    # status model's reasons are measured only when it is trained alone
    sub["report"]["profile"] = sub["report"].get("profile", True) and target == ROLES["adverse"]
    if target == ROLES["status"]:
        sub["eval"]["fidelity"] = sub["eval"]["whatif"] = False
    return sub


def run_system(cfg: dict[str, Any], data: dict[str, Dataset], *, exp_id: str, base: Path) -> SystemResult:
    """Train the adverse, status and recovery models as one run; register and export them as one model."""
    name, reg = model_name(cfg), cfg["register"]
    if cfg["export"].get("enabled") and reg.get("enabled"):
        registry.mend_export(name, export_dir(cfg, name, base), alias=reg["alias"])
    tags = {"riskml.model": cfg["model"]["name"], "riskml.data": cfg["data"]["kind"], "riskml.target": SYSTEM}
    run_name = cfg["tracking"].get("run_name") or f"{cfg['model']['name']}-{SYSTEM}"
    with tracking.start_run(exp_id, run_name=run_name, nested=bool(cfg.get("_nested")), tags=tags) as run_id:
        tracking.log_params({k: v for k, v in tracking.flatten(cfg).items() if not k.startswith("_")})
        cache = eval_cache(cfg, data["adverse"])
        parts = {role: run_single(component_config(cfg, target), data[role], exp_id=exp_id, base=base, nested=True,
                                  ship=False, cache=cache) for role, target in ROLES.items()}
        metrics = dict(parts["adverse"].metrics)  # the system is judged (and promoted) on its adverse model
        for role in ("status", "recovery"):
            metrics.update({f"{role}/{k}": v for k, v in parts[role].metrics.items()})
        tracking.log_metrics(metrics)
        result = SystemResult(run_id, exp_id, metrics, parts)
        models = {role: (p.model.booster.model_to_string(), _manifest(p, component_config(cfg, ROLES[role]),
                                                                       f"{name}/{role}"), report_files(p.reports))
                  for role, p in parts.items()}
        ds = parts["adverse"].dataset
        system = {"name": name, "riskml_version": __version__, "run_id": run_id, "data_digest": ds.digest,
                  "data_kind": ds.kind, "windows": list(cfg["data"]["windows"]), "metrics": metrics,
                  "runs": {role: p.run_id for role, p in parts.items()},
                  "points": cfg["points"], "bands": cfg["bands"]}  # what the MLflow model scores with
        if ds.meta.get("schema"):  # a lender's schema: predict, monitor and the served model read its files
            system["schema"] = ds.meta["schema"]
        shipped = ship_system(models, system, run_id=run_id, name=name, cfg=cfg, base=base,
                              histories=example_rows(ds))
        result.model_uri, result.registration, result.model_dir = (shipped["model_uri"], shipped["registration"],
                                                                   shipped["model_dir"])
    log.info("system run %s: adverse roc_auc=%.4f, status roc_auc=%.4f, recovery roc_auc=%.4f", run_id,
             metrics.get("roc_auc_adverse", float("nan")), metrics.get("status/roc_auc_adverse", float("nan")),
             metrics.get("recovery/roc_auc_adverse", float("nan")))
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


@hydra.main(version_base="1.3", config_path="pkg://riskml.conf", config_name="train")
@exit_on_error("riskml.train")
def main(cfg: DictConfig) -> float | None:
    result = run(cfg)
    return result.metrics.get(str(cfg.register.metric))


if __name__ == "__main__":
    main()

"""``python -m riskml.tune n_trials=N``: an Optuna search over the train config.

Optuna 5 is driven directly (the Hydra Optuna sweeper pins optuna < 3). Each
trial composes ``conf/train.yaml`` with ``train_overrides`` and ``overrides``
plus the trial's sampled values and calls :func:`riskml.train.run` as a nested MLflow run under
one parent run. The study lives in its own SQLite file
(``sqlite:///<launch dir>/optuna.db`` by default); running the command again
loads it and runs only the trials still missing up to ``n_trials``, under the
same parent run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import hydra
import optuna
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from riskml import train  # an entry point driving another: tune runs train.run per trial
from riskml.store import tracking
from riskml.exceptions import ConfigError, RiskmlError, exit_on_error

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"


@dataclass
class TuneResult:
    study_name: str
    best_value: float
    best_params: dict[str, Any]
    n_complete: int
    parent_run_id: str


def suggest(trial: optuna.Trial, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Sample one value per search-space key (``type``: int, float or categorical)."""
    out = {}
    for key, spec in space.items():
        kind = spec.get("type")
        if kind == "int":
            out[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)))
        elif kind == "float":
            out[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]),
                                           log=bool(spec.get("log", False)))
        elif kind == "categorical":
            out[key] = trial.suggest_categorical(key, list(spec["choices"]))
        else:
            raise ConfigError(f"search_space.{key}.type", kind, "'int', 'float' or 'categorical'")
    return out


def compose_train(overrides: list[str]) -> dict[str, Any]:
    """The train config with ``overrides``, as a plain dict."""
    if GlobalHydra.instance().is_initialized():
        cfg = compose("train", overrides=overrides)
    else:
        with initialize_config_module("riskml.conf", version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def run(cfg: DictConfig | dict[str, Any]) -> TuneResult:
    """Run (or resume) the study; every trial is a nested MLflow run."""
    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    if cfg["direction"] not in ("maximize", "minimize"):
        raise ConfigError("direction", cfg["direction"], "'maximize' or 'minimize'")
    storage = cfg.get("storage") or f"sqlite:///{tracking.launch_dir() / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=cfg["study_name"], direction=cfg["direction"],
                                sampler=optuna.samplers.TPESampler(seed=int(cfg["seed"])), load_if_exists=True)
    uri, experiment = cfg["tracking"].get("uri"), cfg["tracking"]["experiment"]
    base = [*cfg.get("train_overrides", []), *cfg.get("overrides", []), f"tracking.experiment={experiment}",
            f"seed={cfg['seed']}"]
    if uri:
        base.append(f"tracking.uri={uri}")
    compose_train(base)  # a bad override fails here, before the first trial
    exp_id = tracking.setup(uri, experiment)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    remaining = max(0, int(cfg["n_trials"]) - len(done))
    parent = study.user_attrs.get(PARENT_ATTR)

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, cfg["search_space"])
        tcfg = compose_train(base + [f"{k}={v}" for k, v in values.items()])
        tcfg["tracking"]["run_name"] = f"trial-{trial.number}"
        tcfg["_nested"] = True
        result = train.run(tcfg)
        value = result.metrics.get(cfg["metric"])
        if value is None:
            raise ConfigError("metric", cfg["metric"], f"a metric train logs, one of {sorted(result.metrics)}")
        trial.set_user_attr("mlflow_run_id", result.run_id)
        return float(value)

    with tracking.start_run(exp_id, run_name=None if parent else f"tune-{cfg['study_name']}", run_id=parent,
                            tags={"riskml.study": cfg["study_name"]}) as parent_id:
        study.set_user_attr(PARENT_ATTR, parent_id)
        if remaining:
            tracking.log_params({"study_name": cfg["study_name"], "metric": cfg["metric"],
                                 "direction": cfg["direction"], "storage": storage})
            study.optimize(objective, n_trials=remaining, catch=(RiskmlError,))
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise RiskmlError(f"study {cfg['study_name']!r}: no trial completed; see the log of the failed trials")
        tracking.log_metrics({f"best_{cfg['metric']}": study.best_value, "n_trials_complete": len(complete)})
        tracking.set_tags({"riskml.best_params": study.best_params, "riskml.best_trial": study.best_trial.number})
    log.info("study %s: best %s = %.5f with %s (%d trials)", cfg["study_name"], cfg["metric"], study.best_value,
             study.best_params, len(complete))
    return TuneResult(cfg["study_name"], float(study.best_value), dict(study.best_params), len(complete), parent_id)


@hydra.main(version_base="1.3", config_path="pkg://riskml.conf", config_name="tune")
@exit_on_error("riskml.tune")
def main(cfg: DictConfig) -> float:
    return run(cfg).best_value


if __name__ == "__main__":
    main()

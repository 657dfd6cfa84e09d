"""``python -m riskml.compare experiment=NAME``: a table of an experiment's runs.

One row per run: its name and model, the params that differ between the runs
(the ones that do not differ say nothing) and the key metrics, sorted by a
chosen metric. The same store opens in the MLflow UI:
``mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db``.
"""

from __future__ import annotations

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from riskml.store import tracking
from riskml.exceptions import ConfigError, exit_on_error

#: Params never worth a column (they differ by design or say nothing).
_NOISE = ("tracking.", "_")


def differing_params(runs: pd.DataFrame) -> list[str]:
    """``params.*`` columns with at least two different values across ``runs``.

    A param that only some runs have (one model's setting) but that is equal
    wherever it is set says nothing about the difference, so it is left out.
    """
    cols = [c for c in runs.columns if c.startswith("params.")
            and not c[len("params."):].startswith(_NOISE)]
    return [c for c in cols if runs[c].astype("string").dropna().nunique() > 1]


def table(runs: pd.DataFrame, *, metrics: list[str], sort_by: str, ascending: bool = False) -> pd.DataFrame:
    """The comparison table of raw ``mlflow.search_runs`` output (stage code, no MLflow)."""
    if runs.empty:
        return pd.DataFrame(columns=["run_id", "run_name", "model", *metrics])
    out = pd.DataFrame({
        "run_id": runs["run_id"].str[:8],
        "run_name": runs.get("tags.mlflow.runName", pd.Series("", index=runs.index)),
        "model": runs.get("params.model.name", pd.Series("", index=runs.index)),
    })
    for c in differing_params(runs):
        if c != "params.model.name":
            out[c[len("params."):]] = runs[c]
    present = [m for m in metrics if f"metrics.{m}" in runs.columns]
    for m in present:
        out[m] = runs[f"metrics.{m}"].astype(float)
    key = sort_by if sort_by in out.columns else None
    if key is None and f"metrics.{sort_by}" in runs.columns:
        out[sort_by] = runs[f"metrics.{sort_by}"].astype(float)
        key = sort_by
    if key is None:
        have = sorted(c[len("metrics."):] for c in runs.columns if c.startswith("metrics."))
        raise ConfigError("sort_by", sort_by, f"a metric of these runs, one of {have}")
    return out.sort_values(key, ascending=ascending, na_position="last").reset_index(drop=True)


def run(cfg: DictConfig | dict) -> pd.DataFrame:
    """Build, print and return the comparison table of ``cfg.experiment``."""
    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    runs = tracking.search_runs(str(cfg["experiment"]), cfg["tracking"].get("uri"))
    if cfg.get("status") and not runs.empty:
        runs = runs[runs["status"] == cfg["status"]]
    runs = runs.head(int(cfg.get("max_runs") or len(runs)))
    out = table(runs, metrics=list(cfg["metrics"]), sort_by=str(cfg["sort_by"]), ascending=bool(cfg["ascending"]))
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.4f}".format):
        print(f"experiment {cfg['experiment']!r}: {len(out)} run(s), sorted by {cfg['sort_by']}")
        print(out.to_string(index=False))
    return out


@hydra.main(version_base="1.3", config_path="pkg://riskml.conf", config_name="compare")
@exit_on_error("riskml.compare")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()

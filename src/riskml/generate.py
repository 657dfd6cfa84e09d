"""``python -m riskml.generate``: simulate borrower histories into ``data/synthetic/<name>/``.

Writes ``panel.parquet`` (observable behaviour and the platform's decisions),
``truth.parquet`` (hidden borrower types and traits, kept apart) and
``manifest.json`` (resolved config, seed, version, counts, sha256 of each
file); see :mod:`riskml.io.datasets`. The folder appears under its final
name only when complete.

Examples:
    python -m riskml.generate n_borrowers=20000 seed=7 scenario=tightening
    python -m riskml.generate name=big n_borrowers=1000000 n_months=36 workers=2
    python -m riskml.generate cluster=local cluster.workers=2   # parts simulated on a Dask cluster: panel/part-*.parquet
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from riskml.cluster.client import check_cluster, connect
from riskml.cluster.generate import parts_writer
from riskml.io.datasets import check_dataset_place, write_dataset
from riskml.io.files import check_known_keys
from riskml.exceptions import ConfigError, exit_on_error
from riskml.simulate import SimConfig
from riskml.simulate.config import check_name

def run(cfg: DictConfig) -> Path:
    """Generate one data set as the config says and return its folder.

    Every key is validated before any work (:class:`ConfigError` names the
    key, the value and what is allowed). A summary is printed at the end.
    """
    check_known_keys(cfg, "generate")
    sim = SimConfig.from_cfg(cfg)
    name = check_name(cfg.get("name"))
    data_dir = cfg.get("data_dir")
    if not isinstance(data_dir, str) or not data_dir:
        raise ConfigError("data_dir", data_dir, "a folder path (relative to the launch directory)")
    check_dataset_place(Path(data_dir) / name)
    config = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    cluster = check_cluster(config.get("cluster"))
    with connect(cluster) as client:  # none: this process (and its own pool of `workers`)
        out, summary = write_dataset(sim, Path(data_dir) / name, name=name, config=config,
                                     write_parts=parts_writer(client))
    print(f"{summary.text()}\nwritten to {out}")
    return out


@hydra.main(version_base="1.3", config_path="pkg://riskml.conf", config_name="generate")
@exit_on_error("riskml.generate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()

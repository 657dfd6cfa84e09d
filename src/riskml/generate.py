"""``python -m riskml.generate``: simulate borrower histories into ``data/synthetic/<name>/``.

Writes ``panel.parquet`` (observable behaviour and the platform's decisions),
``truth.parquet`` (hidden borrower types and traits, kept apart) and
``manifest.json`` (resolved config, seed, version, counts, sha256 of each
file). The folder appears under its final name only when complete.

Examples:
    python -m riskml.generate n_borrowers=20000 seed=7 scenario=tightening
    python -m riskml.generate name=big n_borrowers=1000000 n_months=36 workers=2
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from riskml import __version__
from riskml.exceptions import ConfigError, InputError, exit_on_error
from riskml.io import ParquetSink, read_json, read_table, sha256_file, write_json
from riskml.simulate import SimConfig, iter_chunks
from riskml.simulate.config import check_name
from riskml.simulate.summary import Summary

PANEL_FILE, TRUTH_FILE, MANIFEST_FILE = "panel.parquet", "truth.parquet", "manifest.json"
# low-cardinality panel columns: dictionary-encode these only (4x faster writes, smaller files)
_DICT_COLUMNS = ["month", "status", "cause", "fraud_flag", "maintenance", "policy_index", "days_past_due",
                 "other_lenders", "recent_applications", "rapid_draws", "credit_limit"]


def run(cfg: DictConfig) -> Path:
    """Generate one data set as the config says and return its folder.

    Every key is validated before any work (:class:`ConfigError` names the
    key, the value and what is allowed). A summary is printed at the end.
    """
    sim = SimConfig.from_cfg(cfg)
    name = check_name(cfg.get("name"))
    data_dir = cfg.get("data_dir")
    if not isinstance(data_dir, str) or not data_dir:
        raise ConfigError("data_dir", data_dir, "a folder path (relative to the launch directory)")
    out = Path(data_dir) / name
    tmp = out.with_name(f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    summary = Summary()
    try:
        panel_sink = truth_sink = None
        for panel, truth in iter_chunks(sim):
            if panel_sink is None:
                panel_sink = ParquetSink(tmp / PANEL_FILE, pa.Schema.from_pandas(panel, preserve_index=False),
                                         row_group_size=sim.block_size * sim.n_months, use_dictionary=_DICT_COLUMNS)
                truth_sink = ParquetSink(tmp / TRUTH_FILE, pa.Schema.from_pandas(truth, preserve_index=False),
                                         row_group_size=sim.block_size)
            panel_sink.write(panel)
            truth_sink.write(truth)
            summary.add(panel)
        panel_sink.close()
        truth_sink.close()
        manifest = {
            "name": name, "created_by": "riskml.generate", "package_version": __version__,
            "seed": sim.seed, "scenario": sim.scenario, "n_months": sim.n_months,
            "config": OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg),
            "sim_config": sim.to_dict(),
            "row_counts": {PANEL_FILE: panel_sink.rows, TRUTH_FILE: truth_sink.rows},
            **summary.to_dict(),
            "files": {f: {"sha256": sha256_file(tmp / f), "bytes": (tmp / f).stat().st_size}
                      for f in (PANEL_FILE, TRUTH_FILE)},
        }
        write_json(manifest, tmp / MANIFEST_FILE)
        if out.exists():  # replace an earlier data set of the same name only once the new one is complete
            old = out.with_name(f".{name}.old-{os.getpid()}")
            os.replace(out, old)
            shutil.rmtree(old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{summary.text()}\nwritten to {out}")
    return out


def load_dataset(path: str | os.PathLike, *, verify: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read a generated data set: ``(panel, truth, manifest)``.

    With ``verify`` the files' sha256 must match the manifest (an
    :class:`InputError` names the file otherwise).
    """
    path = Path(path)
    manifest = read_json(path / MANIFEST_FILE)
    if verify:
        for f, meta in manifest.get("files", {}).items():
            if sha256_file(path / f) != meta["sha256"]:
                raise InputError(f"{path / f}: sha256 does not match {MANIFEST_FILE}; the file changed after "
                                 "generation")
    return read_table(path / PANEL_FILE), read_table(path / TRUTH_FILE), manifest


@hydra.main(version_base="1.3", config_path="pkg://riskml.conf", config_name="generate")
@exit_on_error("riskml.generate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()

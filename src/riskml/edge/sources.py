"""The data sources of a training run: where a :class:`~riskml.training.datasets.Dataset` comes from.

* ``synthetic``: the data-set folder of ``riskml.generate`` (simulated on
  first use, reused after; :mod:`riskml.edge.datasets`) turned into snapshots
  by ``riskml.features``;
* ``tabular``: any CSV/parquet table (``riskml.training.tabular``).

Relative paths resolve against ``base``, the launch directory.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from riskml import __version__
from riskml.edge.batch import iter_batches
from riskml.edge.datasets import MANIFEST_FILE, panel_digest, panel_path, verify_dataset, write_dataset
from riskml.edge.files import read_table, sha256_file, table_files
from riskml.exceptions import ConfigError
from riskml.features import build_snapshots
from riskml.simulate import SimConfig
from riskml.simulate.config import check_name
from riskml.training.datasets import Dataset, from_snapshots
from riskml.training.tabular import from_frame

log = logging.getLogger(__name__)

#: The simulator settings a ``data=synthetic`` config names; the rest are the simulator's defaults.
SYNTHETIC_SETTINGS = ("n_borrowers", "n_months", "seed")


def synthetic_dir(data_cfg: Mapping[str, Any], base: Path) -> Path:
    """``<data_dir>/<name>``, a relative ``data_dir`` taken from ``base`` (the launch directory)."""
    root = Path(str(data_cfg["data_dir"]))
    return (root if root.is_absolute() else base / root) / check_name(data_cfg["name"])


def _manifest_setting(manifest: Mapping[str, Any], key: str) -> Any:
    for scope in (manifest, manifest.get("sim_config") or {}, manifest.get("config") or {}):
        if isinstance(scope, Mapping) and key in scope:
            return scope[key]
    return None


def manifest_mismatch(manifest: Mapping[str, Any], data_cfg: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings where a data set's manifest differs from the config: key -> (manifest, config)."""
    out = {}
    for key in SYNTHETIC_SETTINGS:
        have = _manifest_setting(manifest, key)
        if have is not None and data_cfg.get(key) is not None and have != data_cfg[key]:
            out[key] = (have, data_cfg[key])
    return out


def _generate(data_cfg: Mapping[str, Any], path: Path, client: Any = None) -> Path:
    """Simulate the data set a ``data=synthetic`` config names (the simulator's defaults otherwise)."""
    settings = {k: data_cfg[k] for k in SYNTHETIC_SETTINGS}
    sim = SimConfig.from_dict(settings)
    log.info("generating synthetic data set %s (%s)", path.name, ", ".join(f"{k}={v}" for k, v in settings.items()))
    out, _ = write_dataset(sim, path, name=path.name, config={"name": path.name, "data_dir": str(path.parent),
                                                                 **settings}, client=client)
    return out


def load_synthetic(data_cfg: Mapping[str, Any], *, target: str, horizon: int, base: Path, client: Any = None
                   ) -> Dataset:
    """The snapshots of a synthetic panel (generated first when it is not there).

    With a Dask ``client`` (issue #14) the data set is generated and its
    snapshots built on the cluster, and the snapshot partitions stay on the
    workers for ``lightgbm.dask`` (``Dataset.meta["partitions"]``).

    When the stored manifest's ``n_borrowers / n_months / seed`` differ from
    the config, ``data.on_mismatch`` says what happens: ``regenerate`` (write
    the data set again under the same name) or ``fail`` (a :class:`ConfigError`).
    """
    path = synthetic_dir(data_cfg, base)
    if not (path / MANIFEST_FILE).is_file():
        _generate(data_cfg, path, client)
    manifest = verify_dataset(path)
    diff = manifest_mismatch(manifest, data_cfg)
    try:
        SimConfig.from_manifest(manifest)
    except ConfigError as e:  # made by another riskml version whose simulator this one cannot replay
        diff["sim_config"] = (str(e), f"a simulator config riskml {__version__} can read")
    if diff:
        if data_cfg.get("on_mismatch", "regenerate") != "regenerate":
            key, (have, want) = next(iter(diff.items()))
            raise ConfigError(f"data.{key}", want, f"{have!r} as in {path / MANIFEST_FILE} (or "
                              "data.on_mismatch=regenerate, or another data.name)")
        log.warning("data set %s was made with %s; regenerating", path, diff)
        _generate(data_cfg, path, client)
        manifest = verify_dataset(path)
    options = {"target": target, "horizon": horizon, "min_history": int(data_cfg["min_history"]),
               "every": int(data_cfg["every"]), "windows": tuple(data_cfg["windows"])}
    parts = None
    if client is None:
        snaps = build_snapshots(read_table(panel_path(path)), **options)
    else:  # issue #14: built on the workers, one partition per panel part
        from riskml.edge.cluster_train import distributed_snapshots  # imports dask: the cluster path only

        snaps, parts = distributed_snapshots(client, path, **options)
    ds = from_snapshots(snaps, target=target, digest=panel_digest(path, manifest), source=str(path),
                        sim=SimConfig.from_manifest(manifest),
                        meta={"horizon": horizon, "windows": list(data_cfg["windows"]),
                              "n_months": _manifest_setting(manifest, "n_months")})
    if parts is not None:
        ds.meta["partitions"] = parts
    return ds


def load_tabular(data_cfg: Mapping[str, Any], *, base: Path) -> Dataset:
    """Read ``data.path`` (relative paths from ``base``, the launch directory) into a :class:`Dataset`."""
    raw = data_cfg.get("path")
    if raw in (None, "", "???"):
        raise ConfigError("data.path", raw, "the path of a CSV or parquet table")
    path = Path(str(raw))
    path = path if path.is_absolute() else base / path
    files = table_files(path)
    digest = hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest() if len(files) > 1 \
        else sha256_file(files[0])
    return from_frame(read_table(path), data_cfg, source=str(path), digest=digest)


def load_data(cfg: Mapping[str, Any], base: Path, client: Any = None) -> Dataset:
    """The data set a training config names (synthetic snapshots or a table); ``client``: on a Dask cluster."""
    if cfg["data"]["kind"] == "synthetic":
        return load_synthetic(cfg["data"], target=cfg["target"]["name"], horizon=int(cfg["target"]["horizon"]),
                              base=base, client=client)
    return load_tabular(cfg["data"], base=base)


def example_histories(source: str | Path, *, n_borrowers: int = 3) -> pd.DataFrame:
    """The first ``n_borrowers`` borrowers' rows of a panel (a data-set folder or a panel file/folder):
    the input example logged with a scoring system."""
    path = Path(source)
    path = panel_path(path) if (path / MANIFEST_FILE).is_file() else path
    first = next(iter_batches(table_files(path)[0], batch_rows=65_536))
    ids = pd.unique(first["borrower_id"])[:n_borrowers]
    return first[first["borrower_id"].isin(ids)].reset_index(drop=True)

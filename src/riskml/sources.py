"""The data sources of a training run: where a :class:`~riskml.training.datasets.Dataset` comes from.

* ``synthetic``: the data-set folder of ``riskml.generate`` (simulated on
  first use, reused after; :mod:`riskml.io.datasets`) turned into snapshots
  by ``riskml.features``;
* ``panel``: a lender's own monthly panel (the panel contract,
  ``riskml.schema.PANEL``; CSV or parquet, a file or a folder of parts, rows
  and months in any order), validated with the row checks ``riskml.predict``
  uses: bad rows and their whole borrower are left out with their reason;
* ``tabular``: any CSV/parquet table (``riskml.training.tabular``).

Relative paths resolve against ``base``, the launch directory.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from riskml import __version__
from riskml.batch import stream as batch
from riskml.batch.stream import iter_batches
from riskml.batch.bucket import prepare, split_rows
from riskml.batch.job import input_plan
from riskml.cluster.generate import parts_writer
from riskml.io.datasets import (MANIFEST_FILE, PANEL_FILE, load_dataset, panel_digest, panel_path, verify_dataset,
                               write_dataset)
from riskml.io.files import read_table, sha256_file, table_files
from riskml.exceptions import ConfigError
from riskml.factors import CAUSES
from riskml.features import build_snapshots, feature_specs
from riskml.features.windows import available
from riskml.io.lender import EPOCH, LenderSchema, is_text_months, load_schema
from riskml.schema import PANEL, SIGNAL_PREFIX, cast, row_problems, to_numpy
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
                                                                 **settings}, write_parts=parts_writer(client))
    return out


def load_synthetic(data_cfg: Mapping[str, Any], *, target: str, horizon: int, base: Path, client: Any = None
                   ) -> Dataset:
    """The snapshots of a synthetic panel (generated first when it is not there).

    With a Dask ``client`` the data set is generated and its
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
    else:  # built on the workers, one partition per panel part
        from riskml.cluster.train import distributed_snapshots  # imports dask: the cluster path only

        snaps, parts = distributed_snapshots(client, path, **options)
    ds = from_snapshots(snaps, target=target, digest=panel_digest(path, manifest), source=str(path),
                        sim=SimConfig.from_manifest(manifest),
                        meta={"horizon": horizon, "windows": list(data_cfg["windows"]),
                              "n_months": _manifest_setting(manifest, "n_months")})
    if parts is not None:
        ds.meta["partitions"] = parts
    return ds


def _resolve(raw: Any, base: Path, what: str) -> Path:
    if raw in (None, "", "???"):
        raise ConfigError("data.path", raw, what)
    path = Path(str(raw))
    return path if path.is_absolute() else base / path


def files_digest(files: list[Path]) -> str:
    """sha256 of one file, or of the concatenated sha256s of a folder's parts."""
    return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest() if len(files) > 1 \
        else sha256_file(files[0])


def load_tabular(data_cfg: Mapping[str, Any], *, base: Path) -> Dataset:
    """Read ``data.path`` (relative paths from ``base``, the launch directory) into a :class:`Dataset`."""
    path = _resolve(data_cfg.get("path"), base, "the path of a CSV or parquet table")
    return from_frame(read_table(path), data_cfg, source=str(path), digest=files_digest(table_files(path)))


# --- a lender's own panel ----------------------------------------------------------------------------

@dataclass
class PanelInput:
    """A validated panel: the rows of good borrowers, the rejected rows with their reason, and the counts.

    ``counts``: ``input_rows``, ``input_borrowers`` (distinct usable ids),
    ``used_rows``, ``used_borrowers``, ``rejected_rows``, ``rejected_borrowers``,
    ``rows_without_borrower_id``; input borrowers = used + rejected.
    """

    panel: pd.DataFrame
    rejects: pd.DataFrame
    counts: dict[str, int]
    files: list[Path]
    has_cause: bool
    month_text: bool = False  # a lender's months as YYYY-MM or dates (its schema's month column)


def check_panel_rows(rows: pa.Table, files: list[Path]) -> PanelInput:
    """Split coerced panel rows (``bucket.prepare`` output) into good borrowers' rows and rejects.

    The checks are ``riskml.predict``'s own (``bucket.split_rows``: missing or
    non-numeric values, ranges, unknown status, duplicate borrower-month), plus
    an unknown ``cause`` on record; months may come in any order (they are
    sorted). A borrower with one bad row is left out whole: its history would
    have a hole.
    """
    bid = to_numpy(rows.column("borrower_id")).astype(np.float64)
    no_id = ~np.isfinite(bid) | (bid != np.floor(bid))
    has_cause = "cause" in rows.column_names
    if has_cause:  # a cause the catalogue does not know reads as none in scoring; a training label must not
        raw_cause = rows.column("cause").to_numpy(zero_copy_only=False)
        unknown = np.asarray(raw_cause, dtype=np.float64) < -1 if raw_cause.dtype.kind in "iuf" else np.zeros(len(bid), bool)
    else:
        unknown = np.zeros(len(bid), dtype=bool)
    good, rej = split_rows(rows.filter(pa.array(~no_id)), as_of=None)
    names = np.array([str(f) for f in files], dtype=object)
    a = {c: to_numpy(rows.column(c)) for c in (batch.FILE, batch.ROW)}
    missing = pd.DataFrame({"borrower_id": pd.array([pd.NA] * int(no_id.sum()), dtype="Int64"),
                            "file": names[a[batch.FILE][no_id].astype(int)] if no_id.any() else [],
                            "row": a[batch.ROW][no_id].astype("int64"),
                            "reason": "borrower_id is missing or not a whole number"})
    rejects = pd.DataFrame({"borrower_id": pd.array(rej["borrower_id"].to_numpy(), dtype="Int64"),
                            "file": names[rej[batch.FILE].astype(int).to_numpy()] if len(rej) else [],
                            "row": rej[batch.ROW].astype("int64").to_numpy(),
                            "reason": rej["reason"].astype("string").to_numpy()})
    bad_cause = unknown & ~no_id
    if bad_cause.any():  # rows of an unknown cause: rejected with their reason, their borrowers left out
        cause_rej = pd.DataFrame({"borrower_id": pd.array(bid[bad_cause].astype(np.int64), dtype="Int64"),
                                  "file": names[a[batch.FILE][bad_cause].astype(int)],
                                  "row": a[batch.ROW][bad_cause].astype("int64"),
                                  "reason": f"cause not one of {list(CAUSES)} (or empty)"})
        rejects = pd.concat([rejects, cause_rej], ignore_index=True).drop_duplicates(["file", "row"])
        good = good[~good["borrower_id"].isin(bid[bad_cause])].reset_index(drop=True)
    rejects = pd.concat([rejects, missing], ignore_index=True).sort_values(["file", "row"], kind="stable")
    rejects = rejects.reset_index(drop=True)
    ids = bid[~no_id]
    bad_ids = np.unique(rejects["borrower_id"].dropna().to_numpy(dtype=np.int64))
    counts = {"input_rows": int(rows.num_rows), "input_borrowers": int(np.unique(ids).size),
              "used_rows": len(good), "used_borrowers": int(good["borrower_id"].nunique()),
              "rejected_rows": int(len(rejects)), "rejected_borrowers": int(len(bad_ids)),
              "rows_without_borrower_id": int(no_id.sum())}
    if counts["input_borrowers"] != counts["used_borrowers"] + counts["rejected_borrowers"]:
        raise AssertionError(f"panel: {counts} breaks input borrowers = used + rejected")  # invariant
    return PanelInput(good, rejects, counts, files, has_cause)


def read_panel(path: Path, schema: LenderSchema | None = None) -> PanelInput:
    """Read and validate a lender's panel (in riskml's schema, or in the lender's own with ``schema``);
    a file lacking a required column stops here, naming it."""
    if schema is None:
        files, columns = input_plan(path)
        plans = {f: columns for f in files}
    else:  # each file's own columns: a lender's optional cause column may be in some parts only
        files = table_files(path)
        plans = {f: schema.read_columns(batch.input_columns(f), file=f) for f in files}
        wanted = list(dict.fromkeys(c for cols in plans.values() for c in cols))
        plans = {f: wanted for f in files}
    tables, month_text, codes = [], False, []
    for i, f in enumerate(files):
        start = 0
        for b in batch.iter_batches(f, columns=plans[f]):  # Arrow batches, as riskml.predict reads them
            n = b.num_rows
            if schema is not None:
                month_text |= is_text_months(b.column(schema.month))
                rows, values = schema.unmapped(b)
                codes.append(pd.DataFrame({"file": str(f), "row": rows + start, "code": values}))
                b = schema.to_contract(b)
            b = b.append_column(batch.FILE, pa.array(np.full(n, i, dtype=np.int32))).append_column(
                batch.ROW, pa.array(np.arange(start, start + n, dtype=np.int64)))
            start += n
            tables.append(prepare(b))
    checked = check_panel_rows(batch.concat(tables), files)
    checked.month_text = month_text
    if codes and schema is not None:  # an unmapped state code: its reject names the code, not riskml's states
        checked.rejects = schema.name_codes(checked.rejects, pd.concat(codes, ignore_index=True))
    return checked


def load_panel(data_cfg: Mapping[str, Any], *, target: str, horizon: int, base: Path, client: Any = None
               ) -> Dataset:
    """The snapshots of a lender's panel at ``data.path``; the input counts and rejects ride on the Dataset."""
    schema = load_schema(data_cfg.get("schema"))  # read and checked before any data
    path = _resolve(data_cfg.get("path"), base, "the path of a panel: a CSV/parquet file or a folder of parts")
    checked = read_panel(path, schema)
    if checked.panel.empty:
        raise ConfigError("data.path", str(path), f"a panel with at least one valid borrower; all "
                          f"{checked.counts['input_borrowers']} were rejected (first reason: "
                          f"{checked.rejects['reason'].iloc[0] if len(checked.rejects) else 'none'})")
    check_length(checked.panel, min_history=int(data_cfg["min_history"]), horizon=horizon, target=target)
    log.info("panel %s: %s", path, ", ".join(f"{k}={v}" for k, v in checked.counts.items()))
    signals = dict(schema.signals) if schema is not None else None  # None: riskml's own contract
    snaps = build_snapshots(checked.panel, target=target, horizon=horizon, min_history=int(data_cfg["min_history"]),
                            every=int(data_cfg["every"]), windows=tuple(data_cfg["windows"]), signals=signals)
    snaps, explained = keep_available(snaps, set(checked.panel.columns), windows=tuple(data_cfg["windows"]),
                                      signals=signals)
    example = first_borrowers(checked.panel)
    meta = {"horizon": horizon, "windows": list(data_cfg["windows"]), "input": checked.counts,
            "has_cause": checked.has_cause, "factors_explained": explained}
    if schema is not None:
        meta["schema"], meta["signals"] = schema.to_dict(), signals
        example = schema_rows(example, schema, month_text=checked.month_text)
    ds = from_snapshots(snaps, target=target, digest=files_digest(checked.files), source=str(path), kind="panel",
                        meta={**meta, "example": example}, rejects=checked.rejects)
    if client is not None:  # read and checked here; the snapshots trained on by the workers
        from riskml.cluster.train import scatter_snapshots  # imports dask: the cluster path only

        ds.meta["partitions"] = scatter_snapshots(client, snaps)
    return ds


def keep_available(snaps: Any, columns: set[str], *, windows: tuple[int, ...], signals: dict | None = None
                   ) -> tuple[Any, list[str]]:
    """The snapshots with only the features whose behaviour columns the panel has (a lender's subset), and
    the documented factors left with a feature: the only ones a reason can name."""
    keep = [s.name for s in available(feature_specs(windows, signals), columns) if s.name in snaps.X.columns]
    if len(keep) < snaps.X.shape[1]:
        dropped = [c for c in snaps.X.columns if c not in set(keep)]
        log.info("panel: %d features left out (their columns are not in the panel), e.g. %s", len(dropped),
                 dropped[:5])
        snaps.X = snaps.X[keep]
        snaps.feature_factors = {f: snaps.feature_factors[f] for f in keep}
        snaps.feature_directions = {f: snaps.feature_directions[f] for f in keep}
    tagged = set(snaps.feature_factors.values())
    explained = [f for f in (*CAUSES, *sorted(tagged - set(CAUSES) - {"other"})) if f in tagged]
    log.info("panel: factors this model can explain: %s; without a feature (never a reason): %s", explained,
             [f for f in CAUSES if f not in explained])
    return snaps, explained


def schema_rows(panel: pd.DataFrame, schema: LenderSchema, *, month_text: bool) -> pd.DataFrame:
    """Checked panel rows back in the lender's names and codes (the logged input example of its model)."""
    out = pd.DataFrame({schema.id: panel["borrower_id"].to_numpy()})
    m = panel["month"].to_numpy(dtype=np.int64)
    out[schema.month] = [f"{EPOCH + y:04d}-{k + 1:02d}" for y, k in zip(m // 12, m % 12)] if month_text else m
    first = {s: codes[0] for s, codes in schema.states.items() if codes}
    out[schema.status_column] = panel["status"].astype(str).map(first).to_numpy()
    if schema.cause_column and "cause" in panel.columns:
        code = {f: c for c, f in reversed(list(schema.causes.items()))}
        out[schema.cause_column] = panel["cause"].astype(object).map(code).to_numpy()
    for col, contract in schema.renames.items():
        if contract in panel.columns:
            out[col] = panel[contract].to_numpy()
    for col in schema.signals:
        out[col] = panel[SIGNAL_PREFIX + col].to_numpy()
    return out


def check_length(panel: pd.DataFrame, *, min_history: int, horizon: int, target: str) -> None:
    """A snapshot needs ``min_history`` months up to it and ``horizon`` after: a one-line error naming what
    fits a panel this long."""
    n = int(panel["month"].max()) - int(panel["month"].min()) + 1
    if min_history + horizon > n:
        key = "target.recovery_horizon" if target == "recovery_6m" else "target.horizon"
        raise ConfigError("data.min_history", min_history,
                          f"data.min_history + {key} ({horizon}) at most the panel's {n} months: "
                          f"data.min_history <= {n - horizon}, or {key} <= {n - min_history}")


def first_borrowers(panel: pd.DataFrame, n_borrowers: int = 3) -> pd.DataFrame:
    """The rows of the first ``n_borrowers`` borrowers of a checked panel (rows that passed every check)."""
    ids = pd.unique(panel["borrower_id"])[:n_borrowers]
    return panel[panel["borrower_id"].isin(ids)].reset_index(drop=True)


def panel_record(ds: Dataset, *, fidelity_measured: bool) -> tuple[dict[str, float], dict[str, str]]:
    """What a run on a lender's panel records beyond the usual: input counts as metrics, and tags saying
    what could not be measured (no oracle on real data; fidelity only against a recorded cause)."""
    counts = ds.meta.get("input", {})
    metrics = {f"panel_{k}": float(v) for k, v in counts.items()}
    metrics["snapshot_borrowers"] = float(ds.meta.get("n_borrowers", 0))
    tags = {"riskml.oracle": "not available: a lender's own panel has no simulator to replay (no oracle AUC)"}
    if "factors_explained" in ds.meta:  # a factor without a feature is never a reason
        tags["riskml.factors_explained"] = ",".join(ds.meta["factors_explained"]) or "none"
    if fidelity_measured:
        tags["riskml.fidelity"] = "measured against the cause the lender recorded"
    elif not ds.meta.get("has_cause"):
        tags["riskml.fidelity"] = "not measured: the panel has no cause column"
    else:
        tags["riskml.fidelity"] = "not measured: no adverse test snapshot has a recorded cause"
    return metrics, tags


def load_data(cfg: Mapping[str, Any], base: Path, client: Any = None) -> Dataset:
    """The data set a training config names (synthetic snapshots, a lender's panel, or a table);
    ``client``: build synthetic snapshots on a Dask cluster."""
    kind = cfg["data"]["kind"]
    if kind == "synthetic":
        return load_synthetic(cfg["data"], target=cfg["target"]["name"], horizon=int(cfg["target"]["horizon"]),
                              base=base, client=client)
    if kind == "panel":
        return load_panel(cfg["data"], target=cfg["target"]["name"], horizon=int(cfg["target"]["horizon"]), base=base,
                          client=client)
    return load_tabular(cfg["data"], base=base)


def example_histories(source: str | Path, *, n_borrowers: int = 3) -> pd.DataFrame:
    """The first ``n_borrowers`` borrowers' rows of a panel (a data-set folder or a panel file/folder):
    the input example logged with a scoring system."""
    path = Path(source)
    path = panel_path(path) if (path / MANIFEST_FILE).is_file() else path
    first = next(iter_batches(table_files(path)[0], batch_rows=65_536))
    first = first.to_pandas() if hasattr(first, "to_pandas") else first
    ids = pd.unique(first["borrower_id"])[:n_borrowers]
    return first[first["borrower_id"].isin(ids)].reset_index(drop=True)


def example_rows(ds: Dataset) -> pd.DataFrame:
    """The logged input example: a lender's panel's first rows that passed its checks (not its raw rows)."""
    example = ds.meta.get("example")
    return example if example is not None else example_histories(ds.source)

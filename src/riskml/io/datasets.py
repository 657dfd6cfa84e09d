"""The data-set folder of ``riskml.generate``: ``panel.parquet`` (observable
behaviour and the platform's decisions), ``truth.parquet`` (hidden borrower
types, kept apart so that no feature can read them) and ``manifest.json``
(config, seed, version, counts, sha256 of each file).

On a Dask cluster (``cluster=local|address``) the panel and truth are
partitioned parquet data sets instead, ``panel/part-00000.parquet ...`` and
``truth/part-*.parquet`` (one part per simulated chunk, whole borrowers in
ascending id ranges; :mod:`riskml.cluster.generate`), with the same rows.

The folder appears under its final name only when complete: it is written
as a hidden sibling and renamed into place, replacing an earlier data set
of the same name only then.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from riskml import __version__
from riskml.io.files import ParquetSink, atomic_dir, check_output_path, check_own_folder, read_json, read_table, sha256_file, write_json
from riskml.exceptions import InputError
from riskml.simulate import SimConfig
from riskml.simulate.run import iter_chunk_columns, panel_frame, panel_table
from riskml.simulate.summary import Summary

PANEL_FILE, TRUTH_FILE, MANIFEST_FILE = "panel.parquet", "truth.parquet", "manifest.json"
PANEL_PARTS, TRUTH_PARTS = "panel", "truth"  # the folders of parts a cluster writes instead
# low-cardinality panel columns: dictionary-encode these only (4x faster writes, smaller files)
DICT_COLUMNS = ["month", "status", "cause", "fraud_flag", "maintenance", "policy_index", "days_past_due",
                 "other_lenders", "recent_applications", "rapid_draws", "credit_limit"]


def check_dataset_place(out: str | os.PathLike, *, key: str = "name") -> Path:
    """Fail before any simulation when ``out`` cannot take a data set: it is a file, a folder holding
    anything but an earlier riskml data set (which a new one replaces whole), or under a folder riskml
    may not write. Returns the absolute path."""
    out = check_own_folder(out, key=key, what="the data set", manifest=MANIFEST_FILE,
                           claim=("created_by", "riskml.generate"), writer="riskml.generate")
    return check_output_path(out.with_name(f".{out.name}.probe"), key=key).with_name(out.name)


def write_dataset(sim: SimConfig, out: str | os.PathLike, *, name: str, config: Mapping[str, Any],
                  write_parts: Callable[[SimConfig, Path], tuple[dict[str, Any], Summary]] | None = None
                  ) -> tuple[Path, Summary]:
    """Simulate ``sim`` into the data-set folder ``out``; return it and the run's summary.

    ``config`` is recorded in the manifest as given (the entry point's resolved config).
    ``write_parts`` (``riskml.cluster.generate.parts_writer(client)``) simulates the chunks
    elsewhere and writes them as parts into the folder it is given; its manifest entries
    and summary come back.
    """
    out = Path(out)
    head = {"name": name, "created_by": "riskml.generate", "package_version": __version__, "seed": sim.seed,
            "scenario": sim.scenario, "n_months": sim.n_months, "config": dict(config), "sim_config": sim.to_dict()}
    # the folder replaces an earlier data set of the same name only once it is complete, manifest last
    with atomic_dir(out) as tmp:
        if write_parts is not None:  # the same chunks simulated on a cluster, one part each
            entries, summary = write_parts(sim, tmp)
        else:
            entries, summary = _write_files(sim, tmp)
        write_json({**head, **summary.to_dict(), **entries}, tmp / MANIFEST_FILE)
    return out, summary


def _write_files(sim: SimConfig, tmp: Path) -> tuple[dict[str, Any], Summary]:
    """Simulate ``sim`` chunk by chunk into ``tmp``'s panel and truth files; their manifest entries and
    the run's summary."""
    summary = Summary()
    panel_sink = truth_sink = None

    def write(cols: dict[str, np.ndarray], truth: pd.DataFrame) -> None:
        # a row group per block: accounts open month by month, so a chunk's rows are no whole number of
        # row groups, and the file's bytes must not depend on the chunk size
        table = panel_table(cols, schema)
        block = cols["borrower_id"] // sim.block_size
        edges = np.r_[0, np.flatnonzero(block[1:] != block[:-1]) + 1, len(block)]
        for lo, hi in zip(edges[:-1], edges[1:]):
            panel_sink.write(table.slice(int(lo), int(hi - lo)))
        truth_sink.write(truth)

    # one thread writes chunk i (parquet encoding and zstd release the GIL) while chunk i+1 is
    # simulated: the two halves of the job overlap on two cores; one chunk waits at most
    with ThreadPoolExecutor(1) as writer:
        pending = None
        for cols, truth in iter_chunk_columns(sim):
            if panel_sink is None:  # the schema of the frames (pandas metadata included), then Arrow straight
                schema = pa.Schema.from_pandas(panel_frame({c: v[:0] for c, v in cols.items()}),
                                               preserve_index=False)
                panel_sink = ParquetSink(tmp / PANEL_FILE, schema, row_group_size=sim.block_size * sim.n_months,
                                         use_dictionary=DICT_COLUMNS)
                truth_sink = ParquetSink(tmp / TRUTH_FILE, pa.Schema.from_pandas(truth, preserve_index=False),
                                         row_group_size=sim.block_size)
            summary.add(cols)
            if pending is not None:
                pending.result()  # in order, and an error of the writer stops the job here
            pending = writer.submit(write, cols, truth)
        if pending is not None:
            pending.result()
    panel_sink.close()
    truth_sink.close()
    entries = {"row_counts": {PANEL_FILE: panel_sink.rows, TRUTH_FILE: truth_sink.rows},
               "files": {f: {"sha256": sink.sha256, "bytes": (tmp / f).stat().st_size}
                         for f, sink in ((PANEL_FILE, panel_sink), (TRUTH_FILE, truth_sink))}}
    return entries, summary


def panel_path(path: str | os.PathLike) -> Path:
    """The panel of a data-set folder: ``panel.parquet``, or the folder of parts a cluster wrote."""
    path = Path(path)
    return path / PANEL_FILE if (path / PANEL_FILE).is_file() or not (path / PANEL_PARTS).is_dir() \
        else path / PANEL_PARTS


def _truth_path(path: Path) -> Path:
    return path / TRUTH_PARTS if (path / TRUTH_PARTS).is_dir() and not (path / TRUTH_FILE).is_file() \
        else path / TRUTH_FILE


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The ``manifest.json`` of a data-set folder."""
    return read_json(Path(path) / MANIFEST_FILE)


def verify_dataset(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a data-set folder whose every file matches the sha256 it records (an
    :class:`InputError` names the file otherwise)."""
    path = Path(path)
    manifest = read_manifest(path)
    for f, meta in manifest.get("files", {}).items():
        if sha256_file(path / f) != meta["sha256"]:
            raise InputError(f"{path / f}: sha256 does not match {MANIFEST_FILE}; the file changed after "
                             "generation")
    return manifest


def load_dataset(path: str | os.PathLike, *, verify: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read a generated data set: ``(panel, truth, manifest)``.

    With ``verify`` the files' sha256 must match the manifest (an
    :class:`InputError` names the file otherwise).
    """
    path = Path(path)
    manifest = verify_dataset(path) if verify else read_manifest(path)
    return read_table(panel_path(path)), read_table(_truth_path(path)), manifest


def panel_digest(path: str | os.PathLike, manifest: Mapping[str, Any]) -> str:
    """The panel's sha256 as the manifest recorded it (computed when it did not).

    A panel of parts: the sha256 of its parts' sha256 in name order (as a
    ``data=tabular`` folder of parts is digested).
    """
    files = manifest.get("files") or {}
    if manifest.get("layout") == "parts":
        parts = sorted(f for f in files if f.startswith(PANEL_PARTS + "/"))
        return hashlib.sha256("".join(files[f]["sha256"] for f in parts).encode()).hexdigest()
    meta = files.get(PANEL_FILE) or {}
    return str(meta.get("sha256") or sha256_file(Path(path) / PANEL_FILE))

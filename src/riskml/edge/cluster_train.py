"""``riskml.train`` on a Dask cluster: snapshots built on the workers, one partition per panel part.

A panel part holds whole borrowers (``riskml.generate`` on a cluster writes
one per simulated chunk; a single-file panel is cut into partitions of whole
borrowers at its row groups), and features never read another borrower, so
:func:`riskml.features.build_snapshots` on each part gives exactly the rows
the whole panel would: no shuffle. The snapshot partitions stay on the
workers for ``lightgbm.dask`` (:mod:`riskml.training.distributed`); a copy is
gathered into the :class:`~riskml.training.datasets.Dataset` the client
evaluates, reports and explains with, as a single-machine run does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from riskml.edge.datasets import panel_path
from riskml.edge.files import read_table, table_files
from riskml.exceptions import InputError
from riskml.features import Snapshots, build_snapshots
from riskml.features.windows import feature_specs
from riskml.training.distributed import LABEL, Partitions

_CAUSE = "_cause"


def panel_pieces(path: Path) -> list[tuple[str, list[int] | None]]:
    """The partitions of a data set's panel: ``(file, row groups or None for the whole file)``.

    A folder of parts: one per part. One parquet file: its row groups, grouped
    so that no borrower spans two pieces (a cut lies where the next group
    starts with a new borrower).
    """
    panel = panel_path(path)
    files = table_files(panel)
    if len(files) > 1 or files[0].suffix != ".parquet":
        return [(str(f), None) for f in files]
    meta = pq.ParquetFile(files[0]).metadata
    col = meta.schema.to_arrow_schema().get_field_index("borrower_id")
    pieces, current, last = [], [], None
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return [(str(files[0]), None)]
        if current and stats.min != last:
            pieces.append((str(files[0]), current))
            current = []
        current.append(g)
        last = stats.max
    return pieces + ([(str(files[0]), current)] if current else [])


def snapshot_part(piece: tuple[str, list[int] | None], options: Mapping[str, Any]) -> pd.DataFrame:
    """On a worker: one piece of the panel -> its snapshots (keys, features, ``_y``, ``_cause``)."""
    file, groups = piece
    try:
        panel = read_table(file) if groups is None else pq.ParquetFile(file).read_row_groups(groups).to_pandas()
    except OSError as e:  # a worker that does not see the client's file system
        raise InputError(f"{file}: cannot read on a Dask worker ({e}); workers must see the data set's folder") \
            from None
    snaps = build_snapshots(panel, **options)
    frame = pd.concat([snaps.keys, snaps.X], axis=1)
    frame[LABEL] = np.asarray(snaps.y, dtype=np.int64)
    if snaps.cause is not None:
        frame[_CAUSE] = snaps.cause.to_numpy()
    return frame


def distributed_snapshots(client: Any, path: Path, *, target: str, horizon: int, min_history: int, every: int,
                          windows: tuple[int, ...]) -> tuple[Snapshots, Partitions]:
    """Build the snapshots of the data set at ``path`` on the cluster.

    Returns the gathered :class:`Snapshots` (rows in borrower then month
    order, the same as ``build_snapshots`` on the whole panel) and the
    :class:`Partitions` that stay on the workers.
    """
    options = {"target": target, "horizon": horizon, "min_history": min_history, "every": every,
               "windows": tuple(windows)}
    pieces = panel_pieces(path)
    futures = client.map(snapshot_part, pieces, options=options, pure=False)
    frames = client.gather(futures)
    offsets = np.r_[0, np.cumsum([len(f) for f in frames])].astype(np.int64)
    whole = pd.concat(frames, ignore_index=True)
    specs = feature_specs(tuple(windows))  # each feature's factor and direction, as on every worker
    features = [s.name for s in specs]
    snaps = Snapshots(keys=whole[["borrower_id", "month", "status"]], X=whole[features],
                      y=whole[LABEL].to_numpy(dtype=np.int8),
                      cause=whole[_CAUSE].rename("cause") if _CAUSE in whole else None,
                      feature_factors={s.name: s.factor for s in specs},
                      feature_directions={s.name: s.direction for s in specs})
    return snaps, Partitions(client, futures, offsets)

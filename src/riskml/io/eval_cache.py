"""The evaluation's simulations, computed once: the oracle's probabilities, the fresh scenario
portfolios a training run measures its model against, and the information
values of its training sample.

They depend only on what they are computed from (the simulator's config, the
snapshot keys, the horizon, the paths, the seed; the sample's rows), never on
the model, so one run's three models share them (the adverse and status models
ask the oracle the same question, on the same rows), and a rerun on the same data set finds them on disk in
``<data set>/.eval_cache/`` instead of simulating them again. A file's name is
the hash of everything it was computed from, so a changed setting or data set
never reads a stale answer; a file that cannot be read is computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from riskml.io.files import write_parquet

log = logging.getLogger(__name__)

#: the folder inside a data set's folder that holds its cached evaluation results
CACHE_DIR = ".eval_cache"


def key_of(parts: Mapping[str, Any]) -> str:
    """A stable hash of ``parts``: JSON values as they are, frames by their values."""
    h = hashlib.sha256()
    for name in sorted(parts):
        value = parts[name]
        h.update(name.encode())
        if isinstance(value, pd.DataFrame):  # values by content, whatever their dtype (categories too)
            h.update(json.dumps([str(c) for c in value.columns]).encode())
            h.update(pd.util.hash_pandas_object(value, index=False).to_numpy().tobytes())
        else:
            h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


class EvalCache:
    """Frames computed from a key: in memory for this process, and in ``folder`` when one is given."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, pd.DataFrame] = {}
        self._latest: tuple[str, Any] | None = None

    def latest(self, kind: str, parts: Mapping[str, Any], make: Callable[[], Any]) -> Any:
        """``make()`` for ``parts``, kept in memory until another key is asked for.

        For large objects that two steps in a row need (a scenario portfolio's snapshots: the
        what-if's and the fidelity's), where keeping every one would hold gigabytes.
        """
        name = f"{kind}-{key_of(parts)}"
        if self._latest is None or self._latest[0] != name:
            self._latest = None  # the old object goes before the new one is built
            self._latest = (name, make())
        return self._latest[1]

    def frame(self, kind: str, parts: Mapping[str, Any], make: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The frame ``make()`` returns for ``parts``, computed at most once per key."""
        name = f"{kind}-{key_of(parts)}"
        if name in self._memory:
            return self._memory[name]
        df = self._read(name)
        if df is None:
            df = make()
            self._write(name, df)
        self._memory[name] = df
        return df

    def _path(self, name: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{name}.parquet"

    def _read(self, name: str) -> pd.DataFrame | None:
        path = self._path(name)
        if path is None or not path.is_file():
            return None
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as e:  # a damaged file is computed again, not trusted
            log.warning("evaluation cache %s unreadable (%s); computing it again", path, e)
            return None
        log.info("evaluation cache: %s reused", path.name)
        return df

    def _write(self, name: str, df: pd.DataFrame) -> None:
        path = self._path(name)
        if path is None:
            return
        try:
            write_parquet(df, path)
        except OSError as e:  # a read-only data folder: the run goes on without a cache
            log.warning("evaluation cache %s not written (%s)", path, e)

"""Where the work runs: this process, a Dask ``LocalCluster``, or a running Dask scheduler.

The ``cluster`` setting that ``riskml.generate``, ``riskml.train`` and
``riskml.predict`` share (``conf/groups/cluster/``):

* ``kind: none`` (the default): today's single-machine path, unchanged;
* ``kind: local``: a ``LocalCluster`` of ``workers`` processes bound to
  127.0.0.1 (dashboard off, or on a free port), started and stopped here;
* ``kind: address``: the ``address`` of a running scheduler (``tcp://host:8786``);
  its workers need the same riskml version and must see the paths a job names.

This module alone starts, connects to and closes clusters. Starting a
``LocalCluster`` spawns worker processes that import the caller's main
module, so a script that calls :func:`connect` needs an
``if __name__ == "__main__":`` guard (the entry points have one).

Example:
    >>> with connect({"kind": "none"}) as client:
    ...     client is None
    True
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from riskml import __version__
from riskml.exceptions import ConfigError, whole_number

log = logging.getLogger(__name__)

KINDS = ("none", "local", "address")
_MEMORY = re.compile(r"^(auto|\d+(\.\d+)?\s*([KMGT]i?B)?)$", re.IGNORECASE)
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/]+$")


@dataclass(frozen=True)
class ClusterSpec:
    """A validated ``cluster`` setting."""

    kind: str = "none"
    workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    dashboard: bool = False
    address: str | None = None


def check_cluster(cfg: Mapping[str, Any] | None, *, key: str = "cluster") -> ClusterSpec:
    """Validate a ``cluster`` block before any work (a :class:`ConfigError` names the key otherwise)."""
    cfg = dict(cfg or {})
    kind = cfg.get("kind", "none")
    if kind not in KINDS:
        raise ConfigError(f"{key}.kind", kind, f"one of {list(KINDS)} (e.g. cluster=local cluster.workers=2)")
    if kind == "none":
        return ClusterSpec()
    if kind == "address":
        address = cfg.get("address")
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise ConfigError(f"{key}.address", address, "the address of a running Dask scheduler, e.g. "
                              "tcp://10.0.0.5:8786")
        return ClusterSpec(kind=kind, address=address)
    memory = str(cfg.get("memory_limit", "auto"))
    if not _MEMORY.match(memory):
        raise ConfigError(f"{key}.memory_limit", memory, "auto or a size such as 4GiB")
    dashboard = cfg.get("dashboard", False)
    if not isinstance(dashboard, bool):
        raise ConfigError(f"{key}.dashboard", dashboard, "true or false")
    return ClusterSpec(kind=kind, workers=whole_number(f"{key}.workers", cfg.get("workers", 2), 1),
                       threads_per_worker=whole_number(f"{key}.threads_per_worker", cfg.get("threads_per_worker", 1), 1),
                       memory_limit=memory, dashboard=dashboard)


@contextlib.contextmanager
def connect(cfg: Mapping[str, Any] | ClusterSpec | None, *, key: str = "cluster") -> Iterator[Any]:
    """Yield a ``dask.distributed.Client`` for the setting (``None`` for ``kind: none``); close what was opened.

    A cluster started here is stopped on the way out, also after an error.
    Connecting to a scheduler checks that its workers run this riskml version.
    """
    spec = cfg if isinstance(cfg, ClusterSpec) else check_cluster(cfg, key=key)
    if spec.kind == "none":
        yield None
        return
    # imported here: distributed costs ~1 s of import that the single-machine path never pays
    from dask.distributed import Client, LocalCluster

    cluster = None
    if spec.kind == "local":
        # The scheduler's HTTP server starts even without a dashboard, on 8787 unless told otherwise
        # (dashboard_address=None still binds it): always a free port of 127.0.0.1, the dashboard on it or not.
        cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=spec.threads_per_worker,
                               processes=True, host="127.0.0.1", scheduler_port=0,
                               dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": spec.dashboard},
                               memory_limit=spec.memory_limit, silence_logs=logging.WARNING)
        client = Client(cluster)
    else:
        try:
            client = Client(spec.address, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise ConfigError(f"{key}.address", spec.address, f"a running Dask scheduler ({type(e).__name__}: "
                              f"{e})") from None
    try:
        if spec.dashboard and client.dashboard_link:
            log.warning("Dask dashboard: %s", client.dashboard_link)
        if spec.kind == "address":
            _check_versions(client, key)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _version() -> str:
    return __version__


def _check_versions(client: Any, key: str) -> None:
    """Fail when the scheduler has no worker, or a worker runs another riskml version."""
    versions = client.run(_version)
    if not versions:
        raise ConfigError(f"{key}.address", str(client.scheduler.address), "a scheduler with at least one worker")
    other = {w: v for w, v in versions.items() if v != __version__}
    if other:
        raise ConfigError(f"{key}.address", str(client.scheduler.address),
                          f"workers running riskml {__version__}; found {other}")


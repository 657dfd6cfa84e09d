"""Snapshot build speed and memory on a 1,000,000-borrower x 24-month panel.

Builds the panel with ``riskml.simulate.simulate`` (``--source sim``, the
default) or a random panel of the same shape with numpy (``--source random``;
the speed of the feature code hardly depends on the values). Reports seconds,
snapshot rows per second, CPU time split into user and system (system time is
mostly first-touch page faults of the output) and peak memory, next to numpy
references measured in the same run: one ``np.cumsum`` over the same
(borrowers x months) float32 grid, and writing a fresh array of the size of X.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_features.py [--borrowers N] [--months T]

Recorded 2026-11-23 on the 2-core dev machine, shared with other jobs
(load average 3.5-5), simulated panel, target status_3m, H=3, min_history=6:

    panel: 24,000,000 rows x 22 columns (sim), 1,648 MiB, made in 14.4 s
    numpy reference: one np.cumsum over the 1,000,000 x 24 float32 grid: 0.077 s
    iter_snapshots: 14,986,655 rows x 64 features in 5.26 s = 2.85 M rows/s (69x the cumsum);
        CPU user 5.23 s, system 0.02 s; peak traced memory 523 MiB (chunks not kept)
    build_snapshots: 14,986,655 rows x 64 features in 7.46 s = 2.01 M rows/s (97x the cumsum);
        CPU user 5.27 s, system 1.56 s; X is 3,659 MiB float32; process peak RSS 6,894 MiB
    numpy reference: writing a fresh 14,986,655 x 64 float32 array (the size of X): 8.94 s

One core does the work. Wall times swing with the machine's load: a run at
load 6-7 took 11.6 s (iter) and 24.8 s (build; 7.3 s of it system time
faulting the 3.6 GiB output in, when np.ones of that size took 7.0 s).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

from riskml.factors import CAUSES
from riskml.features import build_snapshots, iter_snapshots
from riskml.schema import BEHAVIOUR, STATUSES


def random_panel(n: int, t: int, seed: int = 0) -> pd.DataFrame:
    """A regular sorted panel of ``n`` borrowers x ``t`` months with random values."""
    rng = np.random.default_rng(seed)
    rows = n * t
    data: dict[str, object] = {"borrower_id": np.repeat(np.arange(n, dtype=np.int64), t),
                               "month": np.tile(np.arange(t, dtype=np.int32), n)}
    for c in BEHAVIOUR:
        hi = c.hi if c.hi is not None else 1000.0
        v = rng.random(rows, dtype=np.float32) * np.float32(min(hi, 1000.0))
        data[c.name] = (v * (v < hi * 0.2)).astype(c.dtype) if c.dtype.startswith("int") else v
    status = np.minimum(rng.geometric(0.9, rows) - 1, 2).astype(np.int8)
    cause = np.where(status > 0, rng.integers(0, len(CAUSES), rows, dtype=np.int8), np.int8(-1))
    data["status"] = pd.Categorical.from_codes(status, categories=list(STATUSES))
    data["cause"] = pd.Categorical.from_codes(cause, categories=list(CAUSES))
    return pd.DataFrame(data)


def cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--borrowers", type=int, default=1_000_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--source", choices=["random", "sim"], default="sim")
    ap.add_argument("--mode", choices=["build", "iter", "both"], default="both")
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.source == "sim":
        from riskml.simulate import SimConfig, simulate
        panel = simulate(SimConfig(n_borrowers=a.borrowers, n_months=a.months, seed=0)).panel
    else:
        panel = random_panel(a.borrowers, a.months)
    print(f"panel: {len(panel):,} rows x {panel.shape[1]} columns ({a.source}), "
          f"{panel.memory_usage(deep=False).sum() / 2**20:,.0f} MiB, made in {time.perf_counter() - t0:.1f} s")

    grid = panel["balance"].to_numpy().reshape(a.borrowers, a.months)
    t0 = time.perf_counter()
    np.cumsum(grid, axis=1)
    ref = time.perf_counter() - t0
    print(f"numpy reference: one np.cumsum over the {a.borrowers:,} x {a.months} float32 grid: {ref:.3f} s")
    rss0 = maxrss_mib()
    print(f"process peak RSS before snapshots: {rss0:,.0f} MiB")

    if a.mode in ("iter", "both"):
        tracemalloc.start()
        c0, t0 = cpu(), time.perf_counter()
        n = 0
        for part in iter_snapshots(panel, target="status_3m"):
            n += len(part)
        dt, c1 = time.perf_counter() - t0, cpu()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"iter_snapshots: {n:,} rows x {part.X.shape[1]} features in {dt:.2f} s = {n / dt / 1e6:.2f} M rows/s "
              f"({dt / ref:.0f}x the cumsum); CPU user {c1[0] - c0[0]:.2f} s, system {c1[1] - c0[1]:.2f} s; "
              f"peak traced memory {peak:,.0f} MiB (chunks not kept)")
    if a.mode in ("build", "both"):
        tracemalloc.start()
        c0, t0 = cpu(), time.perf_counter()
        s = build_snapshots(panel, target="status_3m")
        dt, c1 = time.perf_counter() - t0, cpu()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        out = s.X.memory_usage(deep=False).sum() / 2**20
        print(f"build_snapshots: {len(s):,} rows x {s.X.shape[1]} features in {dt:.2f} s = "
              f"{len(s) / dt / 1e6:.2f} M rows/s ({dt / ref:.0f}x the cumsum); CPU user {c1[0] - c0[0]:.2f} s, "
              f"system {c1[1] - c0[1]:.2f} s; X is {out:,.0f} MiB float32 (mapped, not traced); "
              f"peak traced memory besides X {peak:,.0f} MiB; "
              f"process peak RSS {maxrss_mib():,.0f} MiB")
        shape = s.X.shape
        del s
        t0 = time.perf_counter()
        np.ones(shape, dtype=np.float32)
        print(f"numpy reference: writing a fresh {shape[0]:,} x {shape[1]} float32 array (the size of X): "
              f"{time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()

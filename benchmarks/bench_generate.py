"""Benchmark of the simulator: borrower-months per second and peak memory.

Runs, in one process:
1. the floor: the time numpy takes merely to draw the random numbers the
   simulation uses (same count and dtypes, one stream, one core);
2. simulation only: ``riskml.simulate.iter_chunks`` with the given workers
   (frames built, nothing written);
3. the full entry point ``riskml.generate.run`` writing parquet to a temp dir.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_generate.py
    .venv/bin/python benchmarks/bench_generate.py --n-borrowers 200000 --skip-write
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time

import numpy as np
from omegaconf import OmegaConf

from riskml.simulate import SimConfig, iter_chunks
from riskml.simulate import behaviour as bh


def peak_mib() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its largest finished child."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children (the workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def floor(n: int, months: int, chunk: int) -> float:
    """Seconds numpy takes to draw the simulation's random numbers (one stream)."""
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        for _ in range(months):
            rng.random((bh.N_UNIFORM, m), dtype=np.float32)
            rng.standard_normal((bh.N_NORMAL, m), dtype=np.float32)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-borrowers", type=int, default=1_000_000)
    ap.add_argument("--n-months", type=int, default=36)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--chunk-borrowers", type=int, default=32_768)
    ap.add_argument("--skip-write", action="store_true", help="skip the full run that writes parquet")
    args = ap.parse_args()
    n, T = args.n_borrowers, args.n_months
    rows = n * T
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"workload: {n:,} borrowers x {T} months = {rows:,} borrower-months, workers={args.workers}, "
          f"chunk={args.chunk_borrowers:,}")

    print(f"load average before: {os.getloadavg()[0]:.1f} (other processes share these cores)")
    t_floor = floor(n, T, args.chunk_borrowers)
    print(f"floor (numpy draws {bh.N_UNIFORM} uniforms + {bh.N_NORMAL} normals per borrower-month, 1 core): "
          f"{t_floor:.1f} s = {rows / t_floor / 1e6:.2f} M borrower-months/s")

    cfg = SimConfig(n_borrowers=n, n_months=T, workers=args.workers, chunk_borrowers=args.chunk_borrowers)
    t, c = time.perf_counter(), cpu_s()
    got = 0
    for panel, _ in iter_chunks(cfg, progress=False):
        got += len(panel)
    t_sim, c_sim = time.perf_counter() - t, cpu_s() - c
    assert got == rows, (got, rows)
    me, kids = peak_mib()
    print(f"simulate (iter_chunks, frames built): {t_sim:.1f} s = {rows / t_sim / 1e6:.2f} M borrower-months/s; "
          f"{c_sim:.1f} CPU s = {rows / c_sim * 2 / 1e6:.2f} M/s per 2 busy cores; "
          f"peak RSS main {me:.0f} MiB, largest worker {kids:.0f} MiB")

    if not args.skip_write:
        from riskml.generate import run

        with tempfile.TemporaryDirectory() as tmp:
            conf = OmegaConf.load(os.path.join(os.path.dirname(__file__), "..", "conf", "generate.yaml"))
            scen = OmegaConf.load(os.path.join(os.path.dirname(__file__), "..", "conf", "scenario", "baseline.yaml"))
            conf.pop("defaults")
            conf.scenario = scen
            conf.merge_with({"name": "bench", "data_dir": tmp, "n_borrowers": n, "n_months": T,
                             "workers": args.workers, "chunk_borrowers": args.chunk_borrowers})
            t, c = time.perf_counter(), cpu_s()
            out = run(conf)
            t_run, c_run = time.perf_counter() - t, cpu_s() - c
            size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
        me, kids = peak_mib()
        print(f"generate.run (simulate + parquet + sha256): {t_run:.1f} s = {rows / t_run / 1e6:.2f} M "
              f"borrower-months/s; {c_run:.1f} CPU s = {rows / c_run * 2 / 1e6:.2f} M/s per 2 busy cores; "
              f"{size:.0f} MiB on disk; peak RSS main {me:.0f} MiB, largest worker {kids:.0f} MiB")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

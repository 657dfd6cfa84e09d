"""Benchmark of the nightly batch as it runs: ``python -m riskml.predict`` in a fresh process.

In one run, on the default scoring system (trained here, cached in the work folder):
1. a simulated portfolio of ``--borrowers`` borrowers x 24 months (cached) and
   its first 100k and 400k borrowers as their own inputs;
2. for each input size, interleaved: ``python -m riskml.predict`` as a
   subprocess, timed from its start to its exit (imports, opening and
   verifying the system, numba's cache, reading, validating, features,
   scoring, reasons, what-ifs, writing), and LightGBM's plain
   ``Booster.predict`` of the adverse model on a feature matrix of as many
   rows (the 100k input's snapshots, float32, C order, repeated to the size:
   LightGBM's rate does not depend on which rows they are), in this process,
   best of ``--rounds``;
3. the fixed costs of a fresh process: ``python -m riskml.predict`` on 1,000
   borrowers, and ``python -X importtime``'s heaviest imports of ``python -m riskml.predict --help``.

Target: at 1,000,000 borrowers, the fresh process >= 1/3 of plain predict's rows/s (wall; the ratio
per CPU-second is printed beside it: on a shared machine the two runs see different loads).

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_batch.py [--borrowers 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from hydra import compose, initialize_config_module

ROOT = Path(__file__).resolve().parent.parent


def prepare(work: Path, borrowers: int, sizes: list[int]) -> tuple[dict[int, Path], Path]:
    """The portfolio and its slices (first N borrowers), and the trained system's folder."""
    from riskml import generate, train
    name = f"portfolio_{borrowers}"
    if not (work / "data" / name / "manifest.json").exists():
        with initialize_config_module("riskml.conf", version_base="1.3"):
            cfg = compose("generate", overrides=[f"name={name}", f"data_dir={work}/data", "seed=11",
                                                 f"n_borrowers={borrowers}", "n_months=24"])
        generate.run(cfg)
    full = work / "data" / name / "panel.parquet"
    inputs = {}
    for n in sizes:
        path = full if n >= borrowers else work / f"first_{n}.parquet"
        if not path.exists():
            t = pq.read_table(full)
            pq.write_table(t.filter(pd.Series(t["borrower_id"].to_numpy() < n).to_numpy()), path)
        inputs[n] = path
    model_dir = work / "models" / "default"
    if not (model_dir / "system.json").exists():
        with initialize_config_module("riskml.conf", version_base="1.3"):
            cfg = compose("train", overrides=[
                f"data.data_dir={work}/data", "eval.oracle=false", "eval.fidelity=false", "eval.plots=false",
                "report.enabled=false", f"tracking.uri=sqlite:///{work}/mlflow.db", "register.enabled=false",
                f"export.dir={model_dir.parent}", f"export.name={model_dir.name}"])
        train.run(cfg)
    return inputs, model_dir


def child_env() -> dict[str, str]:
    """The job's environment as ``make`` gives it: bytecode written once (a process that may not write it
    compiles pandas, sklearn and mlflow again: ~10 s), OpenMP threads that wait passively."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "OMP_WAIT_POLICY": "PASSIVE"}


def fresh_process(inp: Path, out: Path, model_dir: Path, *extra: str) -> tuple[float, float]:
    """Wall and CPU seconds (the child's, all its threads) of ``python -m riskml.predict`` on ``inp``."""
    before = os.times()
    t = time.perf_counter()
    p = subprocess.run([sys.executable, *extra, "-m", "riskml.predict", f"input={inp}", f"output={out}",
                        f"model={model_dir}"], capture_output=True, text=True, cwd=out.parent,
                       env=child_env(), check=False)
    wall = time.perf_counter() - t
    after = os.times()
    if p.returncode:
        sys.exit(p.stderr[-3000:])
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--borrowers", type=int, default=1_000_000)
    ap.add_argument("--sizes", default="100000,400000,1000000")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out" / "batch"))
    args = ap.parse_args()
    work = Path(args.workdir)
    (work / "pred").mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    inputs, model_dir = prepare(work, args.borrowers, sorted({1000, *sizes}))

    from riskml.features import build_features
    from riskml.store.model_store import load_system_dir
    booster, manifest = load_system_dir(model_dir)[1]["adverse"]
    X0 = build_features(pd.read_parquet(inputs[min(sizes)]), windows=tuple(manifest["windows"])).X
    X0 = np.ascontiguousarray(X0[manifest["features"]].to_numpy(np.float32))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; adverse model "
          f"{booster.num_trees()} trees; {len(manifest['features'])} features; best of {args.rounds}")

    fixed, _ = fresh_process(inputs[1000], work / "pred" / "tiny.parquet", model_dir)
    print(f"fixed cost: python -m riskml.predict on 1,000 borrowers: {fixed:.2f} s")
    # the job's own imports: run as a program (``--help`` stops after them), as the nightly job starts it
    imports = subprocess.run([sys.executable, "-X", "importtime", "-m", "riskml.predict", "--help"],
                             capture_output=True, text=True, check=True, env=child_env(), cwd=work).stderr
    # cumulative time of each top-level package where it is first imported
    top = sorted(((int(m.group(1)), m.group(2)) for m in re.finditer(r"\|\s*(\d+) \|\s*([\w]+)$", imports, re.M)),
                 reverse=True)
    print("  imports of python -m riskml.predict: " + ", ".join(f"{name} {us / 1e6:.2f} s" for us, name in top[:8]))

    print(f"\n{'borrowers':>10s} {'riskml.predict':>15s} {'rows/s':>10s} {'CPU s':>7s} "
          f"{'plain predict':>14s} {'rows/s':>10s} {'CPU s':>7s} {'ratio':>6s} {'per CPU-s':>9s}  load")
    for n in sizes:
        X = X0 if n == len(X0) else np.resize(X0, (n, X0.shape[1]))
        best_fresh, best_cpu, best_plain, plain_cpu = np.inf, np.inf, np.inf, np.inf
        scored = n
        for _ in range(args.rounds):
            wall, cpu = fresh_process(inputs[n], work / "pred" / f"out_{n}.parquet", model_dir)
            best_fresh, best_cpu = min(best_fresh, wall), min(best_cpu, cpu)
            t, c = time.perf_counter(), time.process_time()
            booster.predict(X)
            best_plain, plain_cpu = min(best_plain, time.perf_counter() - t), min(plain_cpu, time.process_time() - c)
        summary = pd.read_json(work / "pred" / f"out_{n}.summary.json", typ="series")
        scored = int(summary["scored_borrowers"])
        ratio = (scored / best_fresh) / (len(X) / best_plain)
        ratio_cpu = (scored / best_cpu) / (len(X) / plain_cpu)  # what a loaded machine disturbs less
        print(f"{n:>10,d} {best_fresh:>13.1f} s {scored / best_fresh:>10,.0f} {best_cpu:>7.1f} "
              f"{best_plain:>12.2f} s {len(X) / best_plain:>10,.0f} {plain_cpu:>7.1f} {ratio:>6.2f} {ratio_cpu:>9.2f}"
              f"  {os.getloadavg()[0]:.1f}")
    print("target: the fresh process >= 1/3 of plain predict's rows/s at 1,000,000 borrowers")


if __name__ == "__main__":
    main()

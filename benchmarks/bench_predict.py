"""Benchmark of batch prediction: end to end against LightGBM's own predict and pred_contrib.

In one run, on one model:
1. simulate a portfolio of N borrowers (``riskml.generate``, cached in the work
   folder) and a 100k-borrower slice of it;
2. train the scoring system (``riskml.train``: the adverse, status and
   recovery models predict serves as one; ``--heavy`` trains each with 300
   trees of 31 leaves, the size the issue quotes); cached in the work folder
   unless ``--retrain``;
3. end to end: ``riskml.predict`` in a fresh process on the 100k slice and on
   all N (read, validate, features, score, reasons, what-ifs, write), with the
   process's peak memory;
4. references on the system's adverse model and the slice's feature matrix (one row per
   borrower, float32, C order: LightGBM's fastest input), best of 3 runs each:
   LightGBM's plain ``predict``, riskml's scorer (``TreePredictor.predict``,
   checked equal to 1e-9), raw ``predict(pred_contrib=True)`` on a sample
   (scaled to rows/s), and riskml's factor reasons alone (``FactorExplainer`` +
   ``top_reasons``).
Targets: end to end >= 1/3 of plain predict's rows/s (default
model); end to end >= 10x pred_contrib (--heavy); scorer >= 2x plain predict;
peak memory flat from 100k to N.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_predict.py [--heavy] [--borrowers 1000000] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from hydra import compose, initialize_config_module

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, re, sys, time
from hydra import compose, initialize_config_module
from riskml import predict
with initialize_config_module("riskml.conf.predict", version_base="1.3"):
    cfg = compose("predict", overrides=sys.argv[1:])
t = time.perf_counter()
r = predict.run(cfg)
# VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec and would report the parent's peak
hwm = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
# worker processes (workers > 1): the largest one's peak (ru_maxrss of the children, in kB on Linux)
import resource
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": time.perf_counter() - t, "scored": r.summary["scored_borrowers"],
                  "buckets": r.summary["buckets"], "peak_mib": hwm / 1024, "worker_peak_mib": worker / 1024}))
"""


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--borrowers", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--heavy", action="store_true", help="300 trees x 31 leaves instead of riskml's default")
    ap.add_argument("--contrib-rows", type=int, default=2000)
    ap.add_argument("--retrain", action="store_true", help="train the model again even if the work folder has it")
    ap.add_argument("--references-only", action="store_true", help="skip the end-to-end runs")
    ap.add_argument("--workers", default="auto", help="riskml.predict workers= (auto: one process per core "
                                                       "from 2,000,000 input rows; 1: the job's own process)")
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out" / "predict"))
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    from riskml import generate, train

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"predict workers={args.workers}")
    name = f"bench_{args.borrowers}"
    if not (work / "data" / name / "manifest.json").exists():
        with initialize_config_module("riskml.conf", version_base="1.3"):
            cfg = compose("generate", overrides=[f"name={name}", f"data_dir={work}/data", "seed=11",
                                                 f"n_borrowers={args.borrowers}", f"n_months={args.months}",
                                                 "workers=2"])
        _, s = timed(generate.run, cfg)
        print(f"simulated {args.borrowers:,} borrowers x {args.months} months in {s:.1f} s")
    panel_path = work / "data" / name / "panel.parquet"
    small_path = work / f"first_{args.small}.parquet"
    if not small_path.exists():
        t = pq.read_table(panel_path)
        t = t.filter(pd.Series(t["borrower_id"].to_numpy() < args.small).to_numpy())
        pq.write_table(t, small_path)

    size = ["model.num_leaves=31", "model.num_boost_round=300", "model.early_stopping_rounds=null",
            "model.min_data_in_leaf=100"] if args.heavy else []
    model_dir = work / "models" / ("heavy" if args.heavy else "default")
    if args.retrain or not (model_dir / "system.json").exists():
        with initialize_config_module("riskml.conf", version_base="1.3"):
            cfg = compose("train", overrides=[
                f"data.data_dir={work}/data", "eval.oracle=false", "eval.fidelity=false", "eval.plots=false",
                "report.enabled=false",
                f"tracking.uri=sqlite:///{work}/mlflow.db", "register.enabled=false",
                f"export.dir={model_dir.parent}", f"export.name={model_dir.name}", *size])
        _, s = timed(train.run, cfg)
        print(f"trained in {s:.1f} s")
    from riskml.store.model_store import load_system_dir
    booster, manifest = load_system_dir(model_dir)[1]["adverse"]
    print(f"adverse model: {booster.num_trees()} trees of at most {max(t['num_leaves'] for t in booster.dump_model()['tree_info'])}"
          f" leaves, {len(manifest['features'])} features")

    # end to end, each in a fresh process so its peak memory is its own
    e2e = {}
    for label, inp in () if args.references_only else (("small", small_path), ("full", panel_path)):
        out = work / "pred" / f"{label}.parquet"
        p = subprocess.run([sys.executable, "-c", CHILD, f"input={inp}", f"output={out}", f"model={model_dir}",
                            f"workers={args.workers}"], capture_output=True, text=True,
                           env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, check=False)
        if p.returncode:
            sys.exit(p.stderr[-3000:])
        e2e[label] = json.loads(p.stdout.strip().splitlines()[-1])
        r = e2e[label]
        workers = f" (largest worker {r['worker_peak_mib']:,.0f} MiB)" if r["worker_peak_mib"] else ""
        print(f"end to end {label}: {r['scored']:,} borrowers ({r['buckets']} buckets) in {r['seconds']:.1f} s = "
              f"{r['scored'] / r['seconds']:,.0f} borrowers/s; peak RSS {r['peak_mib']:,.0f} MiB{workers}; "
              f"load {os.getloadavg()[0]:.1f}")

    # references on the same model and feature matrix
    from riskml.explain import FactorExplainer, adverse_contributions, top_reasons
    from riskml.explain.predictor import TreePredictor
    from riskml.features import build_features
    panel = pd.read_parquet(small_path)
    X = np.ascontiguousarray(build_features(panel, windows=tuple(manifest["windows"])).X[manifest["features"]]
                             .to_numpy(np.float32))
    scorer = TreePredictor(booster)
    ex, t_tables = timed(FactorExplainer, booster, manifest["feature_factors"])
    scorer.predict(X[:1000]), ex.contributions(X[:1000])  # compile once, as a long batch job does
    p = booster.predict(X)
    gap = float(np.abs(scorer.predict(X) - p).max())
    sample = X[: args.contrib_rows]

    def reasons():
        c = ex.contributions(X)
        return top_reasons(adverse_contributions(c, np.column_stack([1 - p, p])), ex.factors, k=3)

    t_plain = best(booster.predict, X)
    t_scorer = best(scorer.predict, X)
    t_contrib = best(booster.predict, sample, pred_contrib=True)
    t_reasons = best(reasons)
    raw = len(sample) / t_contrib
    rates = {"plain predict": len(X) / t_plain, "riskml scorer": len(X) / t_scorer, "raw pred_contrib": raw,
             "factor reasons alone": len(X) / t_reasons}
    for label, r in e2e.items():
        rates[f"end to end ({label})"] = r["scored"] / r["seconds"]
    print(f"\nreferences on {len(X):,} feature rows (pred_contrib on {len(sample):,}), best of 3; "
          f"tables built in {t_tables:.2f} s; load {os.getloadavg()[0]:.1f}")
    plain = rates["plain predict"]
    for k, v in rates.items():
        print(f"  {k:22s} {v:>12,.0f} rows/s   {v / plain:6.2f}x plain predict   {v / raw:8.1f}x pred_contrib")
    print(f"scorer vs Booster.predict: max |difference| {gap:.1e}")
    if e2e:
        print(f"peak memory: {e2e['small']['peak_mib']:,.0f} MiB at {e2e['small']['scored']:,} borrowers, "
              f"{e2e['full']['peak_mib']:,.0f} MiB at {e2e['full']['scored']:,} "
              f"(ratio {e2e['full']['peak_mib'] / e2e['small']['peak_mib']:.2f})")
        print(f"targets: end to end >= 1/3 plain predict (default model) -> {rates['end to end (full)'] / plain:.2f}; "
              f"end to end >= 10x pred_contrib (--heavy) -> {rates['end to end (full)'] / raw:.1f}x")
    print(f"targets: scorer >= 2x plain predict -> {rates['riskml scorer'] / plain:.1f}x; "
          f"reasons >= 10x pred_contrib -> {rates['factor reasons alone'] / raw:.1f}x")


def best(fn, *args, repeat: int = 3, **kw) -> float:
    """The fastest of ``repeat`` timed calls (the machine is shared: the minimum is the least disturbed)."""
    return min(timed(fn, *args, **kw)[1] for _ in range(repeat))


if __name__ == "__main__":
    main()

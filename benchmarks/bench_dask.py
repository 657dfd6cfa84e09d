"""Benchmark of the cluster path: the same job on the single-machine path and on 1 and 2 local Dask workers.

In one run, for each engine (``cluster=none``; ``cluster=local cluster.workers=1``; ``workers=2``):
1. ``riskml.generate`` N borrowers x M months (single machine: one process, ``workers=1``, one file;
   cluster: one part per 8,192 borrowers);
2. ``riskml.train`` (the scoring system: adverse, status and recovery models; snapshots, LightGBM with at most
   300 rounds, evaluation, register, export) on that data set;
3. ``riskml.predict`` of the whole panel with the trained model (validate, features, score, reasons, what-ifs).
Each stage's time includes starting and stopping its cluster; an empty LocalCluster's start and stop is
timed on its own as the reference for that fixed cost. The single-machine rates per core are what the
README's sizing plan for 100 million borrowers uses.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_dask.py [--borrowers 20000] [--months 24]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_module

ROUNDS = 300
ENGINES = {"single machine": [], "dask 1 worker": ["cluster=local", "cluster.workers=1"],
           "dask 2 workers": ["cluster=local", "cluster.workers=2"]}


def cfg(root: str, name: str, overrides: list[str]):
    with initialize_config_module(root, version_base="1.3"):
        return compose(name, overrides=overrides)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def cluster_overhead() -> float:
    from riskml.cluster.client import connect

    t0 = time.perf_counter()
    with connect({"kind": "local", "workers": 2}):
        pass
    return time.perf_counter() - t0


def job(work: Path, label: str, extra: list[str], n: int, months: int) -> dict:
    from riskml import generate, predict, train

    tag = label.replace(" ", "_")
    gen = [f"data_dir={work}/data", f"name={tag}", f"n_borrowers={n}", f"n_months={months}", "chunk_borrowers=8192",
           "workers=1", *extra]
    _, t_gen = timed(generate.run, cfg("riskml.conf", "generate", gen))
    tr = [f"tracking.uri=sqlite:///{work}/mlflow.db", f"export.dir={work}/models", f"data.data_dir={work}/data",
          f"data.name={tag}", f"data.n_borrowers={n}", f"data.n_months={months}",
          "eval.oracle=false", "eval.plots=false", "report.enabled=false", f"model.num_boost_round={ROUNDS}",
          f"register.name=bench_{tag}", *extra]
    system, t_train = timed(train.run, cfg("riskml.conf", "train", tr))
    result = system.parts["adverse"]
    panel = work / "data" / tag / ("panel" if extra else "panel.parquet")
    # every engine scores with the single-machine model (trained first): the same job, comparable bytes
    pr = [f"input={panel}", f"output={work}/out/{tag}.parquet", f"model={work}/models/bench_single_machine", *extra]
    scored, t_pred = timed(predict.run, cfg("riskml.conf.predict", "predict", pr))
    return {"generate_s": t_gen, "train_s": t_train, "predict_s": t_pred,
            "auc": result.metrics["roc_auc_adverse"], "best_iteration": result.model.best_iteration,
            "auc_by_model": {role: part.metrics["roc_auc_adverse"] for role, part in system.parts.items()},
            "rounds_trained": ROUNDS if extra else min(ROUNDS, result.model.best_iteration + 50),  # + the patience
            "snapshots": int(result.metrics["n_train"] + result.metrics["n_test"]),
            "predict_sha256": scored.summary["output_sha256"], "partitions": (scored.summary.get("engine") or {}).get(
                "partitions", scored.summary["buckets"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--borrowers", type=int, default=20000)
    ap.add_argument("--months", type=int, default=24)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    work = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    try:
        overhead = cluster_overhead()
        rows = {label: job(work, label, extra, args.borrowers, args.months) for label, extra in ENGINES.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n, m = args.borrowers, args.months
    print(f"\n{n:,} borrowers x {m} months on {os.cpu_count()} cores ({platform.processor() or platform.machine()})")
    print(f"reference: an empty LocalCluster of 2 workers started and stopped in {overhead:.1f} s\n")
    print("| engine | generate s | train s | predict s | total s | vs single | adverse AUC | best iter / trained |")
    print("|---|---|---|---|---|---|---|---|")
    base = sum(rows["single machine"][k] for k in ("generate_s", "train_s", "predict_s"))
    for label, r in rows.items():
        total = r["generate_s"] + r["train_s"] + r["predict_s"]
        print(f"| {label} | {r['generate_s']:.1f} | {r['train_s']:.1f} | {r['predict_s']:.1f} | {total:.1f} | "
              f"{total / base:.2f}x | {r['auc']:.4f} | {r['best_iteration']} / {r['rounds_trained']} |")
    one = rows["single machine"]
    print("\nsingle-machine rates (borrowers per second per core; generate and predict use 1 core, train 2 threads):")
    print(f"  generate {n / one['generate_s']:,.0f}  train (3 models) {n / one['train_s'] / 2:,.0f} "
          f"({one['snapshots'] / one['train_s'] / 2:,.0f} adverse snapshots)  predict {n / one['predict_s']:,.0f}")
    print("test AUC gap to the single-machine fit (target: within 0.005), by model:")
    for label, r in rows.items():
        if label != "single machine":
            gaps = {role: r["auc_by_model"][role] - one["auc_by_model"][role] for role in one["auc_by_model"]}
            print(f"  {label}: " + ", ".join(f"{role} {g:+.4f}" for role, g in gaps.items()))
    same = len({r["predict_sha256"] for r in rows.values()}) == 1
    print(f"predictions identical across engines: {same}")
    print(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":  # the LocalCluster spawns workers that import this file
    main()

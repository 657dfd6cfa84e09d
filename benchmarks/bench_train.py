"""Benchmark of ``python -m riskml.train`` on its default: the whole run next to its LightGBM fits.

Runs, in one process and in a scratch folder:
1. ``riskml.generate`` on the default config (50,000 borrowers x 24 months), unless
   ``--data-dir`` names a folder that already holds it;
2. ``riskml.train.run`` on the default config (the scoring system: adverse, status
   and recovery models, with every evaluation the run reports), timing each phase;
3. bare ``lgb.train`` on each model's own training and validation rows with the
   parameters, rounds and early stopping riskml used, so the fits are measured
   twice in the same run: inside riskml and bare.

Prints the train's wall time, the sum of its fits (riskml's ``fit_seconds``) and
of the bare fits, the ratio wall / fits (target <= 2), and where the rest went.
``--runs 2`` trains twice on the same data: the second run reuses the evaluation
cache (the oracle and the scenario portfolios) as a rerun of an experiment does.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_train.py
    .venv/bin/python benchmarks/bench_train.py --runs 2 --data-dir /tmp/riskml-bench
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
from hydra import compose, initialize_config_module

from riskml import generate, train
from riskml.training import models

#: the phases of a run, by the name ``riskml.train`` calls them under
PHASES = ["load_data", "_fit", "_guard_leakage", "validation_metrics", "evaluate_predictions", "oracle_metrics",
          "fidelity_metrics", "whatif_metrics", "scenario_fidelity", "importance_by_factor", "plots", "build_reports", "ship_system"]
TRACKING = ["setup", "log_params", "log_dataset", "log_metrics", "log_table", "log_figure", "log_text", "log_dict",
            "log_metric_history"]


def timed(table: dict[str, float], name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[name] += time.perf_counter() - t
    return wrapper


def instrument(table: dict[str, float], fits: list) -> list[tuple[object, str, object]]:
    """Wrap the phases that ``riskml.train`` calls, and record every LightGBM fit's inputs; returns
    what was replaced, to put back."""
    inner = models.fit_lightgbm

    def record(X_train, y_train, **kw):
        booster, curve = inner(X_train, y_train, **kw)
        fits.append((X_train, y_train, kw))
        return booster, curve
    originals = [(train, name, getattr(train, name)) for name in PHASES]
    originals += [(train.tracking, name, getattr(train.tracking, name)) for name in TRACKING]
    originals.append((models, "fit_lightgbm", inner))
    for owner, name, fn in originals[:-1]:
        setattr(owner, name, timed(table, name if owner is train else f"tracking.{name}", fn))
    models.fit_lightgbm = record
    return originals


def bare_fit(X_train, y_train, kw) -> float:
    """``lgb.train`` as riskml calls it, without riskml: same rows, parameters, rounds and early stopping."""
    t = time.perf_counter()
    data = lgb.Dataset(X_train, label=y_train, free_raw_data=True)
    valid, callbacks = [], []
    if kw.get("X_valid") is not None:
        valid = [lgb.Dataset(kw["X_valid"], label=kw["y_valid"], reference=data)]
        if kw.get("early_stopping_rounds"):
            callbacks.append(lgb.early_stopping(kw["early_stopping_rounds"], verbose=False))
    lgb.train(dict(kw["params"]), data, num_boost_round=kw["num_boost_round"], valid_sets=valid,
              callbacks=callbacks)
    return time.perf_counter() - t


def one_run(folder: Path, overrides: list[str]) -> None:
    table: dict[str, float] = collections.defaultdict(float)
    fits: list = []
    originals = instrument(table, fits)
    store = [f"tracking.uri=sqlite:///{folder}/mlflow.db", f"export.dir={folder}/models",
             f"data.data_dir={folder}/data"]
    with initialize_config_module("riskml.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*store, *overrides])
    t = time.perf_counter()
    result = train.run(cfg)
    wall = time.perf_counter() - t
    fit_sum = sum(p.metrics["fit_seconds"] for p in result.parts.values())
    bare = [bare_fit(X, y, kw) for X, y, kw in fits]
    per_role = ", ".join(f"{role} {part.metrics['fit_seconds']:.1f}" for role, part in result.parts.items())
    print(f"train wall {wall:.1f} s; its LightGBM fits {fit_sum:.1f} s ({per_role}); "
          f"bare lgb.train on the same rows {sum(bare):.1f} s")
    print(f"  wall / fits = {wall / fit_sum:.2f}x (target <= 2); wall / bare fits = {wall / sum(bare):.2f}x; "
          f"adverse AUC {result.metrics['roc_auc_adverse']:.4f}")
    rest = wall - table["_fit"]
    print(f"  where the other {rest:.1f} s went (phases overlap nothing; tracking calls are inside phases "
          "only where a phase logs):")
    for name, sec in sorted(table.items(), key=lambda kv: -kv[1]):
        if name != "_fit" and sec >= 0.05:
            print(f"    {name:28s} {sec:6.1f} s")
    for owner, name, fn in originals:  # put back, so a second run is timed afresh
        setattr(owner, name, fn)

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--runs", type=int, default=1, help="trains on the same data (the later ones reuse the cache)")
    ap.add_argument("overrides", nargs="*", help="train overrides, e.g. data.n_borrowers=20000")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"lightgbm {lgb.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.data_dir or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        data_over = [o for o in args.overrides if o.startswith("data.")]
        if not (folder / "data" / "default" / "manifest.json").is_file():
            t = time.perf_counter()
            with initialize_config_module("riskml.conf", version_base="1.3"):
                generate.run(compose("generate", overrides=[f"data_dir={folder}/data",
                                                            *(o[len('data.'):] for o in data_over)]))
            print(f"generate: {time.perf_counter() - t:.1f} s")
        for k in range(args.runs):
            print(f"run {k + 1}:")
            one_run(folder, args.overrides)
            sys.stdout.flush()


if __name__ == "__main__":
    main()

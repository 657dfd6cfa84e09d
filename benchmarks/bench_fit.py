"""Benchmark of training: snapshots from a large panel, and riskml's LightGBM
training against bare ``lightgbm.train`` on the same matrix and parameters.

Runs, in one process:
1. simulate the panel chunk by chunk (``riskml.simulate.iter_chunks``) and build
   snapshots of each chunk (``riskml.features.build_snapshots``, ``every`` months);
2. bare: ``lgb.train(params, lgb.Dataset(X, y), rounds)``;
3. riskml: ``riskml.training.fit.fit`` (what ``train.run`` calls: Dataset construction
   + ``lgb.train`` with riskml's params), the same fixed number of rounds, no
   early stopping, so both do the same work;
then bare once more, so that a warm-up or a noisy neighbour shows as spread.
The ratio riskml / bare (best of the bare runs) is the overhead; target <= 1.25.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_fit.py
    .venv/bin/python benchmarks/bench_fit.py --n-borrowers 100000 --rounds 20
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from riskml import features
from riskml.training import models
from riskml.training.fit import fit
from riskml.simulate import SimConfig, iter_chunks

CONF = os.path.join(os.path.dirname(models.__file__), os.pardir, os.pardir, "conf", "model", "lightgbm.yaml")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def snapshots(n: int, months: int, every: int, target: str, workers: int) -> tuple[pd.DataFrame, np.ndarray, dict,
                                                                                      float, float]:
    """Snapshots of an ``n``-borrower panel, built chunk by chunk; also the seconds spent simulating / building."""
    cfg = SimConfig(n_borrowers=n, n_months=months, seed=0, workers=workers)
    t_sim = t_snap = 0.0
    Xs, ys, directions = [], [], {}
    t = time.perf_counter()
    for panel, _ in iter_chunks(cfg, progress=False):
        t_sim += time.perf_counter() - t
        t = time.perf_counter()
        s = features.build_snapshots(panel, target=target, every=every)
        Xs.append(s.X)
        ys.append(s.y.astype(np.int32))
        directions = s.feature_directions
        t_snap += time.perf_counter() - t
        t = time.perf_counter()
    return pd.concat(Xs, ignore_index=True), np.concatenate(ys), directions, t_sim, t_snap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-borrowers", type=int, default=1_000_000)
    ap.add_argument("--n-months", type=int, default=24)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--target", default="status_3m")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="simulator processes")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"lightgbm {lgb.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")

    X, y, directions, t_sim, t_snap = snapshots(args.n_borrowers, args.n_months, args.every, args.target,
                                                args.workers)
    print(f"panel: {args.n_borrowers:,} borrowers x {args.n_months} months simulated in {t_sim:.1f} s")
    print(f"snapshots: {len(X):,} rows x {X.shape[1]} features (every {args.every} months) built in {t_snap:.1f} s "
          f"({len(X) / t_snap:,.0f} rows/s); class counts {np.bincount(y).tolist()}; peak RSS {peak_mib():,.0f} MiB")

    model_cfg = {**OmegaConf.to_container(OmegaConf.load(CONF)), "num_boost_round": args.rounds,
                 "early_stopping_rounds": None}
    classes = ["normal", "suspended", "closed"] if args.target == "status_3m" else ["0", "1"]
    params = models.lgb_params(model_cfg, n_classes=len(classes), seed=0, num_threads=args.threads,
                               constraints=models.monotone_constraints(list(X.columns), directions))

    def bare() -> tuple[float, lgb.Booster]:
        t = time.perf_counter()
        b = lgb.train(dict(params), lgb.Dataset(X, label=y), num_boost_round=args.rounds)
        return time.perf_counter() - t, b

    def riskml() -> tuple[float, models.FittedModel]:
        t = time.perf_counter()
        m = fit(model_cfg, X, y, classes=classes, feature_directions=directions, seed=0,
                       num_threads=args.threads)
        return time.perf_counter() - t, m

    t_bare1, b = bare()
    t_riskml, m = riskml()
    t_bare2, _ = bare()
    assert m.params == params, "riskml trained with other parameters than the bare run"
    same = np.allclose(m.booster.predict(X.iloc[:10000]), b.predict(X.iloc[:10000]))
    best = min(t_bare1, t_bare2)
    print(f"train {args.rounds} rounds, {args.threads} threads: bare lgb.train {t_bare1:.1f} s / {t_bare2:.1f} s, "
          f"riskml {t_riskml:.1f} s -> overhead {t_riskml / best:.3f}x (target <= 1.25); "
          f"same predictions: {same}; peak RSS {peak_mib():,.0f} MiB")


if __name__ == "__main__":
    main()

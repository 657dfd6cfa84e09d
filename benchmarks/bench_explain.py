"""Factor reasons vs LightGBM's own TreeSHAP, same model, same rows, same run.

Trains a LightGBM model (default 300 trees, 31 leaves) on synthetic data with
60 float features in 8 factor groups (10% missing values), then times plain
``predict``, ``predict(pred_contrib=True)`` on a sample and
``FactorExplainer.contributions`` on many rows, and prints rows/s and ratios.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_explain.py [--classes 3]
"""

from __future__ import annotations

import argparse
import os
import time

import lightgbm as lgb
import numpy as np

from riskml.explain import FactorExplainer


def synthetic(n: int, n_features: int, n_groups: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    score = X[:, :n_groups] @ rng.normal(size=n_groups) + 0.5 * np.sin(X[:, n_groups:2 * n_groups]).sum(axis=1)
    score += 0.3 * X[:, 0] * X[:, 1] + rng.normal(size=n)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X, score


def timed(fn, *args, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores here; other jobs slow every figure alike)")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-rows", type=int, default=50_000)
    ap.add_argument("--rows", type=int, default=200_000, help="rows explained by FactorExplainer")
    ap.add_argument("--contrib-rows", type=int, default=2_000, help="rows explained by pred_contrib")
    ap.add_argument("--features", type=int, default=60)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--leaves", type=int, default=31)
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    X, score = synthetic(a.train_rows + a.rows, a.features, a.groups, a.seed)
    cuts = np.quantile(score, np.linspace(0, 1, a.classes + 1)[1:-1] if a.classes > 2 else [0.8])
    y = np.searchsorted(cuts, score)
    params = {"objective": "binary"} if a.classes == 2 else {"objective": "multiclass", "num_class": a.classes}
    params.update(num_leaves=a.leaves, learning_rate=0.05, min_data_in_leaf=20, verbose=-1, seed=a.seed)
    t, booster = timed(lgb.train, params, lgb.Dataset(X[: a.train_rows], y[: a.train_rows]), a.trees)
    print(f"model: {booster.num_trees()} trees, {a.leaves} leaves, {a.features} features, "
          f"{a.groups + 1} factors, {a.classes} classes (trained in {t:.1f} s)")
    names = booster.feature_name()
    # Group g holds features g, g + groups, ...; one extra group plays `other`.
    ff = {f: (f"factor_{j % a.groups}" if j < a.features - 5 else "other") for j, f in enumerate(names)}

    t_build, ex = timed(FactorExplainer, booster, ff)
    print(f"precompute: {t_build:.2f} s (incl. numba JIT of the table builder), tables "
          f"{ex.table_bytes_ / 2**20:.1f} MiB, method {ex.method_}")
    t_build2, ex = timed(FactorExplainer, booster, ff)
    print(f"precompute again (compiled): {t_build2:.2f} s")
    rows = X[a.train_rows:]
    t_jit, _ = timed(ex.contributions, rows[:100])  # numba compiles the scoring kernel on first use
    print(f"first call (numba JIT of the scoring kernel): {t_jit:.1f} s")
    t_pred, _ = timed(booster.predict, rows, repeat=2)
    sample = rows[: a.contrib_rows]
    t_contrib, pc = timed(lambda s: booster.predict(s, pred_contrib=True), sample)
    t_fac, fc = timed(ex.contributions, rows)
    check = ex.contributions(sample).sum(axis=-1) - booster.predict(sample, raw_score=True).reshape(len(sample), -1)

    r_pred, r_contrib, r_fac = len(rows) / t_pred, len(sample) / t_contrib, len(rows) / t_fac
    print(f"predict (plain)             {r_pred:12,.0f} rows/s  ({len(rows):,} rows)")
    print(f"predict(pred_contrib=True)  {r_contrib:12,.0f} rows/s  ({len(sample):,} rows)")
    print(f"FactorExplainer             {r_fac:12,.0f} rows/s  ({len(rows):,} rows)")
    print(f"factor reasons / pred_contrib = {r_fac / r_contrib:.1f}x; plain predict / factor reasons = "
          f"{r_pred / r_fac:.1f}x; efficiency max |sum - raw| = {np.abs(check).max():.1e}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

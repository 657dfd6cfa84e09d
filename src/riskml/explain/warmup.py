"""The scoring kernels compiled ahead of their first use, in a background thread.

numba compiles riskml's kernels (the month features of a history, the tree scorer,
factor TreeSHAP) on their first call in a fresh install - about 25 s on 2 cores -
and keeps them in its cache after. A training run first needs them after its
first model is fitted, so it starts :func:`start` first: the kernels compile
while LightGBM fits (its C++ code runs without the GIL, and so do LLVM's passes).
The compiling calls are the real ones on a tiny simulated panel and a 3-tree model,
so the types compiled are the ones a real job passes; a later call that arrives
while a kernel is still compiling waits for it (numba's compile lock) instead of
compiling it twice.
"""

from __future__ import annotations

import logging
import threading

import lightgbm as lgb
import numpy as np

from riskml.explain.predictor import TreePredictor
from riskml.explain.reasons import FactorExplainer
from riskml.features import build_features
from riskml.simulate import SimConfig, simulate

log = logging.getLogger(__name__)


def compile_kernels() -> None:
    """Run every scoring kernel once on a tiny panel (loads them from numba's cache when there)."""
    panel = simulate(SimConfig(n_borrowers=64, n_months=14, seed=0)).panel
    snaps = build_features(panel)  # the month features of a history, as prediction builds them
    X = snaps.X
    y = (np.arange(len(X)) % 3 == 0).astype(np.int64)
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 2, "verbose": -1,
                         "num_threads": 1, "seed": 0}, lgb.Dataset(X, label=y), num_boost_round=3)
    predictor = TreePredictor(booster)
    # both kernels: the byte kernel scores models of many deep trees (a tuned model's), the other the rest
    for kernel in ("bitvector", "binned") if predictor.kernel_ == "auto" else (predictor.kernel_,):
        predictor.kernel_ = kernel
        predictor.raw(predictor.matrix(X))
    FactorExplainer(booster, snaps.feature_factors).contributions(X)


def start() -> threading.Thread:
    """:func:`compile_kernels` in a daemon thread; a failure there is logged, never raised (the kernels
    then compile on first use, as without it)."""
    def run() -> None:
        try:
            compile_kernels()
        except Exception as e:  # noqa: BLE001 - a warm-up must never fail the run it speeds up
            log.debug("compiling the scoring kernels ahead failed (%s); they compile on first use", e)

    thread = threading.Thread(target=run, name="riskml-kernels", daemon=True)
    thread.start()
    return thread

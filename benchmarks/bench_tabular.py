"""Benchmark of the default tabular run against two plain baselines, in the same stratified 5-fold CV.

For every table, in one run:
- riskml: ``riskml.train.run`` with ``data=tabular`` and nothing else changed
  (so ``model=auto``), MLflow in a temporary folder; its CV AUC is the run's
  ``roc_auc_adverse`` (the mean over the 5 test folds);
- (a) LightGBM with the library's defaults (``LGBMClassifier()``, categoricals native);
- (b) logistic regression with median imputation, scaling and one-hot
  (riskml's ``model=logistic`` pipeline, C=1);
- the fixed ``model=lightgbm`` (the tabular default before ``model=auto``);
both baselines trained on each fold's training rows (train + valid) and scored
on its test rows, the folds being the run's own (``train.make_folds``).

Tables: the two real development tables in ``../shared/data`` subsampled to
1,000-10,000 rows, any ``--table`` given, and small simulated tables
(snapshots of the simulator, one per borrower, ``adverse_3m``), where the
oracle's AUC on the same rows says how far each model is from the best
possible and each ``model=auto`` candidate is also scored alone.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_tabular.py
    .venv/bin/python benchmarks/bench_tabular.py --only-extra --table my.csv:id:bad:good --sizes 2000,0
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from hydra import compose, initialize_config_module
from sklearn.metrics import roc_auc_score

from riskml import train
from riskml.features import build_snapshots
from riskml.simulate import SimConfig, oracle, simulate
from riskml.training.fit import fit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = [("taiwan_late", SHARED / "taiwan_late.csv", "row_id", "bad", None, (1000, 2000, 5000, 10000)),
        ("taiwan_sample", SHARED / "taiwan_sample.csv", "row_id", "bad", None, (1000, 3000, 6000))]


def run_riskml(csv: Path, id_col: str, target: str, negative: str | None, tmp: Path, *extra: str):
    over = ["data=tabular", f"data.path={csv}", f"data.id_column={id_col}", f"data.target_column={target}",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models", "eval.plots=false",
            "register.enabled=false", "tracking.log_model=false", *extra]
    if negative is not None:
        over.append(f"data.negative_class={negative}")
    with initialize_config_module("riskml.conf", version_base="1.3"):
        cfg = compose("train", overrides=over)
    t = time.perf_counter()
    result = train.run(cfg)
    return result, cfg, time.perf_counter() - t


def baselines(ds, folds, seed: int) -> dict[str, float]:
    """Mean test-fold AUC of (a) LightGBM defaults and (b) the logistic pipeline."""
    auc = {"lgbm_defaults": [], "logistic": []}
    for f in folds:
        tr = np.concatenate([f.train, f.valid])
        y_bad = (ds.y > 0).astype(int)
        m = lgb.LGBMClassifier(random_state=seed, n_jobs=2, verbose=-1).fit(ds.X.iloc[tr], y_bad[tr])
        auc["lgbm_defaults"].append(roc_auc_score(y_bad[f.test], m.predict_proba(ds.X.iloc[f.test])[:, 1]))
        lr = fit({"name": "logistic", "C": 1.0, "max_iter": 1000}, ds.X.iloc[tr], y_bad[tr], classes=["0", "1"],
                 seed=seed, num_threads=2)
        auc["logistic"].append(roc_auc_score(y_bad[f.test], lr.predict_proba(ds.X.iloc[f.test])[:, 1]))
    return {k: float(np.mean(v)) for k, v in auc.items()}


def simulated_table(n_rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """One random snapshot per borrower of a simulated portfolio, ``n_rows`` of them, and the oracle's P(adverse)."""
    sim = SimConfig(n_borrowers=int(n_rows * 1.3), n_months=24, seed=seed)
    snaps = build_snapshots(simulate(sim).panel, target="adverse_3m")
    rng = np.random.default_rng(seed)
    keys = snaps.keys.assign(_r=rng.random(len(snaps.keys)))
    pick = keys.sort_values("_r").drop_duplicates("borrower_id").index[:n_rows].sort_values()
    table = pd.concat([snaps.keys.loc[pick, ["borrower_id", "month"]], snaps.X.loc[pick]], axis=1)
    table["adverse"] = np.asarray(snaps.y)[pick]
    orc = oracle(sim, table[["borrower_id", "month"]].reset_index(drop=True), horizon=3, n_paths=200, seed=seed)
    return table.reset_index(drop=True), 1.0 - orc["p_normal"]


def row(name, ds, result, base, extra, seconds) -> dict:
    s = result.model.selection or {}
    out = {"table": name, "rows": len(ds.y), "features": ds.X.shape[1], "bad_rate": float((ds.y > 0).mean()),
           "(a) lgbm defaults": base["lgbm_defaults"], "(b) logistic": base["logistic"],
           "riskml": result.metrics["roc_auc_adverse"], "margin": result.metrics["roc_auc_adverse"] - max(base.values()),
           "model=lightgbm": extra, "seconds": seconds, "shipped": s.get("chosen", "")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", action="append", default=[], help="PATH:ID_COLUMN:TARGET[:NEGATIVE_CLASS], repeatable")
    ap.add_argument("--sizes", default="1000,5000,0", help="row counts for --table (0: all rows)")
    ap.add_argument("--sim-sizes", default="1000,2500,5000")
    ap.add_argument("--only-extra", action="store_true", help="skip the shared and simulated tables")
    ap.add_argument("--no-real", action="store_true", help="skip the shared real tables")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    tables = [] if args.only_extra or args.no_real else list(REAL)
    for spec in args.table:
        path, id_col, target, *neg = spec.split(":")
        tables.append((Path(path).stem, Path(path), id_col, target, neg[0] if neg else None,
                       tuple(int(s) for s in args.sizes.split(","))))
    rows, sims = [], []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        jobs = []
        for name, path, id_col, target, negative, sizes in tables:
            df = pd.read_csv(path)
            for n in sorted({min(n, len(df)) if n else len(df) for n in sizes}):  # each size once
                part = df if n == len(df) else df.sample(n=n, random_state=args.seed)
                csv = tmp / f"{name}_{len(part)}.csv"
                part.to_csv(csv, index=False)
                jobs.append((f"{name}[{len(part)}]", csv, id_col, target, negative, None))
        if not args.only_extra:
            for n in (int(s) for s in args.sim_sizes.split(",")):
                table, p_oracle = simulated_table(n, args.seed)
                csv = tmp / f"sim_{n}.csv"
                table.drop(columns=["month"]).to_csv(csv, index=False)
                jobs.append((f"simulated[{n}]", csv, "borrower_id", "adverse", None, p_oracle))
        for name, csv, id_col, target, negative, p_oracle in jobs:
            work = tmp / csv.stem  # the store of this table's runs (a plain name: Hydra parses the path)
            result, cfg, secs = run_riskml(csv, id_col, target, negative, work)
            ds = result.dataset
            folds = train.make_folds(ds, cfg)
            base = baselines(ds, folds, args.seed)
            fixed, _, _ = run_riskml(csv, id_col, target, negative, work / "lgbm", "model=lightgbm")
            rows.append(row(name, ds, result, base, fixed.metrics["roc_auc_adverse"], secs))
            print(pd.DataFrame([rows[-1]]).to_string(index=False, float_format="%.4f"), flush=True)
            if p_oracle is not None:
                y = (ds.y > 0).astype(int)
                s = {"table": name, "oracle": float(np.mean([roc_auc_score(y[f.test], p_oracle.to_numpy()[f.test])
                                                          for f in folds])), "riskml (auto)": rows[-1]["riskml"]}
                for c in ("lightgbm", "lightgbm_large", "logistic"):
                    alone, _, _ = run_riskml(csv, id_col, target, negative, work / c,
                                             f"model.candidates=[{c}]")
                    s[f"{c} alone"] = alone.metrics["roc_auc_adverse"]
                s.update({"(a) lgbm defaults": base["lgbm_defaults"], "(b) logistic": base["logistic"]})
                sims.append(s)
    print(f"\nstratified 5-fold CV ROC-AUC (mean over test folds); {platform.machine()}, Python "
          f"{platform.python_version()}, LightGBM {lgb.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format="%.4f"))
    print(f"riskml >= max(a, b) on {int((table['margin'] >= 0).sum())} of {len(table)} tables; "
          f"margin min {table['margin'].min():+.4f}, mean {table['margin'].mean():+.4f}")
    if sims:
        gaps = pd.DataFrame(sims).set_index("table")
        print("\nsimulated tables: CV AUC and the oracle's on the same rows (gap = oracle - model)")
        print(gaps.to_string(float_format="%.4f"))
        print((-gaps.drop(columns="oracle").sub(gaps["oracle"], axis=0)).to_string(float_format="%.4f"))


if __name__ == "__main__":
    main()

"""A lender's panel in its own schema against the same borrowers in riskml's full schema.

Simulates a portfolio, writes it twice - as riskml's panel contract and as a lender would have it (borrower
and state columns renamed, states ``ACTIVE``/``FROZEN``/``CLOSED``, months ``YYYY-MM``, causes as the
lender's codes, ``invest_share``, ``utility_on_time``, ``policy_index`` and ``maintenance`` dropped, one
extra column) with its schema file - trains ``target=adverse_3m`` on each and prints the two test adverse
AUCs and their difference (the lender's schema should cost at most 0.03), and the AUC of the lender's
columns in riskml's own names (what the translation itself costs).

``--short`` writes a 6-month, two-state panel with 4 behaviour columns, trains it with ``target.horizon=1``
and compares its P(adverse) AUC with a plain LightGBM on lag features, both on riskml's own test rows.
``--cluster`` trains the lender's panel on one machine and on ``cluster=local`` (target: within 0.005).
``--tighten M``: the platform tightens its policy from month ``M`` (8 months before the panel ends).
Each default run also prints both AUCs without the test snapshots whose adverse event is abnormal use, and
without those of the policy or maintenance: where the dropped columns' signal goes.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_lender.py [--borrowers 6000] [--short | --cluster | --tighten 22]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from riskml import train
from riskml.simulate import SimConfig, simulate
from riskml.training.datasets import make_folds

STATES = {"normal": "ACTIVE", "suspended": "FROZEN", "closed": "CLOSED"}
CAUSE_CODES = {"overdue": "OD", "multi_lending": "ML", "abnormal_use": "AU", "score_decline": "SD",
               "policy_tightening": "PT", "agreement_violation": "FR", "maintenance": "MT"}
DROPPED = ("invest_share", "utility_on_time", "policy_index", "maintenance")


def month_label(month: pd.Series, start: str = "2021-01") -> np.ndarray:
    """Month indices as ``YYYY-MM`` labels from ``start``."""
    m = month.to_numpy(dtype=np.int64)
    return np.asarray(pd.period_range(start, periods=int(m.max()) + 1, freq="M").astype(str))[m]


def lender_export(panel: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    """The panel in a lender's schema (CSV) and its schema file."""
    out = pd.DataFrame({"account_id": panel["borrower_id"].to_numpy(),
                        "period": month_label(panel["month"]),
                        "state": panel["status"].astype(str).map(STATES).to_numpy(),
                        "reason_code": panel["cause"].astype(object).map(CAUSE_CODES).to_numpy()})
    keep = [c for c in panel.columns if c not in ("borrower_id", "month", "status", "cause", *DROPPED)]
    renamed = {c: f"x_{c}" for c in keep}
    for c in keep:
        out[renamed[c]] = panel[c].to_numpy()
    out["branch"] = np.random.default_rng(0).integers(1, 40, len(out))  # a column the schema does not name
    schema = {"id": "account_id", "month": "period",
              "status": {"column": "state", **{s: [code] for s, code in STATES.items()}},
              "cause": {"column": "reason_code", "values": {v: k for k, v in CAUSE_CODES.items()}},
              "columns": {renamed[c]: {"as": c} for c in keep}}
    folder.mkdir(parents=True, exist_ok=True)
    out.to_csv(folder / "lender.csv", index=False)
    (folder / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    return folder / "lender.csv", folder / "schema.yaml"


def train_on(tmp: Path, path: Path, *overrides: str) -> dict[str, float]:
    with initialize_config_module("riskml.conf", version_base="1.3"):
        cfg = compose("train", overrides=["data=panel", f"data.path={path}", f"tracking.uri=sqlite:///{tmp}/mlflow.db",
                                          f"export.dir={tmp}/models", "eval.plots=false", *overrides])
    result = train.run(cfg)
    ds, test = result.dataset, result.test_index
    events = ds.cause.iloc[test][ds.y[test] > 0].astype(object).value_counts().to_dict()
    return {**result.metrics, "causes": events, **{name: auc_without(result, causes) for name, causes in SET_ASIDE.items()}}


#: Adverse events set aside, one line each: the cause whose signal ``invest_share`` carries, and the two that
#: ``policy_index`` and ``maintenance`` carry
SET_ASIDE = {"abnormal use": ("abnormal_use",), "policy or maintenance": ("policy_tightening", "maintenance")}


def auc_without(result, causes: tuple[str, ...]) -> float:
    """The test adverse AUC without the snapshots whose adverse event was for one of ``causes`` (the recorded
    cause, which a lender has too): what is left once those causes' events are set aside."""
    ds, test = result.dataset, result.test_index
    y = (ds.y[test] > 0).astype(int)
    p = 1.0 - result.model.predict_proba(ds.X.iloc[test])[:, 0]
    keep = ~np.isin(ds.cause.iloc[test].astype(object).to_numpy(), causes)
    return float(roc_auc_score(y[keep], p[keep])) if 0 < y[keep].sum() < keep.sum() else float("nan")


def full_vs_lender(n: int, tmp: Path, tighten: int | None = None) -> None:
    panel = simulate(SimConfig(n_borrowers=n, n_months=24 if tighten is None else tighten + 8, seed=11,
                               tighten_month=tighten)).panel
    panel.to_parquet(tmp / "full.parquet")
    csv, schema = lender_export(panel, tmp / "lender")
    full = train_on(tmp, tmp / "full.parquet", "target=adverse_3m", "register.name=full")
    lend = train_on(tmp, csv, "target=adverse_3m", f"data.schema={schema}", "register.name=lender")
    # the same columns as the lender's, in riskml's names: what the schema's translation itself costs
    panel.drop(columns=list(DROPPED)).to_parquet(tmp / "subset.parquet")
    same = train_on(tmp, tmp / "subset.parquet", "target=adverse_3m", "register.name=subset",
                    f"data.schema={subset_schema(tmp)}")
    a, b, c = full["roc_auc_adverse"], lend["roc_auc_adverse"], same["roc_auc_adverse"]
    print(f"borrowers={n} months={panel['month'].max() + 1} tighten_month={tighten} target=adverse_3m; test adverse "
          f"events by cause: {lend['causes']}")
    print(f"adverse AUC, riskml's full schema:                    {a:.4f}")
    print(f"adverse AUC, the lender's schema:                     {b:.4f}  (difference {a - b:+.4f}; "
          "target |diff| <= 0.03)")
    print(f"adverse AUC, riskml's names without the four columns: {c:.4f}  (the lender's minus this: {b - c:+.4f})")
    for name in SET_ASIDE:
        a, b = full[name], lend[name]
        print(f"without the snapshots whose adverse event is {name}: full {a:.4f}, the lender's {b:.4f} "
              f"(difference {a - b:+.4f})")


def subset_schema(tmp: Path) -> Path:
    """A schema in riskml's own names for the panel without the dropped columns."""
    keep = [c for c in ("credit_limit", "drawn", "repaid", "balance", "overdue_amount", "days_past_due",
                        "other_lenders", "recent_applications", "debt_to_income", "rapid_draws", "external_score",
                        "income", "consumption", "fraud_flag", "months_on_book")]
    schema = {"id": "borrower_id", "month": "month",
              "status": {"column": "status", **{s: [s] for s in STATES}},
              "cause": {"column": "cause", "values": {k: k for k in CAUSE_CODES}},
              "columns": {c: {"as": c} for c in keep}}
    (tmp / "subset.yaml").write_text(yaml.safe_dump(schema))
    return tmp / "subset.yaml"


def short_panel(n: int, tmp: Path) -> None:
    """6 months, two states, 4 behaviour columns, horizon 1: riskml against LightGBM on lag features, both
    scored on riskml's own test rows (held-out accounts, the last months) and fitted on its training rows."""
    # a lender's 6-month extract of its book, every account on book for all 6 months (one cohort), as a card
    # portfolio's 6 months of repayment status are
    panel = simulate(SimConfig(n_borrowers=n, n_months=6, seed=12, open_months=1)).panel
    cols = ["days_past_due", "balance", "credit_limit", "repaid"]
    panel = panel[["borrower_id", "month", "status", *cols]].copy()
    panel["status"] = np.where(panel["status"].astype(str) == "normal", "current", "late")
    panel.to_csv(tmp / "short.csv", index=False)
    schema = {"id": "borrower_id", "month": "month", "status": {"column": "status", "normal": ["current"],
                                                                  "suspended": ["late"]},
              "columns": {c: {"as": c} for c in cols}}
    (tmp / "short.yaml").write_text(yaml.safe_dump(schema))
    overrides = ["target=adverse_3m", "target.horizon=1", "data.min_history=2", "data.windows=[2,3]",
                 "split.test_months=1", f"data.schema={tmp / 'short.yaml'}", "register.name=short"]
    with initialize_config_module("riskml.conf", version_base="1.3"):
        cfg = compose("train", overrides=["data=panel", f"data.path={tmp / 'short.csv'}", "eval.plots=false",
                                          f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models",
                                          *overrides])
    result = train.run(cfg)
    ds, test = result.dataset, result.test_index
    fold = make_folds(ds, OmegaConf.to_container(cfg, resolve=True))[0]
    y = (ds.y > 0).astype(int)
    ours = roc_auc_score(y[test], 1.0 - result.model.predict_proba(ds.X.iloc[test])[:, 0])
    # the baseline's features: lags 0..2 of the 4 columns at each snapshot's (borrower, month)
    p = panel.sort_values(["borrower_id", "month"]).reset_index(drop=True)
    lags = pd.concat([p.groupby("borrower_id")[cols].shift(k).add_suffix(f"_lag{k}") for k in range(3)], axis=1)
    lags[["borrower_id", "month"]] = p[["borrower_id", "month"]]
    X = ds.keys[["borrower_id", "month"]].merge(lags, on=["borrower_id", "month"], how="left").drop(
        columns=["borrower_id", "month"])
    booster = lgb.train({"objective": "binary", "verbose": -1, "seed": 0, "num_threads": 1,
                         "min_data_in_leaf": 50},
                        lgb.Dataset(X.iloc[fold.train], y[fold.train]), num_boost_round=1000,
                        valid_sets=[lgb.Dataset(X.iloc[fold.valid], y[fold.valid])],
                        callbacks=[lgb.early_stopping(50, verbose=False)])
    base = roc_auc_score(y[test], booster.predict(X.iloc[test], num_iteration=booster.best_iteration))
    print(f"short panel: borrowers={n} months=6 states=2 columns=4 horizon=1; test rows {len(test)} "
          f"(held-out accounts, out of time), adverse rate {y[test].mean():.3f}")
    print(f"riskml P(adverse) AUC:                       {ours:.4f}")
    print(f"plain LightGBM on lag features, same rows:   {base:.4f}  (riskml minus baseline {ours - base:+.4f})")


def on_cluster(n: int, tmp: Path) -> None:
    """The lender's panel trained on one machine and on a local Dask cluster (2 workers)."""
    panel = simulate(SimConfig(n_borrowers=n, n_months=24, seed=11)).panel
    csv, schema = lender_export(panel, tmp / "lender")
    one = train_on(tmp, csv, "target=adverse_3m", f"data.schema={schema}", "register.name=one",
                   "model.num_boost_round=80")
    many = train_on(tmp, csv, "target=adverse_3m", f"data.schema={schema}", "register.name=many",
                    "model.num_boost_round=80", "cluster=local", "cluster.workers=2")
    a, b = one["roc_auc_adverse"], many["roc_auc_adverse"]
    print(f"lender's schema, borrowers={n} months=24 target=adverse_3m num_boost_round=80")
    print(f"adverse AUC one machine: {a:.4f}; cluster=local (2 workers): {b:.4f} (difference {a - b:+.4f}; "
          "target |diff| <= 0.005)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--borrowers", type=int, default=6000)
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--tighten", type=int, default=None,
                    help="the platform tightens from this month (the tightening scenario), 8 months before the end")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.short or args.cluster:
            (short_panel if args.short else on_cluster)(args.borrowers, Path(tmp))
        else:
            full_vs_lender(args.borrowers, Path(tmp), args.tighten)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of monitoring: ``riskml.monitor`` time and peak memory as the portfolio grows.

On the portfolio ``bench_predict.py`` caches in its work folder (run it
first: 1,000,000 borrowers x 24 months and a 100,000-borrower slice) and a
scoring system trained with its reference profile (cached there too), each
in a fresh process with its peak resident memory (``VmHWM``):
1. ``riskml.monitor`` on the slice and on the whole portfolio (features,
   scores, reasons, PSI, band migration; read bucket by bucket);
2. the reference: ``pandas.read_parquet`` of the same panel, i.e. the memory
   any job needs that holds the whole batch at once.
Target: monitor memory flat from 100k to 1M borrowers and
below the whole-panel reference.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_monitor.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEAK = 'int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) / 1024'
MONITOR = f"""
import json, re, sys, time
from hydra import compose, initialize_config_module
from riskml import monitor
with initialize_config_module("riskml.conf.monitor", version_base="1.3"):
    cfg = compose("monitor", overrides=sys.argv[1:])
t = time.perf_counter()
r = monitor.run(cfg)
print(json.dumps({{"seconds": time.perf_counter() - t, "n": r.document["n_scored"], "level": r.level,
                  "peak_mib": {PEAK}}}))
"""
READ = f"""
import json, re, sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_parquet(sys.argv[1])
print(json.dumps({{"seconds": time.perf_counter() - t, "rows": len(df), "peak_mib": {PEAK}}}))
"""


def child(code: str, *args: str) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, check=False)
    if p.returncode:
        sys.exit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out" / "predict"))
    ap.add_argument("--borrowers", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    args = ap.parse_args()
    work = Path(args.workdir)
    inputs = {"small": work / f"first_{args.small}.parquet",
              "full": work / "data" / f"bench_{args.borrowers}" / "panel.parquet"}
    if not all(p.exists() for p in inputs.values()):
        sys.exit(f"{work}: run benchmarks/bench_predict.py first (it makes the portfolio)")
    model = work / "models" / "monitor"
    if not (model / "system.json").exists():  # bench_predict's model has no reference profile (no report)
        from hydra import compose, initialize_config_module

        from riskml import train

        with initialize_config_module("riskml.conf", version_base="1.3"):
            train.run(compose("train", overrides=[
                f"data.data_dir={work}/data", "eval.oracle=false", "eval.fidelity=false", "eval.plots=false",
                f"tracking.uri=sqlite:///{work}/mlflow.db", "register.enabled=false",
                f"export.dir={model.parent}", f"export.name={model.name}"]))
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    rows = {}
    for label, inp in inputs.items():
        m = child(MONITOR, f"input={inp}", f"model={model}", f"output={work}/monitor_{label}", "fail_on=never",
                  "tracking.enabled=false")
        r = child(READ, str(inp))
        rows[label] = (m, r)
        print(f"{label}: monitor {m['n']:,} accounts in {m['seconds']:.1f} s, peak {m['peak_mib']:,.0f} MiB "
              f"(level {m['level']}); reference read_parquet of {r['rows']:,} rows: peak {r['peak_mib']:,.0f} MiB "
              f"-> monitor / reference {m['peak_mib'] / r['peak_mib']:.2f}")
    (ms, _), (mf, rf) = rows["small"], rows["full"]
    print(f"monitor peak memory 1M / 100k: {mf['peak_mib'] / ms['peak_mib']:.2f}; "
          f"1M: {mf['peak_mib']:,.0f} MiB against {rf['peak_mib']:,.0f} MiB to hold the panel alone; "
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

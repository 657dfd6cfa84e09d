"""Benchmark of the tree scorer: riskml's ``TreePredictor`` against LightGBM and two model compilers.

In one process, on the same feature matrix (borrower snapshots of a simulated
portfolio: riskml's 74 features, float32, C order, with their missing values):
for each model shape - riskml's default (150 trees x 12 leaves), 300 x 31 and
1000 x 63 - raw scores from

- LightGBM's ``Booster.predict(raw_score=True)`` (the reference),
- riskml's ``TreePredictor.raw`` (checked equal to LightGBM's bit for bit),
- ``lleaves`` 1.3 (LLVM; its release calls llvmlite's legacy pass manager,
  gone from the llvmlite numba needs, so this script compiles it through a
  small shim onto the new pass manager: the same IR and optimisation level;
  where even that fails it says so and goes on),
- ``tl2cgen`` 1.0 (C through gcc),

timed interleaved (one round: every scorer once, in turn; best of
``--rounds``), as rows/s (wall) and rows per CPU-second (the process's CPU
time, all threads: what a shared machine pays). lleaves and tl2cgen are
bench-only extras (``uv pip install lleaves==1.3.0 tl2cgen==1.0.0``); without
them their rows say "not installed". Models and the matrix are cached in
``--workdir``.

Target: riskml >= 6x LightGBM in rows per CPU-second on each shape, and >= lleaves.

Usage:
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_scorer.py [--rows 500000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {"default": (150, 12), "300x31": (300, 31), "1000x63": (1000, 63)}  # default: riskml's 12-leaf trees


def feature_matrix(work: Path, n_borrowers: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """Snapshots at several months of a simulated portfolio and whether each borrower is down 3 months on."""
    path = work / f"snapshots_{n_borrowers}.npz"
    if path.exists():
        z = np.load(path)
        return z["X"], z["y"]
    from riskml.features import build_features
    from riskml.simulate import SimConfig, simulate
    panel = simulate(SimConfig(n_borrowers=n_borrowers, n_months=24, seed=5)).panel
    status = panel.pivot(index="borrower_id", columns="month", values="status")
    xs, ys = [], []
    for m in (6, 9, 12, 15, 18, 20):
        s = build_features(panel, as_of=m)
        xs.append(s.X.to_numpy(np.float32))
        ys.append((status[m + 3].loc[s.keys["borrower_id"]].astype(str) != "normal").to_numpy(np.int8))
    X, y = np.vstack(xs), np.concatenate(ys)
    np.savez(path, X=X, y=y)
    return X, y


def model(work: Path, name: str, X: np.ndarray, y: np.ndarray) -> Path:
    rounds, leaves = SHAPES[name]
    path = work / f"model_{name}.txt"
    if not path.exists():
        params = {"objective": "binary", "num_leaves": leaves, "learning_rate": 0.05, "min_data_in_leaf": 50,
                  "verbose": -1, "seed": 0, "num_threads": 2}
        lgb.train(params, lgb.Dataset(X[:150_000], y[:150_000]), rounds).save_model(str(path))
    return path


def lleaves_scorer(path: Path, work: Path | None = None, timeout: float | None = None):
    """lleaves' compiled model, through the shim onto llvmlite's new pass manager; a string says why not.

    With ``work``, the compile runs in a child process (killed after ``timeout`` s) that leaves
    lleaves' object cache, which this process then loads.
    """
    if work is not None:
        cache = work / f"{path.stem}.lleaves.o"
        if not cache.exists():
            code = f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_scorer as b; " \
                   f"s = b._lleaves(__import__('pathlib').Path({str(path)!r}), {str(cache)!r}); " \
                   "print(s if isinstance(s, str) else 'ok')"
            try:
                p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                return f"did not finish compiling in {timeout:.0f} s"
            if not cache.exists():
                return (p.stdout.strip() or p.stderr.strip()[-200:] or "no object file")
        return _lleaves(path, str(cache))
    return _lleaves(path, None)


def _lleaves(path: Path, cache: str | None):
    try:
        import lleaves
        import lleaves.llvm_binding as binding
        import lleaves.lleaves as front
        import llvmlite.binding as llvm
        import llvmlite.ir
        from lleaves.compiler.ast import parse_to_ast
        from lleaves.compiler.codegen import gen_forest
    except ImportError:
        return "not installed"

    def compile_to_module(file_path, fblocksize=34, finline=True, raw_score=False, froot_func_name="forest_root",
                          use_fp64=True):  # lleaves' own, with PassBuilder for the removed PassManagerBuilder
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        forest = parse_to_ast(file_path)
        forest.raw_score = raw_score
        ir = llvmlite.ir.Module(name="forest")
        gen_forest(forest, ir, fblocksize, froot_func_name, use_fp64)
        ir.triple = llvm.get_process_triple()
        module = llvm.parse_assembly(str(ir))
        module.verify()
        tm = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten())
        pto = llvm.create_pipeline_tuning_options(3)
        if finline:
            pto.inlining_threshold = 1
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(module, pb)
        return module

    try:
        m = lleaves.Model(model_file=str(path))
        try:
            m.compile(cache=cache, raw_score=True)
        except (AttributeError, RuntimeError):  # the release as it is: legacy pass manager, llvm.initialize()
            front.compiler.compile_to_module = compile_to_module
            binding._initialize_llvm = lambda: (llvm.initialize_native_target(), llvm.initialize_native_asmprinter())
            m = lleaves.Model(model_file=str(path))
            m.compile(cache=cache, raw_score=True)
    except Exception as e:  # noqa: BLE001 - any failure of a competitor is reported, not fatal
        return f"does not compile ({type(e).__name__}: {str(e)[:80]})"
    return lambda X: m.predict(X, n_jobs=os.cpu_count())


def tl2cgen_scorer(path: Path, work: Path):
    try:
        import tl2cgen
        import treelite
    except ImportError:
        return "not installed"
    try:
        lib = work / f"{path.stem}.so"
        if not lib.exists():
            tl2cgen.export_lib(treelite.frontend.load_lightgbm_model(str(path)), toolchain="gcc", libpath=str(lib),
                               params={"parallel_comp": 8}, nthread=os.cpu_count())
        pred = tl2cgen.Predictor(str(lib), nthread=os.cpu_count())
    except Exception as e:  # noqa: BLE001
        return f"does not compile ({type(e).__name__}: {str(e)[:80]})"
    return lambda X: pred.predict(tl2cgen.DMatrix(X), pred_margin=True).reshape(len(X))


def timed(fn, X) -> tuple[np.ndarray, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn(X)
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--compilers", default="lleaves,tl2cgen", help="the model compilers to compare ('' for none)")
    ap.add_argument("--compile-timeout", type=float, default=1200, help="seconds lleaves may take to compile a model")
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out" / "scorer"))
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    from riskml.explain.predictor import TreePredictor

    X_all, y = feature_matrix(work)
    X = np.ascontiguousarray(np.resize(X_all, (args.rows, X_all.shape[1])))  # rows repeat past the sample
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"{len(X):,} rows x {X.shape[1]} features float32 ({np.isnan(X).mean():.1%} missing); "
          f"interleaved, best of {args.rounds}")
    for name in args.shapes.split(","):
        path = model(work, name, X_all, y)
        booster = lgb.Booster(model_file=str(path))
        t = time.perf_counter()
        tp = TreePredictor(booster)
        scorers = {"LightGBM": lambda A: booster.predict(A, raw_score=True),
                   "riskml": lambda A: tp.raw(A)[:, 0]}
        builds = {"riskml": time.perf_counter() - t}
        tp.raw(X[:1000])  # numba's compile (or cache load), once per process
        makers = {"lleaves": lambda: lleaves_scorer(path, work, args.compile_timeout),
                  "tl2cgen": lambda: tl2cgen_scorer(path, work)}
        for label in args.compilers.split(",") if args.compilers else ():
            make = makers[label]
            t = time.perf_counter()
            s = make()
            builds[label] = time.perf_counter() - t
            scorers[label] = s
        live = {k: v for k, v in scorers.items() if callable(v)}
        best: dict[str, tuple[float, float]] = {k: (np.inf, np.inf) for k in live}
        outs: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for label, fn in live.items():
                outs[label], w, c = timed(fn, X)
                best[label] = (min(best[label][0], w), min(best[label][1], c))
        ref = outs["LightGBM"]
        trees = booster.dump_model()["tree_info"]
        print(f"\n{name}: {len(trees)} trees, up to {max(t['num_leaves'] for t in trees)} leaves, "
              f"deepest path {max(_depth(t['tree_structure']) for t in trees)}; load {os.getloadavg()[0]:.1f}")
        lw, lc = best["LightGBM"]
        print(f"  {'scorer':9s} {'rows/s':>12s} {'x LGBM':>7s} {'rows/CPU-s':>12s} {'x LGBM':>7s}  raw scores vs LightGBM")
        for label, s in scorers.items():
            if not callable(s):
                print(f"  {label:9s} {s}")
                continue
            w, c = best[label]
            diff = outs[label] - ref
            same = "bit-identical" if np.array_equal(outs[label], ref) else f"max |diff| {np.abs(diff).max():.1e}"
            build = f"; built in {builds[label]:.2f} s" if label in builds else ""
            print(f"  {label:9s} {len(X) / w:12,.0f} {lw / w:7.2f} {len(X) / c:12,.0f} {lc / c:7.2f}  {same}{build}")


def _depth(node: dict) -> int:
    return 0 if "leaf_value" in node else 1 + max(_depth(node["left_child"]), _depth(node["right_child"]))


if __name__ == "__main__":
    main()

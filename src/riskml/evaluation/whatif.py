"""The what-if measured: riskml's ``p_after`` against the simulator's oracle under intervention.

Every explained prediction with an actionable reason carries ``p_after``: the
probability once that reason's advice is followed (P(adverse) over the next
3 months for an account normal at t, P(recovery) within 6 months for a
suspended or closed one). On simulated data the truth is known: the
simulator re-simulates the snapshot's future with the borrower following the
advice from t+1 (:func:`riskml.simulate.intervention.follow_advice`). A
*case* is a (snapshot, actionable reason) pair as batch prediction gives it
(the model's top ``k`` reasons; a recovery-side row the platform's rule
explains has no what-if). Per factor and overall: the mean absolute error of
``p_after`` against the truth, calibration by decile of ``p_after``, and the
share of cases with the right direction (advice that truly lowers the risk,
or raises P(recovery), shown doing so; judged where the true change is larger
than its noise). Stage code: arrays in, numbers and tables out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from riskml import explain
from riskml.evaluation import kit
from riskml.evaluation.steps import scenario_snapshots, side_of
from riskml.explain.reasons import rank_factors
from riskml.explain.recovery import recovery_rule, recovery_side
from riskml.exceptions import ConfigError
from riskml.factors import CATALOGUE
from riskml.features.windows import FeatureSpec
from riskml.measure.whatif_map import fit_change
from riskml.simulate import SimConfig
from riskml.simulate.intervention import ACTIONABLE, follow_advice

log = logging.getLogger(__name__)

#: the smallest change of a probability counted as a direction (below it the advice changes nothing)
MIN_CHANGE = 0.005


@dataclass
class WhatIf:
    """The what-if against the truth on one set of snapshots.

    Attributes:
        cases: one row per case: borrower_id, month, factor, p_before / p_after (the model's),
            true_before / true_after (the intervention oracle's) and se_true_diff.
        metrics: ``whatif_mae``, ``whatif_mae_before`` (the model's own probability against the plain
            oracle's), ``whatif_direction``, ``whatif_cases`` and the same per factor (``whatif_mae_<factor>``...).
        per_factor: index factor (and ``overall``): cases, mae, bias (mean p_after - truth), mae_before
            (the model's probability without the advice against the oracle's: the floor of the what-if's
            error), judged (cases whose true direction is clear), direction.
        calibration: rows (factor, decile of p_after): cases, p_after, truth.
    """

    cases: pd.DataFrame
    metrics: dict[str, float]
    per_factor: pd.DataFrame
    calibration: pd.DataFrame


def reason_cases(expl: explain.FactorExplainer, X: pd.DataFrame, proba: np.ndarray, *, side: str, k: int = 3,
                 status: Any = None, cause: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(row, factor id) of every actionable reason among each row's top ``k``, as batch prediction lists
    them; on the recovery side, rows the platform's rule explains have none."""
    contrib = explain.adverse_contributions(expl.contributions(X), proba, adverse_classes=range(1, proba.shape[1]))
    signed = contrib if side == "adverse" else -recovery_side(contrib, expl.factors)
    order, _ = rank_factors(signed, expl.factors, k=k)
    keep = np.ones(len(X), dtype=bool)
    if side == "recovery":
        rule, _ = recovery_rule(status, cause, X["maintenance"], X["months_in_status"], order[:, 0] >= 0)
        keep = pd.isna(rule)
    ids = np.asarray(expl.factors + [""], dtype=object)
    actionable = np.isin(ids, ACTIONABLE)
    rows, rank = np.nonzero((order >= 0) & actionable[order] & keep[:, None])
    return rows, ids[order[rows, rank]]


def _sample(factor: np.ndarray, most: int, seed: int) -> np.ndarray:
    """At most ``most`` cases per factor, seeded; positions in order."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(factor == f))[:most] for f in ACTIONABLE]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def measure(*, sim: SimConfig, keys: pd.DataFrame, X: pd.DataFrame, proba: np.ndarray,
            expl: explain.FactorExplainer, predict: Callable[[pd.DataFrame], np.ndarray],
            specs: list[FeatureSpec], side: str, horizon: int, ev: Mapping[str, Any], cache: Any,
            status: Any = None, cause: Any = None, seed: int = 0,
            after: Callable[[pd.DataFrame, str], np.ndarray] | None = None) -> WhatIf | None:
    """Measure ``p_after`` of the snapshots ``keys`` / ``X`` (scored ``proba``) against the intervention truth.

    ``predict`` maps a feature frame to P(the side's outcome); ``after(X, factor)`` gives ``p_after``
    (default: rescored with the factor rectified, as batch prediction does). ``ev``: the
    ``eval`` settings (``whatif_max_cases`` per factor, ``whatif_n_paths``, ``whatif_k``); ``cache``
    keeps the truth (``io.eval_cache``). ``None`` when no snapshot has an actionable reason.
    """
    rows, factor = reason_cases(expl, X, proba, side=side, k=int(ev.get("whatif_k", 3)), status=status, cause=cause)
    pick = _sample(factor, int(ev.get("whatif_max_cases", 1000)), seed)
    if len(pick) == 0:
        return None
    rows, factor = rows[pick], factor[pick]
    ck = pd.DataFrame({"borrower_id": keys["borrower_id"].to_numpy()[rows].astype(np.int64),
                       "month": keys["month"].to_numpy()[rows].astype(np.int64), "factor": factor})
    n_paths = int(ev.get("whatif_n_paths", 100))
    truth = cache.frame("whatif", {"sim": sim.to_dict(), "keys": ck, "horizon": horizon, "n_paths": n_paths,
                                   "seed": seed},
                        lambda: follow_advice(sim, ck, horizon=horizon, n_paths=n_paths, seed=seed))
    outcome = "adverse" if side == "adverse" else "recovery"
    Xc = X.iloc[rows]
    p_after = _by_factor(after or _rectified(predict, specs), Xc, factor)
    cases = ck.assign(p_before=predict(Xc), p_after=p_after, true_before=truth[f"p_{outcome}_before"].to_numpy(),
                      true_after=truth[f"p_{outcome}"].to_numpy(), se_true_diff=truth[f"se_d_{outcome}"].to_numpy())
    return summarise(cases, side=side)


def _rectified(predict: Callable[[pd.DataFrame], np.ndarray], specs: list[FeatureSpec]):
    from riskml.features.windows import rectify

    return lambda X, f: predict(rectify(X, f, specs))


def summarise(cases: pd.DataFrame, *, side: str, min_change: float = MIN_CHANGE) -> WhatIf:
    """Metrics and tables of measured cases (see :class:`WhatIf`).

    Direction is judged where the advice truly changes the probability: the change with and without it
    (the same futures) larger than ``min_change`` and than twice its standard error. A case is right
    when the model's change has the same sign (a model that shows no change is wrong there). Where the
    advice changes nothing, the error of ``p_after`` is the mean absolute error's to show.
    """
    true_d = (cases["true_after"] - cases["true_before"]).to_numpy()
    model_d = (cases["p_after"] - cases["p_before"]).to_numpy()
    judged = np.abs(true_d) > np.maximum(2 * cases["se_true_diff"].to_numpy(), min_change)
    right = np.sign(model_d) == np.sign(true_d)
    err = (cases["p_after"] - cases["true_after"]).to_numpy()
    frame = pd.DataFrame({"factor": cases["factor"].to_numpy(), "abs": np.abs(err), "err": err,
                          "abs_before": np.abs(cases["p_before"] - cases["true_before"]).to_numpy(),
                          "judged": judged, "right": right & judged})
    groups = {f: frame[frame["factor"] == f] for f in ACTIONABLE if (frame["factor"] == f).any()}
    groups["overall"] = frame
    per, metrics = {}, {}
    for name, g in groups.items():
        n_j = int(g["judged"].sum())
        per[name] = {"cases": len(g), "mae": g["abs"].mean(), "bias": g["err"].mean(),
                     "mae_before": g["abs_before"].mean(), "judged": n_j,
                     "direction": g["right"].sum() / n_j if n_j else np.nan}
        suffix = "" if name == "overall" else f"_{name}"
        # mae_before: the model's own error on the same cases, so a run splits the what-if's error into
        # "the model is wrong" and "the what-if step is wrong"
        metrics.update({f"whatif_mae{suffix}": float(per[name]["mae"]),
                        f"whatif_mae_before{suffix}": float(per[name]["mae_before"]),
                        f"whatif_direction{suffix}": float(per[name]["direction"]),
                        f"whatif_cases{suffix}": float(len(g))})
    per_factor = pd.DataFrame.from_dict(per, orient="index").rename_axis("factor")
    per_factor.insert(0, "side", side)
    return WhatIf(cases, metrics, per_factor, _calibration(cases))


def _calibration(cases: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Mean p_after and mean truth by decile of p_after, per factor and overall."""
    parts = []
    for name, g in [*cases.groupby("factor", sort=False), ("overall", cases)]:
        rank = g["p_after"].rank(method="first").to_numpy()
        decile = np.minimum((bins * (rank - 1) / max(len(g), 1)).astype(int), bins - 1) + 1
        t = g.assign(decile=decile).groupby("decile").agg(cases=("p_after", "size"), p_after=("p_after", "mean"),
                                                          truth=("true_after", "mean"))
        parts.append(t.reset_index().assign(factor=name))
    return pd.concat(parts, ignore_index=True).set_index(["factor", "decile"])


def factor_label(factor: str) -> str:
    return CATALOGUE[factor].name if factor in CATALOGUE else factor


@dataclass
class WhatIfReport:
    """The what-if of one model on its test set and on a fresh portfolio per scenario of ``eval.whatif_scenarios``.

    ``metrics``: the test set's ``whatif_*`` and ``whatif_<scenario>_*``; ``per_factor`` and ``calibration``:
    :class:`WhatIf`'s tables with a ``data`` level (``test`` or the scenario); all empty when nothing was
    measured.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    per_factor: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables a run logs, by file name."""
        if self.per_factor is None:
            return {}
        return {"whatif_per_factor.csv": self.per_factor, "whatif_calibration.csv": self.calibration}


def check_eval(ev: Mapping[str, Any]) -> None:
    """Fail on a bad ``eval.cache`` or ``eval.whatif*`` setting before any data is read (:class:`ConfigError`)."""
    for key in ("cache", "whatif"):
        if not isinstance(ev.get(key, True), bool):
            raise ConfigError(f"eval.{key}", ev[key], "true or false")
    for key, lo in (("whatif_k", 1), ("whatif_max_rows", 1), ("whatif_max_cases", 1), ("whatif_n_paths", 2),
                    ("whatif_fit_cases", 1), ("whatif_fit_n_paths", 2)):
        v = ev.get(key, lo)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (key == "whatif_k" and v > 4):
            raise ConfigError(f"eval.{key}", v, f"a whole number >= {lo}" + (" and <= 4" if key == "whatif_k" else ""))
    learn = ev.get("whatif_learn") or []
    if not isinstance(learn, (list, tuple)) or any(t not in ("adverse_3m", "status_3m", "recovery_6m") for t in learn):
        raise ConfigError("eval.whatif_learn", learn, "a list of targets among adverse_3m, status_3m, recovery_6m")


def learn_whatif(model: Any, ds: Any, rows: np.ndarray, cfg: Mapping[str, Any], *, cache: Any) -> Any:
    """The learned what-if of ``model`` (``measure.whatif_map``): its cases among the training snapshots
    ``rows`` (at most ``eval.whatif_fit_cases`` per factor, seeded), their true change under the advice
    (``eval.whatif_fit_n_paths`` futures each, with and without it), one change model fitted on them."""
    ev, seed = cfg["eval"], int(cfg["seed"]) + 1  # other cases and other futures than the measurement's
    side, horizon = side_of(cfg["target"]["name"]), int(cfg["target"]["horizon"])
    expl = kit.explainer(model, ds.feature_factors)
    X, status = ds.X.iloc[rows], ds.keys["status"].iloc[rows]
    proba = model.predict_proba(X)
    r, factor = reason_cases(expl, X, proba, side=side, k=int(ev.get("whatif_k", 3)), status=_at(status, None),
                             cause=_at(ds.cause.iloc[rows], None))
    pick = _sample(factor, int(ev.get("whatif_fit_cases", 4000)), seed)
    r, factor = r[pick], factor[pick]
    keys = pd.DataFrame({"borrower_id": ds.keys["borrower_id"].to_numpy()[rows[r]].astype(np.int64),
                         "month": ds.keys["month"].to_numpy()[rows[r]].astype(np.int64), "factor": factor})
    n_paths = int(ev.get("whatif_fit_n_paths", 50))
    truth = cache.frame("whatif", {"sim": ds.sim.to_dict(), "keys": keys, "horizon": horizon, "n_paths": n_paths,
                                   "seed": seed},
                        lambda: follow_advice(ds.sim, keys, horizon=horizon, n_paths=n_paths, seed=seed))
    outcome = "adverse" if side == "adverse" else "recovery"
    Xc = X.iloc[r]
    before, rect = 1.0 - proba[r, 0], _rectified(_positive(model), _specs(ds))
    rect = _by_factor(rect, Xc, factor)
    change = (truth[f"p_{outcome}"] - truth[f"p_{outcome}_before"]).to_numpy()
    log.info("what-if learned from %d cases (%s side)", len(r), side)
    return fit_change(Xc[model.feature_names].to_numpy(dtype=np.float64), factor, before, rect, change,
                      factors=ACTIONABLE, direction=-1 if side == "adverse" else 1,
                      after=truth[f"p_{outcome}"].to_numpy(), seed=seed,
                      num_threads=int(cfg.get("num_threads") or 2))


def _positive(model: Any) -> Callable[[pd.DataFrame], np.ndarray]:
    return lambda X: 1.0 - model.predict_proba(X)[:, 0]


def _by_factor(fn: Callable[[pd.DataFrame, str], np.ndarray], X: pd.DataFrame, factor: np.ndarray) -> np.ndarray:
    out = np.empty(len(X))
    for f in np.unique(factor):
        m = np.flatnonzero(factor == f)
        out[m] = fn(X.iloc[m], f)
    return out


def model_after(model: Any, specs: list[FeatureSpec]) -> Callable[[pd.DataFrame, str], np.ndarray]:
    """``p_after`` as the shipped model gives it: the rectified rescoring, through the learned what-if if any."""
    rescored = _rectified(_positive(model), specs)
    if model.whatif is None:
        return rescored
    return lambda X, f: model.whatif.apply(X[model.feature_names].to_numpy(dtype=np.float64), f,
                                           _positive(model)(X), rescored(X, f))


def whatif_metrics(model: Any, ds: Any, test: np.ndarray, proba: np.ndarray, cfg: Mapping[str, Any], *,
                   cache: Any, snapshots: Callable[[SimConfig], Any] | None = None,
                   learn_rows: np.ndarray | None = None) -> WhatIfReport:
    """The what-if of a LightGBM model of synthetic data against the intervention truth (see :func:`measure`).

    For a target of ``eval.whatif_learn`` the what-if is first learned from the intervention data of the
    training snapshots ``learn_rows`` (:func:`learn_whatif`) and set on ``model`` (its manifest ships it).

    On the test snapshots, and on the last ``split.test_months`` snapshot months of a fresh portfolio per
    scenario of ``eval.whatif_scenarios`` (the fidelity's portfolios, whose snapshots ``snapshots(sim)``
    builds: by default as the fidelity does), at most ``eval.whatif_max_rows`` rows each. Empty when
    ``eval.whatif`` is false or there is nothing to measure.
    """
    ev, target = cfg["eval"], cfg["target"]["name"]
    if not ev.get("whatif", True) or model.kind != "lightgbm" or ds.sim is None or ds.cause is None:
        return WhatIfReport()
    snapshots = snapshots or (lambda sim: scenario_snapshots(sim, ds, cfg, cache=cache))
    side, horizon, seed = side_of(target), int(cfg["target"]["horizon"]), int(cfg["seed"])
    t0 = time.perf_counter()
    if target in (ev.get("whatif_learn") or ()) and learn_rows is not None:
        model.whatif = learn_whatif(model, ds, learn_rows, cfg, cache=cache)
        log.info("what-if learned in %.1f s", time.perf_counter() - t0)
    expl = kit.explainer(model, ds.feature_factors)
    specs = _specs(ds)

    def predict(X: pd.DataFrame) -> np.ndarray:
        return 1.0 - model.predict_proba(X)[:, 0]

    def one(sim, keys, X, p, status, cause, name) -> WhatIf | None:
        rows = np.arange(len(X))
        most = int(ev.get("whatif_max_rows", 20_000))
        if len(rows) > most:
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), most, replace=False))
        got = measure(sim=sim, keys=keys.iloc[rows], X=X.iloc[rows], proba=p[rows], expl=expl, predict=predict,
                      specs=specs, side=side, horizon=horizon, ev=ev, cache=cache, status=_at(status, rows),
                      cause=_at(cause, rows), seed=seed, after=model_after(model, specs))
        if got is not None:
            log.info("what-if %s side, %s: MAE %.4f, direction %.3f over %d cases", side, name,
                     got.metrics["whatif_mae"], got.metrics["whatif_direction"], len(got.cases))
        return got

    results = {"test": one(ds.sim, ds.keys.iloc[test], ds.X.iloc[test], proba, ds.keys["status"].iloc[test],
                           ds.cause.iloc[test], "test")}
    months = int(cfg["split"].get("test_months") or 4)
    for name, scenario in (ev.get("whatif_scenarios") or {}).items():
        n = min(int(ev.get("fidelity_n_borrowers", 20_000)), ds.sim.n_borrowers)
        sim = ds.sim.with_scenario(scenario, n_borrowers=n, seed=ds.sim.seed + int(ev.get("fidelity_seed_offset", 1)))
        snaps = snapshots(sim)
        month = snaps.keys["month"].to_numpy()
        last = np.flatnonzero(month > month.max() - months)
        X = snaps.X.iloc[last]
        results[name] = one(sim, snaps.keys.iloc[last], X, model.predict_proba(X), snaps.keys["status"].iloc[last],
                            snaps.cause.iloc[last], name)
    results = {k: v for k, v in results.items() if v is not None}
    log.info("what-if of %s measured in %.1f s", target, time.perf_counter() - t0)
    if not results:
        return WhatIfReport()
    metrics = {}
    for name, r in results.items():
        metrics.update(r.metrics if name == "test" else
                       {f"whatif_{name}_{k[len('whatif_'):]}": v for k, v in r.metrics.items()})
    per = pd.concat({k: r.per_factor for k, r in results.items()}, names=["data"])
    cal = pd.concat({k: r.calibration for k, r in results.items()}, names=["data"])
    return WhatIfReport(metrics, per, cal)


def _at(values: Any, rows: np.ndarray | None) -> Any:
    if values is None:
        return None
    v = np.asarray(values, dtype=object)
    return pd.Series(v if rows is None else v[rows]).astype(object)


def _specs(ds: Any) -> list[FeatureSpec]:
    from riskml.features.windows import DEFAULT_WINDOWS, feature_specs

    return feature_specs(tuple(ds.meta.get("windows") or DEFAULT_WINDOWS))

"""The reference profile of a model: binned distributions, on its training
rows, of every feature, every factor's contribution, the score in points, the
bands and the top reason; and the same distributions of a new batch on the
same bins.

Stage code: frames in, plain dicts (JSON-ready) out. The profile is saved
beside ``model.txt`` at training time (``reference_profile.json``) and read
by ``riskml.monitor``.

Bins: a numeric column is cut at the deciles of its reference values (equal
edges merged), with a bin for missing values. A **platform-wide** column
(one value for every account in a month, e.g. the policy index) cannot be
compared by deciles: a batch scored in one month is a single point, and any
single point is far from the spread of twenty training months. Its bins are
"below the training range", "inside" and "above", so its PSI is zero while
the platform stays where the model has seen it, and large when it leaves.

Age mix: a book that opens accounts every month mixes young and seasoned
accounts, and the mix moves as the book grows; the accounts' features move
with their age (a longer record, more months in their status). When the
model reads the account's age (``months_on_book``) the profile keeps the
reference rows' age mix (``age``: decile bins of months on book and their
shares), and a batch is compared like with like: its shares are taken within
each age bin and summed with the reference's weights (:func:`age_groups`,
:func:`standardise`), and accounts younger than any reference row (too little
history for a snapshot) are left out of the comparison. A platform-wide
column is found among the accounts whose windows are full (months on book at
least ``full_age``): a young account's window over the policy index covers
fewer months.

Phase of the policy cycle: with a policy index, the profile also keeps the
shares of every other training month of the last cycle (``platform_state``:
``phases``, each with its month's platform state, tightening or not, and its
oldest account), on the same bins, so that ``riskml.monitor`` compares a batch
with the training month of its own phase (:mod:`riskml.monitoring.mix`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from riskml import platform as acceptance
from riskml.explain.reasons import FactorExplainer, adverse_contributions, top_reasons
from riskml.measure.scale import Bands, PointsScale

PROFILE_VERSION = 1
NO_REASON = "none"
#: The feature holding the account's age, which the age mix is read from.
AGE = "months_on_book"
#: The platform-wide feature that says whether the platform is tightening (``riskml.platform``).
POLICY = "policy_index"
#: Narrowest bin of a factor's contribution (log-odds): a factor that is nearly constant (a fraud flag
#: few accounts raise) has decile edges a hundredth apart, and the month's other features nudge its
#: contribution across them; a difference under 0.05 in log-odds is no shift to act on.
CONTRIB_RESOLUTION = 0.05


def _edges(values: np.ndarray, n_bins: int, min_width: float = 0.0) -> list[float]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return []
    edges = np.unique(np.quantile(v, np.arange(1, n_bins) / n_bins)).tolist()
    kept: list[float] = []
    for e in edges:  # a few edges: merge those closer than min_width to the last one kept
        if not kept or e - kept[-1] >= min_width:
            kept.append(e)
    return kept


def platform_wide(x: np.ndarray, months: np.ndarray | None) -> bool:
    """True when ``x`` takes one value per month across all accounts (and more than one month is seen)."""
    if months is None or len(np.unique(months)) < 2:
        return False
    s = pd.Series(x).groupby(np.asarray(months))
    return bool(((s.max() - s.min()).fillna(0) <= 1e-9).all())


def platform_columns(X: pd.DataFrame, months: np.ndarray | None) -> set[str]:
    """The numeric columns of ``X`` that are :func:`platform_wide`, found in one grouped pass over the frame."""
    cols = [c for c in X.columns if not isinstance(X[c].dtype, pd.CategoricalDtype)]
    if not cols or months is None or len(np.unique(months)) < 2:
        return set()
    g = X[cols].groupby(np.asarray(months))
    spread = (g.max().astype(np.float64) - g.min().astype(np.float64)).fillna(0)
    return {c for c, flat in zip(cols, (spread <= 1e-9).all().to_numpy()) if flat}


def numeric_bins(values, *, n_bins: int = 10, months: np.ndarray | None = None,
                 platform: bool | None = None) -> dict[str, Any]:
    """The bins of a numeric column: ``{"kind", "edges"}`` (see the module docstring); ``platform``, when
    known, says whether the column is platform-wide instead of ``months``."""
    x = np.asarray(values, dtype=np.float64)
    if platform is None:
        platform = platform_wide(x, months)
    if platform:
        seen = x[~np.isnan(x)]  # a column the panel lacks is all missing: a platform range of nothing
        lo, hi = (float(seen.min()), float(seen.max())) if len(seen) else (np.nan, np.nan)
        tol = 1e-6 * max(1.0, abs(hi - lo))
        return {"kind": "platform", "edges": [lo - tol, hi + tol]}
    return {"kind": "numeric", "edges": _edges(x, n_bins)}


def numeric_shares(values, edges: Sequence[float]) -> list[float]:
    """Shares per bin: ``x <= e0``, ``e0 < x <= e1``, ..., ``x > e_last``, then missing."""
    x = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(x)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x[~missing], side="left")
    counts = np.append(np.bincount(idx, minlength=len(edges) + 1), missing.sum()).astype(np.float64)
    return (counts / max(len(x), 1)).tolist()


def category_shares(values, labels: Sequence[str]) -> list[float]:
    """Shares of each label (in ``labels`` order), then of anything else."""
    s = pd.Series(np.asarray(values, dtype=object))
    counts = s.value_counts()
    known = [float(counts.get(lab, 0)) for lab in labels]
    rest = float(len(s) - sum(known))
    return (np.asarray(known + [rest]) / max(len(s), 1)).tolist()


@dataclass
class Scored:
    """What a model says about rows of accounts normal at their snapshot."""

    p_adverse: np.ndarray
    factor_contrib: pd.DataFrame   # per factor, its contribution to the log-odds of adverse
    top_reason: np.ndarray         # factor id of the first reason, or NO_REASON


def score_rows(proba_fn: Callable[[pd.DataFrame], np.ndarray], explainer: FactorExplainer,
               X: pd.DataFrame) -> Scored:
    """P(adverse), factor contributions and the top reason, as ``riskml.predict`` gives them."""
    proba = proba_fn(X)
    contrib = adverse_contributions(explainer.contributions(X), proba,
                                    adverse_classes=tuple(range(1, proba.shape[1])))
    top = top_reasons(contrib, explainer.factors, k=1)
    reason = np.full(len(X), NO_REASON, dtype=object)
    reason[top["row"].to_numpy()] = top["factor"].astype(object).to_numpy()
    return Scored(1.0 - proba[:, 0], pd.DataFrame(contrib, columns=explainer.factors), reason)


def _sample(rows: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    return rows


def _tight(X: pd.DataFrame) -> np.ndarray | None:
    """Per row, whether the platform was tightening that month (its policy index above neutral)."""
    return None if POLICY not in X.columns else acceptance.tightening(X[POLICY].to_numpy(np.float32))


def build_profile(X: pd.DataFrame, score: Callable[[pd.DataFrame], Scored], *, feature_factors: Mapping[str, str],
                  scale: PointsScale, bands: Bands, months: np.ndarray | None = None, recent_months: int = 1,
                  max_rows: int = 50_000, n_bins: int = 10, seed: int = 0, full_age: int = 12,
                  cycle_months: int = 24, state_rows: int = 10_000) -> dict[str, Any]:
    """The reference profile of training rows ``X`` and of what ``score`` says about them.

    A batch is scored at one month with each account's full history, while the
    training rows span every snapshot month, the early ones with half-empty
    12-month windows; so the reference is the rows of the last ``recent_months``
    snapshot months (at most ``max_rows`` of them, a seeded sample), and only
    the range of a platform-wide column comes from every training month (the
    range the model has seen). A factor made of platform-wide columns only is
    binned by the range of its contribution over a sample of every month.
    With an ``months_on_book`` column the profile keeps the reference's age
    mix, and platform-wide columns are those flat within each month among the
    accounts at least ``full_age`` months on book. With a policy index it keeps
    a reference of every other training month of the last ``cycle_months`` (a
    policy cycle; ``state_rows`` rows each) on the same bins, each with the
    platform's state that month (the platform-wide columns' values), so that a
    batch is compared with the training month of its own phase of the cycle
    (see the module docstring).
    """
    m = None if months is None else np.asarray(months)
    uniq = None if m is None else np.unique(m)
    recent = np.ones(len(X), dtype=bool) if m is None else m >= uniq[-min(recent_months, len(uniq))]
    rows = _sample(np.flatnonzero(recent), max_rows, seed)
    tight = _tight(X)
    aged = np.ones(len(X), dtype=bool) if AGE not in X.columns else X[AGE].to_numpy(np.float64) >= full_age
    pcols = platform_columns(X[aged], None if m is None else m[aged])
    # the other phases of the policy cycle: every other training month of the last cycle_months
    phase_months = [] if tight is None or m is None else [
        int(v) for v in uniq[-min(cycle_months, len(uniq)):] if v not in set(m[rows].tolist())]
    phases = [_sample(np.flatnonzero(m == v), state_rows, seed) for v in phase_months]
    R, scored = X.iloc[rows], score(X.iloc[rows])
    scored_phases = [score(X.iloc[r]) for r in phases]
    # bins are cut on the latest month and the last one in the other platform state (a feature such as the
    # acceptance gap has values only while the platform tightens); the other phases are shared out on them
    flip = [k for k, r in enumerate(phases) if tight[r[0]] != tight[rows[0]]][-1:]
    both = pd.concat([R, *(X.iloc[phases[k]] for k in flip)])
    contrib_both = pd.concat([scored.factor_contrib, *(scored_phases[k].factor_contrib for k in flip)])
    points = scale.points(scored.p_adverse)
    points_both = np.concatenate([points, *(scale.points(scored_phases[k].p_adverse) for k in flip)])
    features = _feature_bins(X, R, both, pcols, feature_factors, n_bins)
    platform = [f for f in scored.factor_contrib.columns
                if all(features[c]["kind"] == "platform" for c in X.columns if features[c]["factor"] == f)]
    every = None
    if platform and m is not None:
        take = np.random.default_rng(seed + 1).choice(len(X), size=min(max_rows, len(X)), replace=False)
        every = score(X.iloc[np.sort(take)]).factor_contrib
    contrib = _factor_bins(scored.factor_contrib, contrib_both, every, platform, n_bins)
    score_edges = _edges(points_both, n_bins)
    reasons = sorted({*map(str, scored.factor_contrib.columns), NO_REASON})
    profile = {
        "version": PROFILE_VERSION, "source": "training rows", "n_rows": int(len(R)),
        "months": None if m is None else [int(v) for v in np.unique(m[rows])],
        "training_months": None if m is None else [int(v) for v in uniq],
        "points": scale.as_dict(), "bands": bands.as_dict(), "mean_p_adverse": float(np.mean(scored.p_adverse)),
        "features": features, "factors": contrib,
        "score": {"kind": "numeric", "edges": score_edges, "ref": numeric_shares(points, score_edges)},
        "band_shares": {"labels": list(bands.labels),
                        "ref": category_shares(bands.assign(p_adverse=scored.p_adverse, points=points),
                                               bands.labels)},
        "reasons": {"labels": reasons, "ref": category_shares(scored.top_reason, reasons)},
    }
    if AGE in R.columns:
        # (cut on the latest month's rows, the oldest book: an earlier month's fit in its lower bins)
        profile["age"] = age_mix(R[AGE].to_numpy(np.float64), R[AGE].to_numpy(np.float64), n_bins)
    if tight is not None:
        state_of = lambda r: platform_state(X.iloc[r], sorted(pcols), full_age)  # noqa: E731
        profile["platform_state"] = {
            "column": POLICY, "neutral": acceptance.NEUTRAL, "tight": bool(tight[rows[0]]), "full_age": full_age,
            "state": state_of(rows),
            "phases": [_other_refs(profile, X.iloc[r], s, int(v), bool(tight[r[0]]), state_of(r))
                       for r, s, v in zip(phases, scored_phases, phase_months)]}
    return profile


def _factor_bins(ref: pd.DataFrame, both: pd.DataFrame, every: pd.DataFrame | None, platform: Sequence[str],
                 n_bins: int) -> dict[str, dict[str, Any]]:
    """Every factor contribution's bins (cut on ``both``; a factor of platform-wide columns only: the range
    over ``every`` month) and the shares of the reference ``ref`` in them."""
    contrib = {}
    for f in ref.columns:
        if every is not None and f in platform:
            lo, hi = float(every[f].min()), float(every[f].max())
            tol = 1e-6 * max(1.0, hi - lo)
            contrib[f] = {"kind": "platform", "edges": [lo - tol, hi + tol], "ref": [0.0, 1.0, 0.0, 0.0]}
            continue
        edges = _edges(both[f].to_numpy(), n_bins, CONTRIB_RESOLUTION)
        contrib[f] = {"kind": "numeric", "edges": edges, "ref": numeric_shares(ref[f], edges)}
    return contrib


def platform_state(X: pd.DataFrame, columns: Sequence[str], full_age: int = 12) -> dict[str, float]:
    """The platform's state in a month's rows: each platform-wide column's median over the accounts whose
    windows are full (months on book at least ``full_age``; every row without an age or when none is)."""
    if AGE in X.columns:
        full = X[AGE].to_numpy(np.float64) >= full_age
        X = X[full] if full.any() else X
    out = {}
    for c in columns:
        if c in X.columns:
            v = X[c].to_numpy(np.float64, na_value=np.nan)
            v = v[np.isfinite(v)]
            out[c] = float(np.median(v)) if len(v) else float("nan")
    return out


def _feature_bins(X: pd.DataFrame, R: pd.DataFrame, both: pd.DataFrame, platform: set[str],
                  feature_factors: Mapping[str, str], n_bins: int) -> dict[str, dict[str, Any]]:
    """Every feature's bins (cut on ``both`` references' rows; a platform column's on the training range of
    ``X``) and the shares of the reference rows ``R`` in them."""
    features = {}
    for c in X.columns:
        if isinstance(X[c].dtype, pd.CategoricalDtype):
            labels = [str(v) for v in X[c].cat.categories]
            features[c] = {"kind": "category", "labels": labels, "ref": category_shares(R[c].astype(object), labels)}
        else:
            if c in platform:
                b = numeric_bins(X[c].to_numpy(np.float64, na_value=np.nan), platform=True)
            else:
                b = numeric_bins(both[c].to_numpy(np.float64, na_value=np.nan), n_bins=n_bins, platform=False)
            # (a platform column's reference is inside the training range by construction, and missing where
            # a young account's window has no month yet)
            features[c] = {**b, "ref": numeric_shares(R[c].to_numpy(np.float64, na_value=np.nan), b["edges"])}
        features[c]["factor"] = str(feature_factors.get(c, "other"))
    return features


def _other_refs(profile: Mapping[str, Any], R: pd.DataFrame, scored: Scored, month: int, tight: bool,
                state: Mapping[str, float]) -> dict[str, Any]:
    """The reference shares of another training month on the profile's bins, with its platform state."""
    out = batch_shares(profile, R, scored)
    out.update({"month": month, "n_rows": int(len(R)), "tight": tight, "state": dict(state)})
    if "age" in profile:
        a = R[AGE].to_numpy(np.float64)
        out["age"] = numeric_shares(a, profile["age"]["edges"])[:-1]
        out["age_max"] = float(np.nanmax(a)) if len(a) else 0.0
    return out


def profile_tight(profile: Mapping[str, Any], default: bool = False) -> bool:
    """Whether the platform was tightening in the profile's reference month."""
    return bool((profile.get("platform_state") or {}).get("tight", default))


def age_mix(age: np.ndarray, every: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """The reference's age mix: decile bins of months on book (whole months, cut on ``every`` reference's
    rows), the shares of ``age`` in them, the youngest age."""
    a, e = age[np.isfinite(age)], every[np.isfinite(every)]
    edges = np.unique(np.floor(np.quantile(e, np.arange(1, n_bins) / n_bins))).tolist() if len(e) else []
    return {"column": AGE, "min": float(e.min()) if len(e) else 0.0, "edges": edges,
            "ref": numeric_shares(a, edges)[:-1]}


def batch_shares(profile: Mapping[str, Any], X: pd.DataFrame | None, scored: Scored | None = None) -> dict[str, Any]:
    """The shares of a batch on the profile's bins: the same keys as the profile, ``ref`` -> ``batch``."""
    out: dict[str, Any] = {"features": {}, "factors": {}}
    if X is not None:
        for c, spec in profile["features"].items():
            if c not in X.columns:
                continue
            if spec["kind"] == "category":
                out["features"][c] = category_shares(X[c].astype(object), spec["labels"])
            else:
                out["features"][c] = numeric_shares(X[c].to_numpy(np.float64, na_value=np.nan), spec["edges"])
    if scored is not None:
        for f, spec in profile["factors"].items():
            if f in scored.factor_contrib.columns:
                out["factors"][f] = numeric_shares(scored.factor_contrib[f], spec["edges"])
        scale, bands = PointsScale(**profile["points"]), Bands.from_config(profile["bands"])
        points = scale.points(scored.p_adverse)
        out["score"] = numeric_shares(points, profile["score"]["edges"])
        out["band_shares"] = category_shares(bands.assign(p_adverse=scored.p_adverse, points=points), bands.labels)
        out["reasons"] = category_shares(scored.top_reason, profile["reasons"]["labels"])
        out["mean_p_adverse"] = float(np.mean(scored.p_adverse)) if len(scored.p_adverse) else float("nan")
    return out

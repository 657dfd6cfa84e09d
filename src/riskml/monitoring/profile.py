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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from riskml.explain.reasons import FactorExplainer, adverse_contributions, top_reasons
from riskml.measure.scale import Bands, PointsScale

PROFILE_VERSION = 1
NO_REASON = "none"
#: The feature holding the account's age, which the age mix is read from.
AGE = "months_on_book"


def _edges(values: np.ndarray, n_bins: int) -> list[float]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return []
    return np.unique(np.quantile(v, np.arange(1, n_bins) / n_bins)).tolist()


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
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
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


def build_profile(X: pd.DataFrame, score: Callable[[pd.DataFrame], Scored], *, feature_factors: Mapping[str, str],
                  scale: PointsScale, bands: Bands, months: np.ndarray | None = None, recent_months: int = 1,
                  max_rows: int = 50_000, n_bins: int = 10, seed: int = 0, full_age: int = 12) -> dict[str, Any]:
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
    accounts at least ``full_age`` months on book (see the module docstring).
    """
    recent = np.ones(len(X), dtype=bool)
    if months is not None:
        recent = np.asarray(months) >= np.unique(months)[-min(recent_months, len(np.unique(months)))]
    rows = np.flatnonzero(recent)
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    R = X.iloc[rows]
    scored = score(R)
    aged = np.ones(len(X), dtype=bool) if AGE not in X.columns else X[AGE].to_numpy(np.float64) >= full_age
    features = {}
    platform = platform_columns(X[aged], None if months is None else np.asarray(months)[aged])
    for c in X.columns:
        if isinstance(X[c].dtype, pd.CategoricalDtype):
            labels = [str(v) for v in X[c].cat.categories]
            features[c] = {"kind": "category", "labels": labels, "ref": category_shares(R[c].astype(object), labels)}
        else:
            if c in platform:
                b = numeric_bins(X[c].to_numpy(np.float64, na_value=np.nan), platform=True)
            else:
                b = numeric_bins(R[c].to_numpy(np.float64, na_value=np.nan), n_bins=n_bins, platform=False)
            # (a platform column's reference is inside the training range by construction, and missing where
            # a young account's window has no month yet)
            features[c] = {**b, "ref": numeric_shares(R[c].to_numpy(np.float64, na_value=np.nan), b["edges"])}
        features[c]["factor"] = str(feature_factors.get(c, "other"))
    platform = [f for f in scored.factor_contrib.columns
                if all(features[c]["kind"] == "platform" for c in X.columns if features[c]["factor"] == f)]
    every = None
    if platform and months is not None:
        take = np.random.default_rng(seed + 1).choice(len(X), size=min(max_rows, len(X)), replace=False)
        every = score(X.iloc[np.sort(take)]).factor_contrib
    contrib = {}
    for f in scored.factor_contrib.columns:
        if every is not None and f in platform:
            lo, hi = float(every[f].min()), float(every[f].max())
            tol = 1e-6 * max(1.0, hi - lo)
            contrib[f] = {"kind": "platform", "edges": [lo - tol, hi + tol], "ref": [0.0, 1.0, 0.0, 0.0]}
            continue
        edges = _edges(scored.factor_contrib[f].to_numpy(), n_bins)
        contrib[f] = {"kind": "numeric", "edges": edges, "ref": numeric_shares(scored.factor_contrib[f], edges)}
    points = scale.points(scored.p_adverse)
    score_edges = _edges(points, n_bins)
    reasons = sorted({*map(str, scored.factor_contrib.columns), NO_REASON})
    return {
        "version": PROFILE_VERSION, "source": "training rows", "n_rows": int(len(R)),
        "months": None if months is None else [int(m) for m in np.unique(np.asarray(months)[rows])],
        "training_months": None if months is None else [int(m) for m in np.unique(months)],
        "points": scale.as_dict(), "bands": bands.as_dict(), "mean_p_adverse": float(np.mean(scored.p_adverse)),
        "features": features, "factors": contrib,
        "score": {"kind": "numeric", "edges": score_edges, "ref": numeric_shares(points, score_edges)},
        "band_shares": {"labels": list(bands.labels),
                        "ref": category_shares(bands.assign(p_adverse=scored.p_adverse, points=points),
                                               bands.labels)},
        "reasons": {"labels": reasons, "ref": category_shares(scored.top_reason, reasons)},
        **({"age": age_mix(R[AGE].to_numpy(np.float64), n_bins)} if AGE in R.columns else {}),
    }


def age_mix(age: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """The reference's age mix: decile bins of months on book (whole months), their shares, the youngest age."""
    a = age[np.isfinite(age)]
    edges = np.unique(np.floor(np.quantile(a, np.arange(1, n_bins) / n_bins))).tolist() if len(a) else []
    return {"column": AGE, "min": float(a.min()) if len(a) else 0.0, "edges": edges,
            "ref": numeric_shares(a, edges)[:-1]}


def age_groups(profile: Mapping[str, Any], X: pd.DataFrame) -> np.ndarray | None:
    """Each row's age bin of the profile's age mix (-1: younger than every reference row, or no age);
    ``None`` when the profile has no age mix or ``X`` no age column (compare the batch as a whole)."""
    spec = profile.get("age")
    if spec is None or spec["column"] not in X.columns:
        return None
    a = X[spec["column"]].to_numpy(np.float64)
    g = np.searchsorted(np.asarray(spec["edges"], dtype=np.float64), a, side="left")
    return np.where(a >= spec["min"], g, -1)


def add_shares(total: Any, part: Any, w: float) -> Any:
    """``total + w * part`` over nested dicts and lists of numbers (``total`` None: ``w * part``)."""
    if isinstance(part, dict):
        return {k: add_shares(None if total is None else total.get(k), v, w) for k, v in part.items()}
    if isinstance(part, list):
        return [add_shares(None if total is None else t, v, w) for t, v in zip(total or [None] * len(part), part)]
    return w * float(part) if total is None else total + w * float(part)


def add_by_age(profile: Mapping[str, Any], X: pd.DataFrame, scored: Scored, by_group: dict) -> int:
    """Add a batch's (or a bucket's) shares to ``by_group`` (age bin -> (shares summed weighted by rows,
    rows)), one entry per age bin of the profile (a single bin 0 without an age mix); returns the rows
    left out (younger than every reference row)."""
    groups = age_groups(profile, X)
    if groups is None:
        groups = np.zeros(len(X), dtype=np.int64)
    for g in np.unique(groups[groups >= 0]):
        sel = np.flatnonzero(groups == g)
        fc = scored.factor_contrib  # (no columns: scores as served, without contributions)
        part = Scored(scored.p_adverse[sel], fc.iloc[sel] if len(fc.columns) else fc, scored.top_reason[sel])
        total, n = by_group.get(int(g), (None, 0))
        by_group[int(g)] = (add_shares(total, batch_shares(profile, X.iloc[sel], part), len(sel)), n + len(sel))
    return int((groups < 0).sum())


def age_standardised_shares(profile: Mapping[str, Any], X: pd.DataFrame, scored: Scored) -> dict[str, Any]:
    """:func:`batch_shares` of a batch at the reference's age mix (the batch's own without one)."""
    by_group: dict[int, tuple[Any, int]] = {}
    add_by_age(profile, X, scored, by_group)
    fc = scored.factor_contrib
    return standardise(profile, by_group) or batch_shares(profile, X.iloc[:0], Scored(
        scored.p_adverse[:0], fc.iloc[:0] if len(fc.columns) else fc, scored.top_reason[:0]))


def standardise(profile: Mapping[str, Any], by_group: Mapping[int, tuple[Any, float]]) -> Any:
    """Shares of a batch at the reference's age mix: ``by_group`` maps an age bin to the sum of its
    buckets' shares weighted by their rows and those rows; each bin's mean shares weigh as much as the
    bin's reference share (renormalised over the bins the batch has); ``None`` for an empty batch."""
    ref = profile["age"]["ref"] if "age" in profile else None
    groups = [g for g, (_, n) in sorted(by_group.items()) if g >= 0 and n > 0]
    weights = {g: (1.0 if ref is None else float(ref[g])) for g in groups}
    norm = sum(weights.values())
    out = None
    for g in groups:
        if weights[g] > 0:
            total, n = by_group[g]
            out = add_shares(out, total, weights[g] / (norm * n))
    return out


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

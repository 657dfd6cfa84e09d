"""Like with like: a batch compared with its reference at the reference's age mix and platform state.

A book that opens accounts every month mixes young and seasoned accounts, and
the mix moves as the book grows; an account's features move with its age (a
longer record, more months in its status). The reference profile keeps the
age mix of its rows (``profile["age"]``), and a batch's shares are taken
within each age bin and summed at the reference's weights
(:func:`add_by_age`, :func:`standardise`); accounts younger than every
reference row (too little history for a snapshot) are left out, and so are
accounts older than every row of an earlier month's reference (its book was
younger).

The platform's policy cycle moves in calendar time, and the model reads it:
the acceptance gap exists only while the platform tightens, and while the
policy index rises the model adds a small policy contribution to every
account (for one with no other risk-raising factor the policy becomes the top
reason). A batch scored at a later month is compared with the training month
of its own phase of the cycle: the profile keeps a reference of every
training month of the last cycle with the platform's state that month (the
platform-wide columns' values), and :func:`for_state` picks the one in the
same tightening state whose state is nearest the batch's. A tightening the
training months never saw still shows: the policy index leaves its training
range, and the accounts past the tighter line move the gap, the policy
factor, the reason mix and the expected adverse rate.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import pandas as pd

from riskml import platform as acceptance
from riskml.monitoring.profile import POLICY, Scored, batch_shares, platform_state, profile_tight

__all__ = ["TOO_OLD", "TOO_YOUNG", "add_by_age", "age_groups", "like_with_like", "batch_state", "batch_tight",
           "for_state", "standardise"]


#: age bin of a row younger than every reference row (or without an age), and of one older than every one
TOO_YOUNG, TOO_OLD = -1, -2


def age_groups(profile: Mapping[str, Any], X: pd.DataFrame) -> np.ndarray | None:
    """Each row's age bin of the profile's age mix (:data:`TOO_YOUNG`: younger than every reference row, or no
    age; :data:`TOO_OLD`: older than every row of an earlier month's reference, ``max``, whose book was
    younger; the latest month's top bin is open); ``None`` when the profile has no age mix or ``X`` no age
    column (compare the batch as a whole)."""
    spec = profile.get("age")
    if spec is None or spec["column"] not in X.columns:
        return None
    a = X[spec["column"]].to_numpy(np.float64)
    g = np.searchsorted(np.asarray(spec["edges"], dtype=np.float64), a, side="left")
    old = a > spec.get("max", np.inf)
    return np.where(a >= spec["min"], np.where(old, TOO_OLD, g), TOO_YOUNG)


def add_shares(total: Any, part: Any, w: float) -> Any:
    """``total + w * part`` over nested dicts and lists of numbers (``total`` None: ``w * part``)."""
    if isinstance(part, dict):
        return {k: add_shares(None if total is None else total.get(k), v, w) for k, v in part.items()}
    if isinstance(part, list):
        return [add_shares(None if total is None else t, v, w) for t, v in zip(total or [None] * len(part), part)]
    return w * float(part) if total is None else total + w * float(part)


def add_by_age(profile: Mapping[str, Any], X: pd.DataFrame, scored: Scored, by_group: dict) -> tuple[int, int]:
    """Add a batch's (or a bucket's) shares to ``by_group`` (age bin -> (shares summed weighted by rows,
    rows)), one entry per age bin of the profile (a single bin 0 without an age mix); returns the rows
    left out: (younger, older) than every reference row."""
    groups = age_groups(profile, X)
    if groups is None:
        groups = np.zeros(len(X), dtype=np.int64)
    for g in np.unique(groups[groups >= 0]):
        sel = np.flatnonzero(groups == g)
        fc = scored.factor_contrib  # (no columns: scores as served, without contributions)
        part = Scored(scored.p_adverse[sel], fc.iloc[sel] if len(fc.columns) else fc, scored.top_reason[sel])
        total, n = by_group.get(int(g), (None, 0))
        by_group[int(g)] = (add_shares(total, batch_shares(profile, X.iloc[sel], part), len(sel)), n + len(sel))
    return int((groups == TOO_YOUNG).sum()), int((groups == TOO_OLD).sum())


def like_with_like(profile: Mapping[str, Any], X: pd.DataFrame, scored: Scored
                   ) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """The reference of the batch's platform state (:func:`for_state`) and the batch's :func:`batch_shares` at
    that reference's age mix (the batch's own mix without one)."""
    by_group: dict[int, tuple[Any, int]] = {}
    view = for_state(profile, batch_state(profile, X))
    add_by_age(view, X, scored, by_group)
    fc = scored.factor_contrib
    return view, standardise(view, by_group) or batch_shares(view, X.iloc[:0], Scored(
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


def batch_tight(X: pd.DataFrame) -> bool | None:
    """Whether the platform is tightening in a batch scored at one month (its policy index above neutral);
    ``None`` without a policy index."""
    if POLICY not in X.columns:
        return None
    v = X[POLICY].to_numpy(np.float32)
    v = v[np.isfinite(v)]
    return bool(len(v) and acceptance.tightening(np.median(v)))


def batch_state(profile: Mapping[str, Any], X: pd.DataFrame) -> dict[str, Any] | None:
    """The platform's state in a batch scored at one month: whether it tightens (``tight``) and the
    platform-wide columns' values the profile keeps for its months (``state``); ``None`` without a policy
    index."""
    tight = batch_tight(X)
    if tight is None:
        return None
    ps = profile.get("platform_state") or {}
    return {"tight": tight, "state": platform_state(X, sorted(ps.get("state") or {}), int(ps.get("full_age", 12)))}


def _distance(a: Mapping[str, float], b: Mapping[str, float], scale: Mapping[str, float]) -> float:
    """How far two platform states are: each column's difference in units of its training range."""
    d = [((a[c] - b[c]) / scale.get(c, 1.0)) ** 2 for c in a if c in b and np.isfinite(a[c]) and np.isfinite(b[c])]
    return float(np.sqrt(np.sum(d))) if d else 0.0


def for_state(profile: Mapping[str, Any], state: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The profile whose reference is the training month nearest the batch's platform ``state``
    (:func:`batch_state`): among the months in the same
    tightening state, the one whose platform-wide columns are closest (each in units of its training range;
    the latest month on a tie); the profile itself when it is that month, keeps no other, or the state is
    unknown."""
    if state is None:
        return profile
    ps = profile.get("platform_state") or {}
    others = [o for o in [ps.get("other"), *(ps.get("phases") or [])] if o is not None]
    candidates = [{"month": (profile.get("months") or [0])[-1], "tight": profile_tight(profile),
                   "state": ps.get("state") or {}}, *others]
    same = [c for c in candidates if c["tight"] == state["tight"]] or candidates
    scale = {c: max(spec["edges"][-1] - spec["edges"][0], 1e-9) for c, spec in profile["features"].items()
             if spec["kind"] == "platform"}
    best = min(same, key=lambda c: (_distance(state["state"], c.get("state") or {}, scale), -c["month"]))
    if best is candidates[0]:
        return profile
    out = copy.deepcopy(dict(profile))
    for part in ("features", "factors"):
        for name, ref in best[part].items():
            out[part][name]["ref"] = ref
    for part in ("score", "band_shares", "reasons"):
        out[part]["ref"] = best[part]
    if "age" in out and "age" in best:
        out["age"]["ref"] = best["age"]
        out["age"]["max"] = best.get("age_max", np.inf)
    out["months"], out["n_rows"], out["mean_p_adverse"] = [best["month"]], best["n_rows"], best["mean_p_adverse"]
    out["platform_state"] = {**ps, "tight": bool(best["tight"]), "state": best.get("state") or {}, "other": None,
                             "phases": []}
    return out

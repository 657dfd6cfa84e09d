"""Like with like: a batch compared with its reference at the reference's age mix and platform state.

A book that opens accounts every month mixes young and seasoned accounts, and
the mix moves as the book grows; an account's features move with its age (a
longer record, more months in its status). The reference profile keeps the
age mix of its rows (``profile["age"]``), and a batch's shares are taken
within each age bin and summed at the reference's weights
(:func:`add_by_age`, :func:`standardise`); accounts younger than every
reference row (too little history for a snapshot) are left out.

The platform's policy cycle switches some features on and off for every
account at once: the acceptance gap exists only while the platform tightens.
The profile keeps a second reference, the last training month in the other
platform state, on the same bins (``profile["platform_state"]``), and a batch
is compared with the reference of its own state (:func:`for_state`). A
tightening the training months never saw still shows: the policy index
leaves its training range, and the accounts past the tighter line move the
gap, the policy factor and the score.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import pandas as pd

from riskml import platform as acceptance
from riskml.monitoring.profile import AGE, POLICY, Scored, batch_shares, profile_tight

__all__ = ["add_by_age", "age_groups", "like_with_like", "batch_tight", "for_state", "standardise"]


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


def like_with_like(profile: Mapping[str, Any], X: pd.DataFrame, scored: Scored
                   ) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """The reference of the batch's platform state (:func:`for_state`) and the batch's :func:`batch_shares` at
    that reference's age mix (the batch's own mix without one)."""
    by_group: dict[int, tuple[Any, int]] = {}
    add_by_age(profile, X, scored, by_group)
    view = for_state(profile, batch_tight(X))
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


def for_state(profile: Mapping[str, Any], tight: bool | None) -> Mapping[str, Any]:
    """The profile whose reference is the training month in the batch's platform state (``tight``): the
    profile itself when it is in that state already, keeps no other, or the state is unknown."""
    state = profile.get("platform_state") or {}
    other = state.get("other")
    if tight is None or other is None or tight == profile_tight(profile):
        return profile
    out = copy.deepcopy(dict(profile))
    for part in ("features", "factors"):
        for name, ref in other[part].items():
            out[part][name]["ref"] = ref
    for part in ("score", "band_shares", "reasons"):
        out[part]["ref"] = other[part]
    if "age" in out and "age" in other:
        out["age"]["ref"] = other["age"]
    out["months"], out["n_rows"], out["mean_p_adverse"] = [other["month"]], other["n_rows"], other["mean_p_adverse"]
    out["platform_state"] = {**state, "tight": bool(tight), "other": None}
    return out

"""Population stability of a batch against a model's reference profile.

PSI (population stability index) of shares ``e`` (reference) and ``a``
(batch) over the same bins: ``sum((a_i - e_i) * ln(a_i / e_i))``, each share
floored at ``eps`` so an empty bin counts as rare rather than infinite. By
convention a PSI under 0.1 is stable, 0.1-0.25 worth watching, over 0.25 a
shift to act on; the thresholds come from config (``thresholds.watch``,
``thresholds.act``).

Example (a 60/40 batch against a 50/50 reference):
    >>> round(psi([0.5, 0.5], [0.6, 0.4]), 6)
    0.040547

The score's PSI cuts it at deciles, which see a shift of the bulk of the
book but hardly one inside its riskiest tenth, where a risk change lives: a
tightening that moves 6% of the accounts from P(adverse) 0.08 to 0.2 changes
the decile shares by a PSI of 0.05. So the report also compares the
**expected adverse rate** (the mean P(adverse), at the reference's age mix
and platform phase) with the reference's: its relative change either way
(``max(r, 1/r) - 1`` of the ratio ``r``), at ``thresholds.rate_watch`` and
``thresholds.rate_act`` (0.1 and 0.25: a tenth, a quarter more or less risk
than the reference predicted).

    >>> round(rate_change(0.025, 0.0325), 6), round(rate_change(0.025, 0.02), 6)
    (0.3, 0.25)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from riskml.exceptions import ConfigError

LEVELS = ("ok", "watch", "act")
#: said instead of a level where too few accounts were compared: the PSI of a handful is noise
TOO_FEW = "too_few_accounts"


def psi(expected, actual, *, eps: float = 1e-4) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    if e.shape != a.shape:
        raise ValueError(f"shares of {e.shape} and {a.shape} bins; expected the same bins")
    return float(np.sum((a - e) * np.log(a / e)))


def rate_change(reference: float, batch: float) -> float:
    """How far a batch's expected adverse rate is from the reference's, either way: ``max(r, 1/r) - 1`` of
    ``r = batch / reference`` (NaN when either is missing or not positive)."""
    if not (np.isfinite(reference) and np.isfinite(batch)) or reference <= 0 or batch <= 0:
        return float("nan")
    r = batch / reference
    return float(max(r, 1.0 / r) - 1.0)


@dataclass(frozen=True)
class Thresholds:
    """PSI levels: ``watch`` <= PSI < ``act`` is watch, PSI >= ``act`` is act; the expected adverse rate's
    relative change (:func:`rate_change`) at ``rate_watch`` and ``rate_act`` alike."""

    watch: float = 0.1
    act: float = 0.25
    rate_watch: float = 0.1
    rate_act: float = 0.25

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Thresholds":
        vals = {}
        for k in ("watch", "act", "rate_watch", "rate_act"):
            v = cfg.get(k, getattr(cls, k))
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"thresholds.{k}", v, "a positive number")
            vals[k] = float(v)
        for lo, hi in (("watch", "act"), ("rate_watch", "rate_act")):
            if vals[hi] <= vals[lo]:
                raise ConfigError(f"thresholds.{hi}", vals[hi], f"a number above thresholds.{lo} ({vals[lo]})")
        return cls(**vals)

    def level(self, value: float) -> str:
        if not np.isfinite(value):
            return "ok"
        return "act" if value >= self.act else "watch" if value >= self.watch else "ok"

    def rate_level(self, value: float) -> str:
        if not np.isfinite(value):
            return "ok"
        return "act" if value >= self.rate_act else "watch" if value >= self.rate_watch else "ok"


def worst(levels) -> str:
    """The most severe of some levels (``ok`` for none)."""
    return max(levels, key=LEVELS.index, default="ok")


def _psi_frame(profile_part: Mapping[str, Any], batch_part: Mapping[str, Any], thresholds: Thresholds,
               *, key: str) -> pd.DataFrame:
    rows = []
    for name, spec in profile_part.items():
        if name not in batch_part:
            continue
        value = psi(spec["ref"], batch_part[name])
        rows.append({key: name, "factor": spec.get("factor", name), "kind": spec.get("kind", "numeric"),
                     "psi": value, "level": thresholds.level(value)})
    columns = [key, "kind", "psi", "level"] if key == "factor" else [key, "factor", "kind", "psi", "level"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def share_table(labels, ref, batch) -> pd.DataFrame:
    """Reference vs batch shares per label (the last share is "anything else", kept only when non-zero)."""
    labels = [*labels, "other"]
    t = pd.DataFrame({"label": labels, "reference": ref, "batch": batch})
    t["change"] = t["batch"] - t["reference"]
    keep = (t["label"] != "other") | (t["reference"] > 0) | (t["batch"] > 0)
    return t[keep].reset_index(drop=True)


@dataclass
class Drift:
    """The drift part of a monitoring report."""

    features: pd.DataFrame
    factors: pd.DataFrame
    score_psi: float | None
    bands: pd.DataFrame | None
    bands_psi: float | None
    reasons: pd.DataFrame | None
    reasons_psi: float | None
    levels: dict[str, str]
    rate: float | None = None          # the batch's expected adverse rate (mean P(adverse))
    reference_rate: float | None = None
    rate_change: float | None = None   # relative change either way (:func:`rate_change`)

    @property
    def level(self) -> str:
        return worst(self.levels.values())

    def summary(self) -> dict[str, Any]:
        act = self.features[self.features["level"] == "act"]
        watch = self.features[self.features["level"] == "watch"]
        return {"level": self.level, "levels": dict(self.levels), "score_psi": self.score_psi,
                "bands_psi": self.bands_psi, "reasons_psi": self.reasons_psi, "rate": self.rate,
                "reference_rate": self.reference_rate, "rate_change": self.rate_change,
                "max_feature_psi": float(self.features["psi"].max()) if len(self.features) else None,
                "features_act": act["feature"].tolist(), "features_watch": watch["feature"].tolist(),
                "factors_act": self.factors.loc[self.factors["level"] == "act", "factor"].tolist(),
                "factors_watch": self.factors.loc[self.factors["level"] == "watch", "factor"].tolist()}


def drift(profile: Mapping[str, Any], batch: Mapping[str, Any], thresholds: Thresholds) -> Drift:
    """PSI per feature, per factor contribution, of the score, the bands and the top-reason mix; the expected
    adverse rate's change."""
    feats = _psi_frame(profile["features"], batch.get("features", {}), thresholds, key="feature")
    facs = _psi_frame(profile["factors"], batch.get("factors", {}), thresholds, key="factor")
    levels = {"features": worst(feats["level"]), "factors": worst(facs["level"])}
    score_psi = bands = bands_psi = reasons = reasons_psi = rate = ref_rate = change = None
    if "score" in batch:
        score_psi = psi(profile["score"]["ref"], batch["score"])
        levels["score"] = thresholds.level(score_psi)
        b = profile["band_shares"]
        bands, bands_psi = share_table(b["labels"], b["ref"], batch["band_shares"]), psi(b["ref"], batch["band_shares"])
        levels["bands"] = thresholds.level(bands_psi)
        r = profile["reasons"]
        reasons, reasons_psi = share_table(r["labels"], r["ref"], batch["reasons"]), psi(r["ref"], batch["reasons"])
        levels["reasons"] = thresholds.level(reasons_psi)
        rate, ref_rate = batch.get("mean_p_adverse"), profile.get("mean_p_adverse")
        if rate is not None and ref_rate is not None:
            change = rate_change(float(ref_rate), float(rate))
            levels["rate"] = thresholds.rate_level(change)
    return Drift(feats, facs, score_psi, bands, bands_psi, reasons, reasons_psi, levels, rate, ref_rate, change)

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


@dataclass(frozen=True)
class Thresholds:
    """PSI levels: ``watch`` <= PSI < ``act`` is watch, PSI >= ``act`` is act."""

    watch: float = 0.1
    act: float = 0.25

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Thresholds":
        vals = {}
        for k in ("watch", "act"):
            v = cfg.get(k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"thresholds.{k}", v, "a positive number")
            vals[k] = float(v)
        if vals["act"] <= vals["watch"]:
            raise ConfigError("thresholds.act", vals["act"], f"a number above thresholds.watch ({vals['watch']})")
        return cls(**vals)

    def level(self, value: float) -> str:
        if not np.isfinite(value):
            return "ok"
        return "act" if value >= self.act else "watch" if value >= self.watch else "ok"


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

    @property
    def level(self) -> str:
        return worst(self.levels.values())

    def summary(self) -> dict[str, Any]:
        act = self.features[self.features["level"] == "act"]
        watch = self.features[self.features["level"] == "watch"]
        return {"level": self.level, "levels": dict(self.levels), "score_psi": self.score_psi,
                "bands_psi": self.bands_psi, "reasons_psi": self.reasons_psi,
                "max_feature_psi": float(self.features["psi"].max()) if len(self.features) else None,
                "features_act": act["feature"].tolist(), "features_watch": watch["feature"].tolist(),
                "factors_act": self.factors.loc[self.factors["level"] == "act", "factor"].tolist(),
                "factors_watch": self.factors.loc[self.factors["level"] == "watch", "factor"].tolist()}


def drift(profile: Mapping[str, Any], batch: Mapping[str, Any], thresholds: Thresholds) -> Drift:
    """PSI per feature, per factor contribution, of the score, the bands and the top-reason mix."""
    feats = _psi_frame(profile["features"], batch.get("features", {}), thresholds, key="feature")
    facs = _psi_frame(profile["factors"], batch.get("factors", {}), thresholds, key="factor")
    levels = {"features": worst(feats["level"]), "factors": worst(facs["level"])}
    score_psi = bands = bands_psi = reasons = reasons_psi = None
    if "score" in batch:
        score_psi = psi(profile["score"]["ref"], batch["score"])
        levels["score"] = thresholds.level(score_psi)
        b = profile["band_shares"]
        bands, bands_psi = share_table(b["labels"], b["ref"], batch["band_shares"]), psi(b["ref"], batch["band_shares"])
        levels["bands"] = thresholds.level(bands_psi)
        r = profile["reasons"]
        reasons, reasons_psi = share_table(r["labels"], r["ref"], batch["reasons"]), psi(r["ref"], batch["reasons"])
        levels["reasons"] = thresholds.level(reasons_psi)
    return Drift(feats, facs, score_psi, bands, bands_psi, reasons, reasons_psi, levels)

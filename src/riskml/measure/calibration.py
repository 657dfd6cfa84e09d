"""A probability calibrator fitted on the validation split, stored as JSON knots.

Why: a boosted model early-stopped on log-loss is well calibrated on average
(ECE ~0.003) but not in its top band, where the platform acts: on the default
data the adverse model predicts 0.51 in band E where 0.43 is observed.

How: binned isotonic regression in log-odds space. The validation rows are
sorted by raw score and cut into bins holding ``events_per_bin`` events each
(so the sparse risky end gets as many bins as it has evidence for); the bins'
observed rates are made monotone (pool-adjacent-violators); the calibrated
log-odds interpolate linearly between the bins' centres, and beyond the
outermost centres run parallel to the raw log-odds. The map is strictly
increasing, so it never reorders two accounts: ROC-AUC, KS and the gains
table's ranking are exactly those of the raw model.

It is data (two lists of numbers) in the model's manifest, never a pickle;
the served model applies the same map (``riskml.store.pyfunc_system``).

Example:
    >>> c = Calibrator(x=(-2.0, 0.0), y=(-3.0, -1.0))
    >>> [round(float(v), 4) for v in c.apply(np.array([0.5, expit(-1.0)]))]
    [0.2689, 0.1192]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from riskml.exceptions import ModelError

METHOD = "binned_isotonic_logit"
_CLIP = 1e-9


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1.0 - _CLIP)
    return np.log(p / (1.0 - p))


def expit(z) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


@dataclass(frozen=True)
class Calibrator:
    """Knots ``x`` (raw log-odds, increasing) -> ``y`` (calibrated log-odds, increasing)."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    n_rows: int = 0
    n_events: int = 0

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)
        if len(x) < 2 or len(x) != len(y) or not (np.all(np.diff(x) > 0) and np.all(np.diff(y) > 0)) \
                or not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ModelError(f"calibration knots must be two equally long, strictly increasing lists of at least "
                             f"2 finite numbers; got x={list(self.x)[:4]}..., y={list(self.y)[:4]}...")

    def apply(self, p) -> np.ndarray:
        """Calibrated probabilities of raw probabilities ``p`` (NaN stays NaN)."""
        z = logit(p)
        x, y = np.asarray(self.x), np.asarray(self.y)
        out = np.interp(z, x, y)
        out = np.where(z < x[0], y[0] + (z - x[0]), out)
        out = np.where(z > x[-1], y[-1] + (z - x[-1]), out)
        return np.where(np.isnan(np.asarray(p, dtype=np.float64)), np.nan, expit(out))

    def apply_proba(self, proba: np.ndarray) -> np.ndarray:
        """Class probabilities with P(not class 0) calibrated; the other classes keep their shares of it."""
        proba = np.asarray(proba, dtype=np.float64)
        raw = 1.0 - proba[:, 0]
        cal = self.apply(raw)
        scale = np.divide(cal, raw, out=np.ones_like(raw), where=raw > 0)
        out = proba * scale[:, None]
        out[:, 0] = 1.0 - cal
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"method": METHOD, "x": [float(v) for v in self.x], "y": [float(v) for v in self.y],
                "n_rows": int(self.n_rows), "n_events": int(self.n_events)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Calibrator | None":
        """The calibrator of a manifest's ``calibration`` entry (``None``: the model is uncalibrated)."""
        if d is None:
            return None
        if not isinstance(d, Mapping) or d.get("method") != METHOD:
            raise ModelError(f"manifest calibration {str(d)[:80]!r}: expected method {METHOD!r} with knots x, y")
        return cls(tuple(d["x"]), tuple(d["y"]), int(d.get("n_rows", 0)), int(d.get("n_events", 0)))


def _pav(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool adjacent violators: the increasing fit's block values and each input's block index."""
    vals, wts, sizes = [], [], []
    for v, w in zip(values.tolist(), weights.tolist()):  # over bins (tens), not rows
        vals.append(v), wts.append(w), sizes.append(1)
        while len(vals) > 1 and vals[-2] >= vals[-1]:
            w2 = wts[-2] + wts[-1]
            vals[-2] = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w2
            wts[-2], sizes[-2] = w2, sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
    return np.asarray(vals), np.repeat(np.arange(len(sizes)), sizes)


def fit_calibrator(y_binary, p, *, events_per_bin: int = 40) -> Calibrator | None:
    """Fit the map on validation labels and raw probabilities; ``None`` when there is too little evidence
    (fewer than two bins' worth of events or of non-events)."""
    y = np.asarray(y_binary, dtype=np.float64)
    z = logit(p)
    n_events = int(y.sum())
    if min(n_events, len(y) - n_events) < 2 * events_per_bin:
        return None
    order = np.argsort(z, kind="stable")
    y, z = y[order], z[order]
    # each bin holds events_per_bin events (the last, partial one joins its neighbour), so the sparse risky
    # end gets as many bins as it has evidence for; equal scores stay in one bin
    bins = np.minimum((np.cumsum(y) - y) // events_per_bin, n_events // events_per_bin - 1).astype(np.int64)
    _, first, inverse = np.unique(z, return_index=True, return_inverse=True)
    bins = bins[first][inverse]
    counts = np.bincount(bins).astype(np.float64)
    keep = counts > 0
    events = np.bincount(bins, y)[keep]
    counts = counts[keep]
    centres = (np.bincount(bins, z)[keep]) / counts
    rate = np.clip(events / counts, 0.5 / counts, 1 - 0.5 / counts)
    block_rate, block = _pav(logit(rate), counts)
    # one knot per monotone block: its count-weighted centre and its pooled log-odds
    w = np.bincount(block, counts)
    kx = np.bincount(block, centres * counts) / w
    ky = block_rate
    if len(kx) < 2:
        return None
    return Calibrator(tuple(kx.tolist()), tuple(ky.tolist()), n_rows=len(y), n_events=n_events)

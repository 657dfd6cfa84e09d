"""Scores in points, risk bands, and the scorecard of the logistic baseline.

**Points** follow the industry's scaling: a score of ``base_points`` at
good:bad odds of ``base_odds``, and ``pdo`` points more for every doubling of
the odds::

    factor = pdo / ln 2,  offset = base_points - factor * ln(base_odds)
    points(p) = offset + factor * ln((1 - p) / p)        p = P(adverse)

Higher points are safer. **Bands** are cut on P(adverse) or on points; labels
are given best (safest) first either way. The **scorecard** is optbinning's:
optimal bins per feature, their weights of evidence (``ln(share of goods /
share of bads)``, optbinning's sign: positive is safer), a logistic
regression on the WoE and the points of every bin on the same scale.

Example (base 100 points at even odds, 20 points to double them):
    >>> PointsScale(base_points=100, base_odds=1, pdo=20).points(np.array([0.2, 0.5])).round(6).tolist()
    [140.0, 100.0]
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from riskml.exceptions import ConfigError

#: P(adverse) is clipped to [EPS, 1 - EPS] so that points stay finite.
EPS = 1e-9


def _positive(cfg: Mapping[str, Any], key: str, prefix: str) -> float:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{prefix}.{key}", value, "a positive number")
    return float(value)


@dataclass(frozen=True)
class PointsScale:
    """Base score at given odds and points to double the odds (see the module docstring)."""

    base_points: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], *, key: str = "points") -> "PointsScale":
        """From a config section ``{base_points, base_odds, pdo}``; each must be a positive number."""
        if not isinstance(cfg, Mapping):
            raise ConfigError(key, cfg, "a mapping with base_points, base_odds and pdo")
        return cls(**{k: _positive(cfg, k, key) for k in ("base_points", "base_odds", "pdo")})

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        return self.base_points - self.factor * math.log(self.base_odds)

    def points(self, p_adverse) -> np.ndarray:
        """Points of P(adverse); NaN stays NaN."""
        p = np.clip(np.asarray(p_adverse, dtype=np.float64), EPS, 1.0 - EPS)
        return self.offset + self.factor * np.log((1.0 - p) / p)

    def probability(self, points) -> np.ndarray:
        """P(adverse) at a score in points (the inverse of :meth:`points`)."""
        odds = np.exp((np.asarray(points, dtype=np.float64) - self.offset) / self.factor)
        return 1.0 / (1.0 + odds)

    def as_dict(self) -> dict[str, float]:
        return {"base_points": self.base_points, "base_odds": self.base_odds, "pdo": self.pdo}


@dataclass(frozen=True)
class Bands:
    """Risk bands cut on ``probability`` (P(adverse)) or on ``points``; ``labels`` best first.

    On probability, ``labels[i]`` holds ``edges[i-1] <= p < edges[i]``. On
    points, the highest band ``labels[0]`` holds ``points >= edges[-1]`` and
    ``labels[-1]`` holds ``points < edges[0]`` (edges increasing either way).

    >>> Bands("points", (560.0, 600.0), ("A", "B", "C")).assign(points=np.array([610, 600, 590, 500])).tolist()
    ['A', 'A', 'B', 'C']
    """

    by: str = "probability"
    edges: tuple[float, ...] = (0.02, 0.05, 0.15, 0.35)
    labels: tuple[str, ...] = ("A", "B", "C", "D", "E")

    def __post_init__(self) -> None:
        if self.by not in ("probability", "points"):
            raise ConfigError("bands.by", self.by, "'probability' or 'points'")
        edges = list(self.edges)
        if len(self.labels) != len(edges) + 1 or edges != sorted(edges) or len(set(edges)) != len(edges):
            raise ConfigError("bands", {"edges": edges, "labels": list(self.labels)},
                              "strictly increasing edges and one more label than edges")
        if self.by == "probability" and edges and not (0 < edges[0] and edges[-1] < 1):
            raise ConfigError("bands.edges", edges, "probabilities strictly between 0 and 1 (bands.by=probability)")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Bands":
        """From ``{by, edges, labels}`` (``by`` defaults to probability; YAML reads a key ``on`` as true)."""
        try:
            by, edges, labels = str(cfg.get("by", "probability")), tuple(float(e) for e in cfg["edges"]), \
                tuple(str(x) for x in cfg["labels"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError("bands", cfg, "a mapping with by, edges (numbers) and labels") from None
        return cls(by, edges, labels)

    def assign(self, p_adverse=None, points=None) -> np.ndarray:
        """Band labels (object array) from P(adverse) or points, whichever the bands are cut on."""
        return np.asarray(self.labels, dtype=object)[self.positions(p_adverse, points)]

    def positions(self, p_adverse=None, points=None) -> np.ndarray:
        """Each row's band as a position in ``labels`` (:meth:`assign` without making the strings)."""
        edges = np.asarray(self.edges, dtype=np.float64)
        if self.by == "probability":
            if p_adverse is None:
                raise ValueError("bands cut on probability need p_adverse")
            return np.searchsorted(edges, np.asarray(p_adverse, dtype=np.float64), side="right")
        if points is None:
            raise ValueError("bands cut on points need points")
        return len(edges) - np.searchsorted(edges, np.asarray(points, dtype=np.float64), side="right")

    def as_dict(self) -> dict[str, Any]:
        return {"by": self.by, "edges": list(self.edges), "labels": list(self.labels)}


def fit_scorecard(X: pd.DataFrame, y_binary: np.ndarray, scale: PointsScale, *, seed: int = 0,
                  max_iter: int = 1000, max_n_prebins: int = 20):
    """optbinning's ``Scorecard``: optimal bins and WoE per feature, a logistic regression on the WoE,
    points per bin on ``scale``. Categorical features are binned as categories; ``max_n_prebins``
    bounds the pre-bins optbinning's solver chooses from (its time grows with them)."""
    from optbinning import BinningProcess, Scorecard  # lazy: optbinning (ortools) costs ~1 s to import
    from sklearn.linear_model import LogisticRegression

    cats = _categorical(X)
    process = BinningProcess(list(X.columns), categorical_variables=cats or None, max_n_prebins=int(max_n_prebins))
    card = Scorecard(binning_process=process, estimator=LogisticRegression(max_iter=max_iter, random_state=seed),
                     scaling_method="pdo_odds",
                     scaling_method_params={"pdo": scale.pdo, "odds": scale.base_odds,
                                            "scorecard_points": scale.base_points})
    with _quiet():
        card.fit(_for_binning(X), np.asarray(y_binary).astype(np.int64))
    return card


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """optbinning 1.0 trips pandas 3's deprecation warnings on its own frames; they are not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"optbinning\.")
        yield


def _categorical(X: pd.DataFrame) -> list[str]:
    """Columns optbinning bins as categories: every non-numeric one (pandas category, strings)."""
    return [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c].dtype)
            or isinstance(X[c].dtype, pd.CategoricalDtype)]


def _for_binning(X: pd.DataFrame) -> pd.DataFrame:
    """Numbers as float64, categories as object (optbinning's expectation)."""
    out = X.copy()
    cats = set(_categorical(X))
    for c in out.columns:
        out[c] = out[c].astype(object) if c in cats else out[c].astype("float64")
    return out


def scorecard_table(card, feature_factors: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (feature, bin): bin, count, events, event rate, WoE, IV, coefficient, points, factor."""
    with _quiet():
        t = card.table(style="detailed")
    t = t[~t["Bin"].astype(str).isin(["", "Totals"])].rename(columns={
        "Variable": "feature", "Bin id": "bin_id", "Bin": "bin", "Count": "count", "Count (%)": "share",
        "Non-event": "non_events", "Event": "events", "Event rate": "event_rate", "WoE": "woe", "IV": "iv",
        "Coefficient": "coefficient", "Points": "points"})
    t = t[["feature", "bin_id", "bin", "count", "share", "non_events", "events", "event_rate", "woe", "iv",
           "coefficient", "points"]].reset_index(drop=True)
    t["bin"] = t["bin"].astype(str)
    if feature_factors is not None:
        t.insert(1, "factor", t["feature"].map(dict(feature_factors)))
    return t


def scorecard_points(card, X: pd.DataFrame) -> np.ndarray:
    """Total points of each row (the sum of its bins' points)."""
    with _quiet():
        return np.asarray(card.score(_for_binning(X)), dtype=np.float64)


def scorecard_proba(card, X: pd.DataFrame) -> np.ndarray:
    """P(adverse) of each row from the scorecard's logistic regression."""
    with _quiet():
        return np.asarray(card.predict_proba(_for_binning(X))[:, 1], dtype=np.float64)


def band_of(p_adverse: Sequence[float] | np.ndarray, scale: PointsScale, bands: Bands) -> np.ndarray:
    """Bands of probabilities, through their points when the bands are cut on points."""
    p = np.asarray(p_adverse, dtype=np.float64)
    return bands.assign(p_adverse=p, points=scale.points(p) if bands.by == "points" else None)


def optimal_iv(X: pd.DataFrame, y_binary: np.ndarray, *, max_n_prebins: int = 20) -> pd.Series:
    """Information value of every column of ``X`` on optbinning's optimal bins (index: column name).

    ``max_n_prebins`` bounds optbinning's pre-bins per column: the solver's time grows with them, and
    an information value for a report moves little between 10 and 20 pre-bins.
    """
    from optbinning import BinningProcess  # lazy: see fit_scorecard

    empty = [c for c in X.columns if X[c].isna().all()]  # no value to bin (e.g. past causes without a cause column)
    Xb = X.drop(columns=empty)
    cats = _categorical(Xb)
    # pre-bins down to 0.1% of rows: a rare flag (fraud, under 1% of accounts) is otherwise one bin, IV 0
    process = BinningProcess(list(Xb.columns), categorical_variables=cats or None, min_prebin_size=0.001,
                             max_n_prebins=int(max_n_prebins))
    with _quiet():
        process.fit(_for_binning(Xb), np.asarray(y_binary).astype(np.int64))
        summary = process.summary()
    iv = pd.Series(summary["iv"].astype(float).to_numpy(), index=summary["name"].astype(str).to_numpy())
    return pd.concat([iv, pd.Series(0.0, index=empty)]).reindex(X.columns)

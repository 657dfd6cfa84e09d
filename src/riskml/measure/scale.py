"""Scores in points and risk bands: the one scale that training, explanations and monitoring share.

**Points** follow the industry's scaling: a score of ``base_points`` at
good:bad odds of ``base_odds``, and ``pdo`` points more for every doubling of
the odds::

    factor = pdo / ln 2,  offset = base_points - factor * ln(base_odds)
    points(p) = offset + factor * ln((1 - p) / p)        p = P(adverse)

Higher points are safer. **Bands** are cut on P(adverse) or on points; labels
are given best (safest) first either way.

Example (base 100 points at even odds, 20 points to double them):
    >>> PointsScale(base_points=100, base_odds=1, pdo=20).points(np.array([0.2, 0.5])).round(6).tolist()
    [140.0, 100.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

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


def band_of(p_adverse: Sequence[float] | np.ndarray, scale: PointsScale, bands: Bands) -> np.ndarray:
    """Bands of probabilities, through their points when the bands are cut on points."""
    p = np.asarray(p_adverse, dtype=np.float64)
    return bands.assign(p_adverse=p, points=scale.points(p) if bands.by == "points" else None)

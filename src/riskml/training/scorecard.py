"""The scorecard of the logistic baseline (optbinning).

The points and bands it scores on are :mod:`riskml.measure.scale`'s. The **scorecard** is optbinning's:
optimal bins per feature, their weights of evidence (``ln(share of goods /
share of bads)``, optbinning's sign: positive is safer), a logistic
regression on the WoE and the points of every bin on the same scale.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from riskml.measure.scale import PointsScale
from riskml.measure.tables import categorical_columns, for_binning, quiet_optbinning


def fit_scorecard(X: pd.DataFrame, y_binary: np.ndarray, scale: PointsScale, *, seed: int = 0,
                  max_iter: int = 1000, max_n_prebins: int = 20):
    """optbinning's ``Scorecard``: optimal bins and WoE per feature, a logistic regression on the WoE,
    points per bin on ``scale``. Categorical features are binned as categories; ``max_n_prebins``
    bounds the pre-bins optbinning's solver chooses from (its time grows with them)."""
    from optbinning import BinningProcess, Scorecard  # lazy: optbinning (ortools) costs ~1 s to import
    from sklearn.linear_model import LogisticRegression

    cats = categorical_columns(X)
    process = BinningProcess(list(X.columns), categorical_variables=cats or None, max_n_prebins=int(max_n_prebins))
    card = Scorecard(binning_process=process, estimator=LogisticRegression(max_iter=max_iter, random_state=seed),
                     scaling_method="pdo_odds",
                     scaling_method_params={"pdo": scale.pdo, "odds": scale.base_odds,
                                            "scorecard_points": scale.base_points})
    with quiet_optbinning():
        card.fit(for_binning(X), np.asarray(y_binary).astype(np.int64))
    return card


def scorecard_table(card, feature_factors: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (feature, bin): bin, count, events, event rate, WoE, IV, coefficient, points, factor."""
    with quiet_optbinning():
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
    with quiet_optbinning():
        return np.asarray(card.score(for_binning(X)), dtype=np.float64)


def scorecard_proba(card, X: pd.DataFrame) -> np.ndarray:
    """P(adverse) of each row from the scorecard's logistic regression."""
    with quiet_optbinning():
        return np.asarray(card.predict_proba(for_binning(X))[:, 1], dtype=np.float64)

"""Back-test: what the model predicted at a scored month against what happened after it.

When the monitored histories run past the scored month ``as_of`` by at least
the model's horizon ``H``, the realised outcome of an account normal at
``as_of`` is adverse when its status in months ``as_of+1 .. as_of+H`` is ever
suspended or closed, a maintenance suspension counting as normal: the same
rule as the training labels (``riskml.features.labels``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from riskml.factors import CAUSES
from riskml.platform import effective_status
from riskml.schema import STATUS_CODE
from riskml.measure.metrics import ks_statistic
from riskml.measure.tables import calibration_table


def realised_outcomes(panel: pd.DataFrame, borrower_ids, *, as_of: int, horizon: int) -> pd.Series:
    """1 (adverse) / 0 per borrower over months ``as_of+1 .. as_of+horizon``; NA where a month is missing.

    >>> p = pd.DataFrame({"borrower_id": [1, 1, 1, 2, 2], "month": [3, 4, 5, 3, 4],
    ...                   "status": ["normal", "suspended", "normal", "normal", "normal"], "cause": [None, "overdue",
    ...                   None, None, None]})
    >>> realised_outcomes(p, [1, 2], as_of=3, horizon=2).tolist()
    [1, <NA>]
    """
    ids = pd.Index(np.asarray(borrower_ids, dtype=np.int64))
    window = panel[(panel["month"] > as_of) & (panel["month"] <= as_of + horizon)]
    window = window[window["borrower_id"].isin(ids)]
    status = window["status"].astype(str).map(STATUS_CODE).to_numpy(np.int8)
    cause = None
    if "cause" in window.columns:
        code = {c: i for i, c in enumerate(CAUSES)}
        cause = window["cause"].astype(object).map(code).fillna(-1).to_numpy(np.int8)
    bad = pd.Series(effective_status(status, cause) > 0, index=window.index)
    g = pd.DataFrame({"borrower_id": window["borrower_id"].to_numpy(), "bad": bad.to_numpy(),
                      "month": window["month"].to_numpy()}).groupby("borrower_id")
    months = g["month"].nunique().reindex(ids)
    out = g["bad"].any().reindex(ids).astype("Int64")
    out[months.fillna(0).to_numpy() < horizon] = pd.NA
    return out.reset_index(drop=True)


def backtest(p_adverse, realised, bands: np.ndarray, order: Sequence[str], *,
             tolerance: float = 0.05) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predicted vs realised by band (counts, 95% intervals, ``ok``) and overall AUC, KS and rates.

    Rows without a realised outcome (``NA``) are left out and counted.
    """
    r = pd.array(realised, dtype="Int64")
    known = ~np.asarray(pd.isna(r))
    y = np.asarray(r[known], dtype=np.int64)
    p = np.asarray(p_adverse, dtype=np.float64)[known]
    table = calibration_table(y, p, groups=np.asarray(bands, dtype=object)[known], order=list(order)[::-1],
                              tolerance=tolerance)
    two = 0 < y.sum() < len(y)
    metrics = {"n": int(known.sum()), "n_without_outcome": int((~known).sum()), "events": int(y.sum()),
               "predicted_rate": float(p.mean()) if len(p) else float("nan"),
               "observed_rate": float(y.mean()) if len(y) else float("nan"),
               "auc": float(roc_auc_score(y, p)) if two else float("nan"),
               "ks": ks_statistic(y, p) if two else float("nan"),
               "bands_ok": bool(table["ok"].all())}
    return table, metrics

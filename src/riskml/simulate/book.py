"""The origination schedule: how many accounts open each month, and when each one opened.

A lender's book takes in new accounts every month, so at any month it mixes
young and seasoned accounts. The schedule spreads ``n_borrowers`` openings
over the months ``0..open_months - 1`` (every month of the history by
default): a steady monthly count, ramped up linearly over the first
``open_ramp_months`` (a young book grows into its volume) and swinging with
the calendar year (``open_season``, most openings in month-of-year
``open_season_peak``). Counts are whole numbers summing to ``n_borrowers``
(largest remainders), and borrower ids are issued in opening order, as an
account number would be: id ``i`` opened in month ``start_months(cfg)[i]``.
Nothing here is random, so the schedule is the same for every seed.

Example (a single cohort, the book of a platform that opened all at once):
    >>> from riskml.simulate.config import SimConfig
    >>> schedule(SimConfig(n_borrowers=10, n_months=12, open_months=1)).tolist()
    [10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
"""

from __future__ import annotations

import numpy as np

from riskml.simulate.config import SimConfig


def weights(cfg: SimConfig) -> np.ndarray:
    """Relative openings per month (``n_months`` of them; zero after ``open_months``)."""
    t = np.arange(cfg.n_months, dtype=np.float64)
    ramp = np.ones_like(t)
    if cfg.open_ramp_months > 0:
        ramp = cfg.open_ramp_start + (1 - cfg.open_ramp_start) * np.minimum(1.0, (t + 1) / cfg.open_ramp_months)
    season = 1 + cfg.open_season * np.cos(2 * np.pi * (t % 12 - cfg.open_season_peak) / 12)
    w = ramp * season
    w[(cfg.open_months or cfg.n_months):] = 0
    return w


def schedule(cfg: SimConfig) -> np.ndarray:
    """Accounts opened in each month, ``int64`` of length ``n_months``, summing to ``n_borrowers``."""
    w = weights(cfg)
    share = cfg.n_borrowers * w / w.sum()
    counts = np.floor(share).astype(np.int64)
    rest = cfg.n_borrowers - int(counts.sum())
    # the largest remainders get the accounts left over (ties: the earlier month), so counts are exact
    order = np.lexsort((np.arange(len(w)), -(share - counts)))
    counts[order[:rest]] += 1
    return counts


def start_months(cfg: SimConfig, ids: np.ndarray | None = None) -> np.ndarray:
    """The month each account opened (``int32``), for ``ids`` (default: every borrower)."""
    edges = np.cumsum(schedule(cfg))
    ids = np.arange(cfg.n_borrowers, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    return np.searchsorted(edges, ids, side="right").astype(np.int32)

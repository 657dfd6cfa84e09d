"""Counts that describe a simulated panel: statuses, causes, adverse events.

An *adverse event* is a new platform decision against the borrower, read off
the panel itself: a suspension or closure starting (including a suspended
line escalated to closure), or a limit cut on an open line. Summaries add up
chunk by chunk, so a data set of any size is summarised in one pass.

Example:
    >>> import pandas as pd
    >>> from riskml.simulate import SimConfig, simulate
    >>> s = Summary()
    >>> s.add(simulate(SimConfig(n_borrowers=30, n_months=12, block_size=16)).panel)
    >>> s.rows, s.borrowers
    (154, 30)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskml.factors import CAUSES
from riskml.schema import STATUSES


def _codes(panel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """borrower_id, status and cause codes, credit_limit of a panel frame or of its columns as arrays."""
    if isinstance(panel, pd.DataFrame):
        return (panel["borrower_id"].to_numpy(), panel["status"].cat.codes.to_numpy(),
                panel["cause"].cat.codes.to_numpy(), panel["credit_limit"].to_numpy())
    return panel["borrower_id"], panel["status"], panel["cause"], panel["credit_limit"]


def adverse_events(panel: pd.DataFrame | dict[str, np.ndarray]) -> np.ndarray:
    """Per row: the cause code of a new adverse decision in that month, or -1.

    ``panel`` (a frame, or its columns with status and cause as codes) must hold
    whole borrower histories sorted by borrower then month.
    """
    bid, status, cause, limit = _codes(panel)
    first = np.r_[True, bid[1:] != bid[:-1]]
    prev_status = np.r_[0, status[:-1]]
    prev_limit = np.r_[0, limit[:-1]]
    worse = status > prev_status
    cut = (status == 0) & (limit < prev_limit * 0.999) & (cause >= 0)
    return np.where(~first & (worse | cut), cause, -1).astype(np.int8)


@dataclass
class Summary:
    """Running counts over panel chunks (whole borrowers per chunk)."""

    rows: int = 0
    borrowers: int = 0
    suspended_once: int = 0
    closed_once: int = 0
    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    cause: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0))
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0))

    def add(self, panel: pd.DataFrame | dict[str, np.ndarray]) -> None:
        """Add one chunk of whole borrower histories (a frame, or its columns with codes)."""
        bid, status, cause, _ = _codes(panel)
        self.rows += len(bid)
        start = np.flatnonzero(np.r_[True, bid[1:] != bid[:-1]])
        self.borrowers += len(start)
        ev = adverse_events(panel)
        for counts, codes, names in ((self.status, status, STATUSES), (self.cause, cause, CAUSES),
                                     (self.events, ev, CAUSES)):
            for name, n in zip(names, np.bincount(codes[codes >= 0], minlength=len(names))):
                counts[name] += int(n)
        self.suspended_once += int(np.maximum.reduceat(status == 1, start).sum())
        self.closed_once += int(np.maximum.reduceat(status == 2, start).sum())

    def to_dict(self) -> dict:
        n = max(self.borrowers, 1)
        return {"rows": self.rows, "borrowers": self.borrowers, "status_counts": self.status,
                "cause_counts": self.cause, "adverse_events": self.events,
                "share_suspended_at_least_once": self.suspended_once / n,
                "share_closed_at_least_once": self.closed_once / n}

    def text(self) -> str:
        """A few lines for the terminal."""
        n = max(self.borrowers, 1)
        total = max(sum(self.events.values()), 1)
        lines = [f"rows {self.rows:,}  borrowers {self.borrowers:,}",
                 f"suspended at least once {100 * self.suspended_once / n:.1f}%  "
                 f"closed at least once {100 * self.closed_once / n:.1f}%",
                 f"adverse events ({sum(self.events.values()):,}) by cause:"]
        lines += [f"  {c:<20} {k:>9,}  {100 * k / total:5.1f}%"
                  for c, k in sorted(self.events.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines)

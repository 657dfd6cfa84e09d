"""Band migration: each account's risk band some months ago against its band now.

The matrix a risk team reads beside the PSI: of the accounts in band B at
month t-k, how many are in each band (or suspended, or closed) at month t.
Both bands come from the same histories and the same model, each from the
months up to its own snapshot (no month after t-k shapes the earlier band), the
way ``riskml.predict`` assigns them: a risk band for an account normal at the
snapshot, its status as the band for one suspended or closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from riskml.features.snapshots import build_features
from riskml.schema import STATUSES
from riskml.measure.scale import Bands, PointsScale


def band_labels(status: np.ndarray, p_adverse: np.ndarray, scale: PointsScale, bands: Bands) -> np.ndarray:
    """The band of each account: its risk band when normal (``p_adverse`` of the normal ones, in order),
    its status when suspended or closed."""
    label = np.asarray(status, dtype=object).copy()
    normal = label == STATUSES[0]
    if normal.any():
        label[normal] = bands.assign(p_adverse=p_adverse, points=scale.points(p_adverse))
    return label


def bands_at(panel: pd.DataFrame, model: Any, scale: PointsScale, bands: Bands, month: int) -> pd.Series:
    """The band of every borrower with a row at ``month``, from the months up to it (index: borrower_id)."""
    snaps = build_features(panel[panel["month"] <= month], as_of=month, windows=model.windows, signals=model.signals)
    at = (snaps.keys["month"] == month).to_numpy()
    status = snaps.keys["status"].astype(str).to_numpy(dtype=object)[at]
    normal = status == STATUSES[0]
    p = model.positive(model.proba(snaps.X[at][normal])) if normal.any() else np.zeros(0)
    return pd.Series(band_labels(status, p, scale, bands), index=snaps.keys["borrower_id"].to_numpy()[at],
                     name=f"band_{month}")


@dataclass
class Migration:
    """Accounts by band at ``from_month`` (rows) and at ``to_month`` (columns); labels best first."""

    from_month: int
    to_month: int
    counts: pd.DataFrame

    @property
    def labels(self) -> list[str]:
        return list(self.counts.index)

    def moves(self) -> dict[str, int]:
        """Accounts that stayed, moved to a riskier band (down accounts last), or to a safer one."""
        c = self.counts.to_numpy()
        i, j = np.indices(c.shape)
        return {"accounts": int(c.sum()), "stayed": int(c[i == j].sum()), "worse": int(c[j > i].sum()),
                "better": int(c[j < i].sum())}

    def shares(self) -> pd.DataFrame:
        """Each row as shares of its accounts (a row of no accounts stays 0)."""
        total = self.counts.sum(axis=1).to_numpy()[:, None]
        return pd.DataFrame(np.divide(self.counts.to_numpy(), total, out=np.zeros(self.counts.shape),
                                      where=total > 0), index=self.counts.index, columns=self.counts.columns)

    def summary(self) -> dict[str, Any]:
        return {"from_month": self.from_month, "to_month": self.to_month, "labels": self.labels,
                "counts": self.counts.to_numpy().tolist(), **self.moves()}


def band_migration(panel: pd.DataFrame, model: Any, scale: PointsScale, bands: Bands, *, to_month: int,
                   months: int = 1, now: pd.Series | None = None) -> Migration:
    """The migration of the accounts present at both ``to_month - months`` and ``to_month``; ``now``:
    the bands at ``to_month`` when the caller has scored them already (as :func:`bands_at` gives them)."""
    order = list(dict.fromkeys([*bands.labels, *STATUSES[1:]]))
    before = bands_at(panel, model, scale, bands, to_month - months)
    after = bands_at(panel, model, scale, bands, to_month) if now is None else now
    both = before.index.intersection(after.index)
    rows = pd.Categorical(before.loc[both].to_numpy(), categories=order).codes
    cols = pd.Categorical(after.loc[both].to_numpy(), categories=order).codes
    counts = np.zeros((len(order), len(order)), dtype=np.int64)
    np.add.at(counts, (rows, cols), 1)  # every label is one of ``order``: no code is -1
    return Migration(to_month - months, to_month, pd.DataFrame(counts, index=order, columns=order))

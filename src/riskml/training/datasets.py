"""Data sources for training and how to split them.

A :class:`Dataset` is what every model trains on, whatever its source:
features, integer labels, class names, the entity (borrower) and time of each
row, and the factor and monotone direction of every feature. It is made by
:func:`from_snapshots` (a panel's snapshots, ``riskml.features``) or by
:func:`riskml.training.tabular.from_frame` (any table); reading the files
behind them is the edge's job (:mod:`riskml.sources`).

Splits are index arrays: an out-of-time split (train on earlier months, test
on later ones, no entity in both) or stratified k-fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from riskml.exceptions import ConfigError, fraction, whole_number
from riskml.features import Snapshots, get_target


@dataclass
class Dataset:
    """Rows to train and test on, with their provenance.

    Attributes:
        X: features (float32 numeric or pandas ``category``; NaN allowed).
        y: integer labels ``0..len(classes)-1``; class 0 is the "normal" one,
            every other class counts as adverse.
        classes: class names in label order.
        groups: the entity (borrower) of each row; no entity is in both train and test.
        time: the time of each row (snapshot month) or ``None`` (no time order).
        keys: identifying columns per row (id, and month for snapshots).
        feature_factors / feature_directions: per feature, its factor id and
            monotone direction (+1/-1/0).
        categories: categorical feature -> its levels (codes at prediction follow them).
        cause: cause of the first change per row (the simulator's, or the one a lender recorded), if known.
        digest / source / kind: the data set's content hash, where it came from, its source kind.
        sim: the simulator config of a synthetic panel (for the oracle), else ``None``.
        meta: anything else worth logging (sizes, windows, horizon).
    """

    X: pd.DataFrame
    y: np.ndarray
    classes: list[str]
    groups: np.ndarray
    time: np.ndarray | None
    keys: pd.DataFrame
    feature_factors: dict[str, str]
    feature_directions: dict[str, int]
    digest: str
    source: str
    kind: str
    categories: dict[str, list[str]] = field(default_factory=dict)
    cause: pd.Series | None = None
    sim: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    rejects: pd.DataFrame | None = None  # a lender's panel: rows left out, with file, row and reason

    @property
    def from_panel(self) -> bool:
        """Snapshots of a panel (simulated or a lender's), not a flat table."""
        return self.kind != "tabular"


@dataclass
class Fold:
    """Row indices of one train / valid (early stopping) / test split."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def valid_mask(groups: np.ndarray, idx: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask over ``idx``: the rows of a random ``fraction`` of its entities (seeded)."""
    uniq = np.unique(groups[idx])
    rng = np.random.default_rng(seed)
    n_valid = int(round(fraction * len(uniq)))
    chosen = rng.choice(uniq, size=n_valid, replace=False) if n_valid else uniq[:0]
    return np.isin(groups[idx], chosen)


def check_split_config(split: Mapping[str, Any]) -> None:
    """The ``split`` settings, before any data is read (their bounds against the data are checked there)."""
    whole_number("split.test_months", split.get("test_months"), 1)
    if split.get("cut_month") is not None:
        whole_number("split.cut_month", split["cut_month"], 0, what="null or a month index")
    for key in ("test_entity_fraction", "time_test_fraction", "valid_fraction"):
        fraction(f"split.{key}", split.get(key))
    whole_number("split.n_splits", split.get("n_splits"), 2)


def time_cut(time: np.ndarray, *, test_months: int | None = None, test_fraction: float | None = None,
             cut: Any = None) -> Any:
    """The last time value that still belongs to training.

    ``cut`` given: it. ``test_months``: the last N distinct times are test.
    ``test_fraction``: the latest times holding about that share of rows are test.
    """
    if cut is not None:
        return cut
    uniq = np.unique(time)
    if len(uniq) < 2:
        raise ConfigError("split", f"{len(uniq)} distinct time value(s)", "at least 2 for an out-of-time split")
    if test_months is not None:
        if not 0 < int(test_months) < len(uniq):
            raise ConfigError("split.test_months", test_months, f"between 1 and {len(uniq) - 1} "
                              f"(the data has {len(uniq)} snapshot months)")
        return uniq[-int(test_months) - 1]
    share = np.cumsum(pd.Series(time).value_counts().sort_index().to_numpy()[::-1]) / len(time)
    n_test = max(1, min(len(uniq) - 1, int(np.searchsorted(share, float(test_fraction)) + 1)))
    return uniq[-n_test - 1]


def out_of_time_split(time: np.ndarray, groups: np.ndarray, *, cut: Any, valid_fraction: float, seed: int,
                      test_entity_fraction: float | None = None) -> Fold:
    """Train/valid on ``time <= cut``, test on later rows, no entity on both sides.

    ``test_entity_fraction`` given: a random share of the entities is held out;
    their rows after the cut are the test set and the other entities' rows up
    to the cut are train/valid (a panel where every borrower has rows on both
    sides of the cut needs this). ``None``: every row after the cut is test
    and the entities that have one are dropped from training. Valid is an
    entity-disjoint ``valid_fraction`` of the training rows.
    """
    if not 0 < valid_fraction < 1:
        raise ConfigError("split.valid_fraction", valid_fraction, "a number strictly between 0 and 1")
    late = time > cut
    if test_entity_fraction is None:
        test = np.flatnonzero(late)
        held = np.isin(groups, np.unique(groups[test]))
    else:
        if not 0 < test_entity_fraction < 1:
            raise ConfigError("split.test_entity_fraction", test_entity_fraction, "a number strictly between 0 and 1")
        held = valid_mask(groups, np.arange(len(groups)), test_entity_fraction, seed + 7919)
        test = np.flatnonzero(late & held)
    early = np.flatnonzero(~late & ~held)
    if len(test) == 0 or len(early) == 0:
        raise ConfigError("split", f"cut at {cut}", "a cut leaving rows on both sides "
                          f"(train rows {len(early)}, test rows {len(test)})")
    in_valid = valid_mask(groups, early, valid_fraction, seed)
    return Fold(f"oot<={cut}", early[~in_valid], early[in_valid], test)


def kfold_splits(y: np.ndarray, groups: np.ndarray, *, n_splits: int, valid_fraction: float,
                 seed: int) -> list[Fold]:
    """Stratified k-fold by entity; inside each training part an entity-disjoint valid slice."""
    counts = np.bincount(y)
    if n_splits < 2 or counts[counts > 0].min() < n_splits:
        raise ConfigError("split.n_splits", n_splits, f"at least 2 and at most the smallest class count "
                          f"({int(counts[counts > 0].min())})")
    kf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = []
    for k, (train, test) in enumerate(kf.split(np.zeros(len(y)), y, groups)):
        in_valid = valid_mask(groups, train, valid_fraction, seed + k)
        folds.append(Fold(f"fold{k}", train[~in_valid], train[in_valid], test))
    return folds


def from_snapshots(snaps: Snapshots, *, target: str, digest: str, source: str, kind: str = "synthetic",
                   sim: Any = None, meta: dict[str, Any] | None = None,
                   rejects: pd.DataFrame | None = None) -> Dataset:
    """The :class:`Dataset` of a panel's snapshots for ``target``.

    The features' risk directions become the model's monotone directions,
    flipped for a target whose positive class is the good outcome (recovery).
    """
    tgt = get_target(target)
    keys = snaps.keys.reset_index(drop=True)
    return Dataset(
        X=snaps.X.reset_index(drop=True), y=np.asarray(snaps.y, dtype=np.int64),
        classes=[str(c) for c in tgt.classes],
        groups=keys["borrower_id"].to_numpy(), time=keys["month"].to_numpy(), keys=keys,
        feature_factors=dict(snaps.feature_factors),
        feature_directions={f: d * tgt.risk_sign for f, d in snaps.feature_directions.items()},
        digest=str(digest), source=str(source), kind=kind,
        cause=None if snaps.cause is None else snaps.cause.reset_index(drop=True),
        sim=sim, meta={"n_borrowers": int(keys["borrower_id"].nunique()), **(meta or {})}, rejects=rejects,
    )


def make_folds(ds: Dataset, cfg: Mapping[str, Any]) -> list[Fold]:
    """The folds of a run (``cfg``: its ``split`` settings and ``seed``): out-of-time when the data has a
    time, else stratified k-fold."""
    split, seed = cfg["split"], int(cfg["seed"])
    if ds.time is not None:
        held = None
        if ds.from_panel:  # simulated or a lender's panel: the same out-of-time split with held-out borrowers
            cut = time_cut(ds.time, test_months=split["test_months"], cut=split.get("cut_month"))
            held = split.get("test_entity_fraction")
        else:
            cut = time_cut(ds.time, test_fraction=float(split["time_test_fraction"]))
        return [out_of_time_split(ds.time, ds.groups, cut=cut, valid_fraction=float(split["valid_fraction"]),
                                  seed=seed, test_entity_fraction=None if held is None else float(held))]
    return kfold_splits(ds.y, ds.groups, n_splits=int(split["n_splits"]),
                        valid_fraction=float(split["valid_fraction"]), seed=seed)

"""Data sources for training and how to split them.

A :class:`Dataset` is what every model trains on, whatever its source:
features, integer labels, class names, the entity (borrower) and time of each
row, and the factor and monotone direction of every feature. Two sources:

* ``synthetic`` (here): the panel of ``riskml.generate`` (generated on first
  use, reused after) turned into snapshots by ``riskml.features``;
* ``tabular`` (:mod:`riskml.tabular`): any CSV/parquet table.

Splits are index arrays: an out-of-time split (train on earlier months, test
on later ones, no entity in both) or stratified k-fold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from riskml.exceptions import ConfigError

log = logging.getLogger(__name__)


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
        cause: true cause of the first change per row (synthetic only).
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
    from sklearn.model_selection import StratifiedGroupKFold

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


# --- synthetic data -----------------------------------------------------------------------------

SYNTHETIC_SETTINGS = ("n_borrowers", "n_months", "seed")


def synthetic_dir(data_cfg: Mapping[str, Any], base: Path) -> Path:
    """``<data_dir>/<name>``, a relative ``data_dir`` taken from ``base`` (the launch directory)."""
    root = Path(str(data_cfg["data_dir"]))
    return (root if root.is_absolute() else base / root) / str(data_cfg["name"])


def _manifest_setting(manifest: Mapping[str, Any], key: str) -> Any:
    for scope in (manifest, manifest.get("sim_config") or {}, manifest.get("config") or {}):
        if isinstance(scope, Mapping) and key in scope:
            return scope[key]
    return None


def manifest_mismatch(manifest: Mapping[str, Any], data_cfg: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings where a data set's manifest differs from the config: key -> (manifest, config)."""
    out = {}
    for key in SYNTHETIC_SETTINGS:
        have = _manifest_setting(manifest, key)
        if have is not None and data_cfg.get(key) is not None and have != data_cfg[key]:
            out[key] = (have, data_cfg[key])
    return out


def _generate(data_cfg: Mapping[str, Any], base: Path) -> Path:
    """Run ``riskml.generate`` with the data config's settings."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from riskml import generate

    root = Path(str(data_cfg["data_dir"]))
    overrides = [f"name={data_cfg['name']}", f"data_dir={root if root.is_absolute() else base / root}",
                 *(f"{k}={data_cfg[k]}" for k in SYNTHETIC_SETTINGS)]
    if GlobalHydra.instance().is_initialized():
        gen_cfg = compose("generate", overrides=overrides)
    else:
        with initialize_config_module("riskml.conf", version_base="1.3"):
            gen_cfg = compose("generate", overrides=overrides)
    log.info("generating synthetic data set %s (%s)", data_cfg["name"], ", ".join(overrides[2:]))
    return Path(generate.run(gen_cfg))


def load_synthetic(data_cfg: Mapping[str, Any], *, target: str, horizon: int, base: Path) -> Dataset:
    """The snapshots of a synthetic panel (generated first when it is not there).

    When the stored manifest's ``n_borrowers / n_months / seed`` differ from
    the config, ``data.on_mismatch`` says what happens: ``regenerate`` (write
    the data set again under the same name) or ``fail`` (a :class:`ConfigError`).
    """
    from riskml import __version__ as riskml_version
    from riskml import features, generate
    from riskml.io import sha256_file
    from riskml.simulate import SimConfig

    path = synthetic_dir(data_cfg, base)
    if not (path / "manifest.json").is_file():
        path = _generate(data_cfg, base)
    panel, truth, manifest = generate.load_dataset(path)
    diff = manifest_mismatch(manifest, data_cfg)
    try:
        SimConfig.from_manifest(manifest)
    except ConfigError as e:  # made by another riskml version whose simulator this one cannot replay
        diff["sim_config"] = (str(e), f"a simulator config riskml {riskml_version} can read")
    if diff:
        if data_cfg.get("on_mismatch", "regenerate") != "regenerate":
            key, (have, want) = next(iter(diff.items()))
            raise ConfigError(f"data.{key}", want, f"{have!r} as in {path / 'manifest.json'} (or "
                              "data.on_mismatch=regenerate, or another data.name)")
        log.warning("data set %s was made with %s; regenerating", path, diff)
        path = _generate(data_cfg, base)
        panel, truth, manifest = generate.load_dataset(path)
    snaps = features.build_snapshots(panel, target=target, horizon=horizon, min_history=int(data_cfg["min_history"]),
                                     every=int(data_cfg["every"]), windows=tuple(data_cfg["windows"]))
    from riskml.labels import get_target

    panel_file = path / "panel.parquet"
    digest = ((manifest.get("files") or {}).get(panel_file.name) or {}).get("sha256") or sha256_file(panel_file)
    keys = snaps.keys.reset_index(drop=True)
    return Dataset(
        X=snaps.X.reset_index(drop=True), y=np.asarray(snaps.y, dtype=np.int64),
        classes=[str(c) for c in get_target(target).classes],
        groups=keys["borrower_id"].to_numpy(), time=keys["month"].to_numpy(), keys=keys,
        feature_factors=dict(snaps.feature_factors),
        # risk directions become the model's: flipped for a target whose positive class is good (recovery)
        feature_directions={f: d * get_target(target).risk_sign for f, d in snaps.feature_directions.items()},
        digest=str(digest), source=str(path), kind="synthetic",
        cause=None if snaps.cause is None else snaps.cause.reset_index(drop=True),
        sim=SimConfig.from_manifest(manifest),
        meta={"n_borrowers": int(keys["borrower_id"].nunique()), "horizon": horizon,
              "windows": list(data_cfg["windows"]), "n_months": _manifest_setting(manifest, "n_months")},
    )

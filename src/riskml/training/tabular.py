"""A tabular data source: any CSV/parquet table with an id, a target and features.

The config (``conf/data/tabular.yaml``) names the id column, the target
column, an optional time column (then the split is out-of-time, else
stratified k-fold) and a mapping of factors to columns; unmapped feature
columns form the ``other`` factor. Non-numeric columns are categorical
(pandas ``category`` with string levels, which LightGBM handles natively);
missing values stay NaN. Every config problem is raised before training.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"id": [1, 2, 3, 4], "y": ["ok", "bad", "ok", "bad"],
    ...                    "dpd": [0, 30, None, 60], "city": ["a", "b", None, "a"]})
    >>> ds = from_frame(df, {"id_column": "id", "target_column": "y", "negative_class": "ok",
    ...                      "factors": {"overdue": ["dpd"]}}, source="inline", digest="")
    >>> ds.classes, ds.feature_factors
    (['ok', 'bad'], {'dpd': 'overdue', 'city': 'other'})
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from riskml.training.datasets import Dataset
from riskml.exceptions import ConfigError
from riskml.factors import CATALOGUE, OTHER, signal_of_column


def _columns_exist(df: pd.DataFrame, cols: list[str], key: str, source: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(key, missing if len(missing) > 1 else missing[0],
                          f"column(s) of {source}; it has {list(df.columns)}")


def _target(df: pd.DataFrame, col: str, negative: Any, source: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Integer labels (the negative class first), class names, and rows that have a label."""
    labelled = df[col].notna().to_numpy()
    values = df.loc[labelled, col].astype("string")
    classes = sorted(values.unique().tolist())
    if len(classes) < 2:
        raise ConfigError("data.target_column", col, f"a column with at least two classes; {source} has "
                          f"only {classes} in {int(labelled.sum())} labelled rows")
    numeric = pd.to_numeric(df.loc[labelled, col], errors="coerce").notna().all()
    if negative is None and not numeric:
        # text labels have no natural order: guessing would silently invert the model when the guess is wrong
        raise ConfigError("data.negative_class", None, f"the label of the normal (good) outcome, one of {classes}: "
                          f"the target {col!r} of {source} has text labels")
    if negative is None and len(classes) > 1:  # numbers: the smallest is normal (0 of a 0/1 default flag)
        classes = sorted(classes, key=float)
    if negative is not None:
        if str(negative) not in classes:
            raise ConfigError("data.negative_class", negative, f"one of the target's classes {classes}")
        classes.remove(str(negative))
        classes.insert(0, str(negative))
    y = pd.Categorical(values, categories=classes).codes.astype(np.int64)
    return y, classes, labelled


def _factor_map(factors: Mapping[str, Any], features: list[str], df: pd.DataFrame, source: str,
                custom: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for factor, cols in (factors or {}).items():
        if factor not in CATALOGUE and factor not in custom:  # a misspelt id must not become a factor silently
            raise ConfigError(f"data.factors.{factor}", cols, f"columns mapped to a factor id of the catalogue, one of "
                              f"{list(CATALOGUE)}, or to one of your own declared in data.custom_factors "
                              f"({custom}); {factor!r} is neither")
        cols = [cols] if isinstance(cols, str) else list(cols)
        _columns_exist(df, cols, f"data.factors.{factor}", source)
        for c in cols:
            if c not in features:
                raise ConfigError(f"data.factors.{factor}", c, "a feature column (not the id, target, time or "
                                  "a dropped column)")
            if c in out:
                raise ConfigError(f"data.factors.{factor}", c, f"a column in one factor only; it is in {out[c]!r} too")
            out[c] = str(factor)
    return {f: out.get(f, OTHER) for f in features}


def from_frame(df: pd.DataFrame, data_cfg: Mapping[str, Any], *, source: str, digest: str) -> Dataset:
    """Validate a table against the data config and turn it into a :class:`Dataset`."""
    id_col, target_col = data_cfg.get("id_column"), data_cfg.get("target_column")
    time_col, drop = data_cfg.get("time_column"), list(data_cfg.get("drop") or [])
    _columns_exist(df, [id_col], "data.id_column", source)
    _columns_exist(df, [target_col], "data.target_column", source)
    if time_col is not None:
        _columns_exist(df, [time_col], "data.time_column", source)
    _columns_exist(df, drop, "data.drop", source)
    y, classes, labelled = _target(df, target_col, data_cfg.get("negative_class"), source)
    df = df.loc[labelled].reset_index(drop=True)
    reserved = {id_col, target_col, time_col, *drop}
    features = [c for c in df.columns if c not in reserved]
    if not features:
        raise ConfigError("data", source, "a table with at least one feature column besides id/target/time")
    feature_factors = _factor_map(data_cfg.get("factors") or {}, features, df, source,
                                  [str(f) for f in (data_cfg.get("custom_factors") or [])])

    warnings: list[str] = []
    cat_cfg = data_cfg.get("categorical")
    if cat_cfg is None:
        cats = [c for c in features if not _mostly_numeric(df[c])]
    else:
        cats = list(cat_cfg)
        _columns_exist(df, cats, "data.categorical", source)
    X = pd.DataFrame(index=df.index)
    categories: dict[str, list[str]] = {}
    for c in features:
        if c in cats:
            s = df[c].astype("string")
            levels = sorted(s.dropna().unique().tolist())
            X[c] = pd.Categorical(s.astype(object).where(s.notna(), None), categories=levels)
            categories[c] = levels
            if len(levels) > max(50, len(df) // 10):
                warnings.append(f"column {c!r} is categorical with {len(levels)} levels; is it a number or an id?")
        else:
            num = pd.to_numeric(df[c], errors="coerce")
            bad = num.isna() & df[c].notna()
            if bad.any():  # a numeric column with a few text cells ('unknown'): they become missing, said aloud
                i = int(np.flatnonzero(bad.to_numpy())[0])
                warnings.append(f"column {c!r}: {int(bad.sum())} non-numeric cell(s) read as missing, e.g. row {i} "
                                f"{df[c].iloc[i]!r} (set data.categorical to treat the column as categories)")
            X[c] = num.astype("float32")
            if X[c].isna().all():
                warnings.append(f"column {c!r} has no value in any row; it cannot help the model")
    if len(df) < MIN_ROWS:
        warnings.append(f"only {len(df)} labelled rows (fewer than {MIN_ROWS}): metrics will be noisy and the "
                        "model unreliable")
    directions = {str(k): int(v) for k, v in (data_cfg.get("directions") or {}).items()}
    _columns_exist(df, list(directions), "data.directions", source)
    feature_directions = {}
    for c in features:
        sig = signal_of_column(c)
        d = directions.get(c, sig.direction if sig else 0)
        feature_directions[c] = 0 if c in cats else int(np.sign(d))
    groups = df[id_col].to_numpy()
    time = None
    if time_col is not None:
        time = _time_values(df[time_col], time_col, source)
    keys = df[[id_col] + ([time_col] if time_col else [])].copy()
    return Dataset(X=X, y=y, classes=classes, groups=groups, time=time, keys=keys,
                   feature_factors=feature_factors, feature_directions=feature_directions,
                   digest=digest, source=source, kind="tabular", categories=categories,
                   meta={"n_rows": len(df), "n_entities": int(pd.Series(groups).nunique()), "warnings": warnings})


#: below this many labelled rows a table gets a warning (the run still goes on)
MIN_ROWS = 200


def _mostly_numeric(s: pd.Series) -> bool:
    """Numbers, or text that is numbers but for a few cells (<= 2%, e.g. 'unknown'): a numeric feature.

    Treating such a column as categorical would make every distinct number a
    level and drop its monotone direction, silently.
    """
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return True
    present = s.notna()
    if not present.any():
        return True
    parsed = pd.to_numeric(s[present], errors="coerce").notna()
    return bool(parsed.mean() >= 0.98)


def _time_values(t: pd.Series, col: str, source: str) -> np.ndarray:
    """The time column as numbers or datetimes; an unparseable cell names its row."""
    if pd.api.types.is_numeric_dtype(t):
        if t.isna().any():
            i = int(np.flatnonzero(t.isna().to_numpy())[0])
            raise ConfigError("data.time_column", col, f"a column with a time in every row of {source}; row {i} "
                              "has none")
        return t.to_numpy()
    parsed = pd.to_datetime(t, errors="coerce", format="mixed")
    bad = parsed.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ConfigError("data.time_column", col, f"dates or numbers in every row of {source}; row {i} has "
                          f"{t.iloc[i]!r}")
    return parsed.to_numpy()

"""The tables a risk team reads: gains by score decile or band, calibration by
band with 95% intervals, and information value per feature and per factor.

Stage code: arrays in, frames out. Rows of the gains and calibration tables
run from the riskiest group to the safest, so cumulative columns read "the
worst x% of accounts catch y% of the adverse outcomes".

Example (6 accounts, 3 bands; 2 events, both in the worst band):
    >>> g = gains_table([1, 1, 0, 0, 0, 0], [0.9, 0.8, 0.7, 0.3, 0.2, 0.1], groups=list("EEDDAA"),
    ...                 order=["E", "D", "A"])
    >>> g[["group", "count", "events", "cum_capture", "ks", "lift"]].to_dict("records")[0]
    {'group': 'E', 'count': 2, 'events': 2, 'cum_capture': 1.0, 'ks': 1.0, 'lift': 3.0}
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

#: z of a two-sided 95% interval.
Z95 = 1.959963984540054


def wilson_interval(events, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial rate ``events / n`` (NaN where ``n`` is 0).

    >>> lo, hi = wilson_interval(np.array([5]), np.array([50]))
    >>> round(float(lo[0]), 4), round(float(hi[0]), 4)
    (0.0435, 0.2136)
    """
    e, n = np.asarray(events, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = e / n
        centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def decile_groups(p, n_bins: int = 10) -> np.ndarray:
    """Group 1 (riskiest) .. ``n_bins`` (safest) of equal counts by descending ``p`` (ties by position)."""
    p = np.asarray(p, dtype=np.float64)
    rank = np.empty(len(p), dtype=np.int64)
    rank[np.argsort(-p, kind="stable")] = np.arange(len(p))
    return (rank * n_bins // max(len(p), 1) + 1).astype(np.int64)


def _by_group(y, p, groups, order: Sequence | None) -> pd.DataFrame:
    frame = pd.DataFrame({"y": np.asarray(y, dtype=np.float64), "p": np.asarray(p, dtype=np.float64),
                          "group": np.asarray(groups, dtype=object)})
    g = frame.groupby("group", sort=False).agg(count=("y", "size"), events=("y", "sum"), p_mean=("p", "mean"))
    if order is None:  # riskiest first: by mean predicted probability
        order = g.sort_values("p_mean", ascending=False).index
    g = g.reindex(list(order))
    g["count"] = g["count"].fillna(0).astype(np.int64)
    g["events"] = g["events"].fillna(0).astype(np.int64)
    return g.rename_axis("group").reset_index()


def gains_table(y, p, *, groups=None, order: Sequence | None = None, n_bins: int = 10) -> pd.DataFrame:
    """The gains table: per group (deciles of ``p`` by default, or the given ``groups`` in ``order``,
    riskiest first) count, events, event rate, mean predicted, cumulative capture of events, KS and lift.

    ``ks`` is the gap between the cumulative shares of events and of non-events
    down to that row (the table's KS statistic is its maximum); ``lift`` is the
    group's event rate over the overall rate, ``cum_lift`` the same down to it.
    """
    if groups is None:
        groups, order = decile_groups(p, n_bins), list(range(1, n_bins + 1))
    g = _by_group(y, p, groups, order)
    n, events = g["count"].sum(), g["events"].sum()
    rate = events / n if n else np.nan
    g["non_events"] = g["count"] - g["events"]
    with np.errstate(invalid="ignore", divide="ignore"):
        g["event_rate"] = g["events"] / g["count"]
        g["share"] = g["count"] / n
        g["cum_share"] = g["count"].cumsum() / n
        g["cum_capture"] = g["events"].cumsum() / events
        g["cum_non_events"] = g["non_events"].cumsum() / (n - events)
        g["ks"] = (g["cum_capture"] - g["cum_non_events"]).abs()
        g["lift"] = g["event_rate"] / rate
        g["cum_lift"] = (g["events"].cumsum() / g["count"].cumsum()) / rate
    return g[["group", "count", "share", "events", "event_rate", "p_mean", "cum_share", "cum_capture",
              "cum_non_events", "ks", "lift", "cum_lift"]]


def calibration_table(y, p, *, groups=None, order: Sequence | None = None, n_bins: int = 10,
                      tolerance: float = 0.05) -> pd.DataFrame:
    """Predicted vs observed per group with the observed rate's Wilson 95% interval.

    ``ok`` holds where the gap is within ``tolerance`` or the mean prediction
    lies inside the interval (small groups): the bar a calibrated model meets.
    """
    if groups is None:
        groups, order = decile_groups(p, n_bins), list(range(1, n_bins + 1))
    g = _by_group(y, p, groups, order)
    with np.errstate(invalid="ignore", divide="ignore"):
        g["observed"] = g["events"] / g["count"]
    g["lo95"], g["hi95"] = wilson_interval(g["events"], g["count"])
    g["gap"] = g["p_mean"] - g["observed"]
    g["ok"] = (g["gap"].abs() <= tolerance) | ((g["p_mean"] >= g["lo95"]) & (g["p_mean"] <= g["hi95"]))
    g.loc[g["count"] == 0, "ok"] = True
    return g.rename(columns={"p_mean": "predicted"})[
        ["group", "count", "events", "predicted", "observed", "lo95", "hi95", "gap", "ok"]]


def woe_iv(events, non_events) -> tuple[np.ndarray, float]:
    """Weights of evidence per bin, ``ln(share of non-events / share of events)``, and the information
    value ``sum((share non-events - share events) * WoE)``; a bin empty on one side adds 0.5 to both counts.

    >>> w, iv = woe_iv([10, 40], [90, 60])
    >>> [round(float(x), 4) for x in w], round(iv, 4)
    ([1.0986, -0.6931], 0.7167)
    """
    e, ne = np.asarray(events, dtype=np.float64), np.asarray(non_events, dtype=np.float64)
    if ((e == 0) | (ne == 0)).any():
        e, ne = e + 0.5, ne + 0.5
    pe, pne = e / e.sum(), ne / ne.sum()
    woe = np.log(pne / pe)
    return woe, float(np.sum((pne - pe) * woe))


def quantile_iv(X: pd.DataFrame, y_binary, *, n_bins: int = 20) -> pd.Series:
    """Information value of every column of ``X`` on its quantile bins (index: column name).

    A number's bins are cut at its ``n_bins``-quantiles, ties merged (a rare flag
    keeps its two values apart however rare it is); a category's bins are its
    levels; missing values are a bin of their own. No optimisation: a column
    costs one sort, where optbinning's optimal bins solve a model per column.

    >>> x = pd.DataFrame({"flag": [0.0] * 100 + [1.0] * 100})
    >>> round(float(quantile_iv(x, [1] * 10 + [0] * 90 + [1] * 40 + [0] * 60)["flag"]), 4)
    0.7167
    """
    y = np.asarray(y_binary).astype(np.int64)
    out = {}
    for c in X.columns:
        col = X[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy()
            idx = np.where(codes < 0, len(col.cat.categories), codes)
        else:
            x = col.to_numpy(np.float64, na_value=np.nan)
            known = np.isfinite(x)
            edges = np.unique(np.quantile(x[known], np.arange(1, n_bins) / n_bins)) if known.any() else np.empty(0)
            idx = np.where(known, np.searchsorted(edges, x, side="left"), len(edges) + 1)
        events, total = np.bincount(idx, weights=y), np.bincount(idx).astype(np.float64)
        used = total > 0
        out[c] = woe_iv(events[used], (total - events)[used])[1] if used.sum() > 1 else 0.0
    return pd.Series(out, dtype=np.float64).reindex(X.columns)


def information_values(X: pd.DataFrame, y_binary, feature_factors: Mapping[str, str], *,
                       factor_scores: pd.DataFrame | None = None, binning: str = "quantile",
                       max_n_prebins: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Information value of every feature and of every factor.

    ``binning``: ``quantile`` (:func:`quantile_iv`, 20 bins) or ``optimal``
    (optbinning's optimal bins, at most ``max_n_prebins`` pre-bins a column).
    A factor's IV is that of its ``factor_scores`` column (the model's summed
    contribution of the factor's features, binned the same way) when given,
    else the largest IV among its features. Returns ``(per_feature, per_factor)``,
    strongest first.
    """
    if binning not in ("quantile", "optimal"):
        raise ValueError(f"binning must be 'quantile' or 'optimal'; got {binning!r}")
    y = np.asarray(y_binary).astype(np.int64)

    def iv_of(frame: pd.DataFrame) -> pd.Series:
        return optimal_iv(frame, y, max_n_prebins=max_n_prebins) if binning == "optimal" else quantile_iv(frame, y)

    feat = iv_of(X)
    feat = pd.DataFrame({"feature": feat.index, "factor": feat.index.map(dict(feature_factors)),
                         "iv": feat.to_numpy()}).sort_values("iv", ascending=False, kind="stable")
    best = feat.groupby("factor").agg(iv_best_feature=("iv", "max"), best_feature=("feature", "first"),
                                      n_features=("feature", "size"))
    if factor_scores is not None and len(factor_scores.columns):
        best["iv"] = iv_of(factor_scores).reindex(best.index)
    else:
        best["iv"] = best["iv_best_feature"]
    per_factor = best.reset_index().sort_values("iv", ascending=False, kind="stable")
    return feat.reset_index(drop=True), per_factor[["factor", "iv", "iv_best_feature", "best_feature",
                                                    "n_features"]].reset_index(drop=True)


@contextlib.contextmanager
def quiet_optbinning() -> Iterator[None]:
    """optbinning 1.0 trips pandas 3's deprecation warnings on its own frames; they are not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"optbinning\.")
        yield


def categorical_columns(X: pd.DataFrame) -> list[str]:
    """Columns optbinning bins as categories: every non-numeric one (pandas category, strings)."""
    return [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c].dtype)
            or isinstance(X[c].dtype, pd.CategoricalDtype)]


def for_binning(X: pd.DataFrame) -> pd.DataFrame:
    """Numbers as float64, categories as object (optbinning's expectation)."""
    out = X.copy()
    cats = set(categorical_columns(X))
    for c in out.columns:
        out[c] = out[c].astype(object) if c in cats else out[c].astype("float64")
    return out


def optimal_iv(X: pd.DataFrame, y_binary: np.ndarray, *, max_n_prebins: int = 20) -> pd.Series:
    """Information value of every column of ``X`` on optbinning's optimal bins (index: column name).

    ``max_n_prebins`` bounds optbinning's pre-bins per column: the solver's time grows with them, and
    an information value for a report moves little between 10 and 20 pre-bins.
    """
    from optbinning import BinningProcess  # lazy: see fit_scorecard

    empty = [c for c in X.columns if X[c].isna().all()]  # no value to bin (e.g. past causes without a cause column)
    Xb = X.drop(columns=empty)
    cats = categorical_columns(Xb)
    # pre-bins down to 0.1% of rows: a rare flag (fraud, under 1% of accounts) is otherwise one bin, IV 0
    process = BinningProcess(list(Xb.columns), categorical_variables=cats or None, min_prebin_size=0.001,
                             max_n_prebins=int(max_n_prebins))
    with quiet_optbinning():
        process.fit(for_binning(Xb), np.asarray(y_binary).astype(np.int64))
        summary = process.summary()
    iv = pd.Series(summary["iv"].astype(float).to_numpy(), index=summary["name"].astype(str).to_numpy())
    return pd.concat([iv, pd.Series(0.0, index=empty)]).reindex(X.columns)

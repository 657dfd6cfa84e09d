"""Panel -> snapshots: one row per (borrower, month t), features tagged by factor.

Features read months ``<= t`` only (``riskml.features.windows``, on the month grids of
``riskml.features.grid``); labels read months ``t+1 .. t+H`` only (``riskml.features.labels``).
Everything is vectorised over borrowers; borrowers are processed in chunks so
that memory stays bounded by the output, not by the intermediate grids.

Example (12 months, 6 of history before t and 3 after: t runs over months 5..8):
    >>> from riskml.simulate import SimConfig, simulate
    >>> panel = simulate(SimConfig(n_borrowers=50, n_months=12)).panel
    >>> snaps = build_snapshots(panel, target="adverse_3m")
    >>> snaps.X.shape[1], snaps.feature_factors["days_past_due"], sorted(set(snaps.keys["month"]))
    (75, 'overdue', [5, 6, 7, 8])
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from riskml.features import at_month, grid as _grid
from riskml.exceptions import ConfigError, whole_number
from riskml.factors import CAUSES
from riskml.features.labels import check_horizon, eligible_codes, get_target, make_labels
from riskml.schema import KEYS, PANEL, SIGNAL_PREFIX, STATUSES, require_columns
from riskml.features.block import Block
from riskml.features.windows import DEFAULT_WINDOWS, FeatureSpec, check_windows, compute, feature_specs

__all__ = ["Snapshots", "build_snapshots", "iter_snapshots", "build_features"]

CHUNK_BORROWERS = 8_192
#: Borrowers per chunk of :func:`build_features` (one snapshot row each): its grids then stay in the
#: cache (a 21k-borrower bucket: 38-43 ms at 4,096 against 53-62 ms at 8,192, same values).
PREDICT_CHUNK_BORROWERS = 4_096


@dataclass
class Snapshots:
    """Snapshot rows: keys, float32 features, labels and the factor of each feature.

    Attributes:
        keys: ``borrower_id``, ``month`` (the snapshot month t), ``status`` (at t).
        X: float32 features only; NaN where a window has no data.
        y: int8 labels (see ``riskml.features.labels``), ``None`` for prediction input.
        cause: factor id of the first change in t+1..t+H (NA if none), or ``None``.
        feature_factors: feature -> factor id (catalogue ids or ``other``).
        feature_directions: feature -> +1/-1/0 (monotone constraints).
    """

    keys: pd.DataFrame
    X: pd.DataFrame
    y: np.ndarray | None
    cause: pd.Series | None
    feature_factors: dict[str, str]
    feature_directions: dict[str, int]

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class _Plan:
    """Everything about a snapshot build except the feature values."""

    layout: _grid.Layout
    values: dict[str, np.ndarray]
    status: np.ndarray            # (n_rows, n) int8 status grid
    cause: np.ndarray | None      # (n_rows, n) int8 cause grid
    pos: np.ndarray               # grid rows of the snapshot months
    take: np.ndarray              # (n, len(pos)) bool: which (borrower, t) are rows
    offsets: np.ndarray           # (n + 1,) first output row of each borrower
    keys: pd.DataFrame
    y: np.ndarray | None
    cause_labels: pd.Series | None
    specs: list[FeatureSpec]
    dense: frozenset[str] = frozenset()   # columns whose grids are NaN in the pad rows only


def _grids(panel: pd.DataFrame, layout: _grid.Layout, source: str):
    values = _grid.behaviour_arrays(panel, source)
    st = _grid.status_codes(panel, source)
    cc = _grid.cause_codes(panel, source)
    n = layout.n_borrowers
    status = layout.grid(st, 0, n, fill=-1, dtype=np.int8)
    cause = None if cc is None else layout.grid(cc, 0, n, fill=-1, dtype=np.int8)
    return values, status, cause


def _finish(layout, values, status, cause, pos, take, months, y, why, specs) -> _Plan:
    counts = take.sum(axis=1)
    offsets = np.r_[0, np.cumsum(counts)]
    st = status[pos].T[take]
    keys = pd.DataFrame({
        "borrower_id": np.repeat(layout.ids, counts),
        "month": np.broadcast_to(months, take.shape)[take].astype(np.int32),
        "status": pd.Categorical.from_codes(np.where(st >= 0, st, -1), categories=list(STATUSES)),
    })
    cause_labels = None
    if why is not None:
        cause_labels = pd.Series(pd.Categorical.from_codes(why.T[take], categories=list(CAUSES)), name="cause")
    return _Plan(layout, values, status, cause, pos, take, offsets, keys,
                 None if y is None else y.T[take], cause_labels, specs)


def _with_signals(panel: pd.DataFrame, signals: dict | None) -> pd.DataFrame:
    """``panel`` with every own signal of ``signals`` it lacks as a missing column (a file in riskml's names
    scored by a model trained in a lender's schema: those features read as missing)."""
    lacking = [SIGNAL_PREFIX + c for c in signals or {} if SIGNAL_PREFIX + c not in panel.columns]
    return panel.assign(**{c: np.float32(np.nan) for c in lacking}) if lacking else panel


def _plan_snapshots(panel, target, horizon, min_history, every, windows, signals=None) -> _Plan:
    source = "build_snapshots"
    require_columns(panel, KEYS if signals is not None else PANEL, source=source)
    panel = _with_signals(panel, signals)
    tgt = get_target(target)
    h = tgt.horizon if horizon is None else check_horizon(horizon)
    min_history, every = whole_number("min_history", min_history, 1), whole_number("every", every, 1)
    specs = feature_specs(windows, signals)
    pad = max(check_windows(windows))
    layout = _grid.left_layout(panel, pad=pad, source=source)
    values, status, cause = _grids(panel, layout, source)
    n_months = layout.n_rows - pad
    # snapshot months on the calendar (min_history - 1, then every `every` months), whatever month the panel
    # starts at: a part of a book's later accounts starts late and gets the whole panel's months, or none
    month0 = layout.month_of_row0 or 0
    t = np.arange(min_history - 1, month0 + n_months - h, every)
    if len(t) == 0:
        raise ConfigError("min_history", min_history, f"at most {n_months - h} for a panel of {n_months} months "
                          f"and horizon {h} (no month t has min_history months before it and {h} after)")
    pos = pad + t[t >= month0] - month0
    y, why = make_labels(status, cause, pos, target=tgt, horizon=h)
    take = np.isin(status[pos], eligible_codes(tgt)) & (y >= 0)
    # a snapshot needs min_history months of the account's own history: in a book that opens accounts every
    # month, month t is a young account's first months
    take = (take & (layout.grid(values[_grid.AGE], 0, layout.n_borrowers)[pos] >= min_history - 1)).T
    months = pos - pad + layout.month_of_row0
    plan = _finish(layout, values, status, cause, pos, take, months, y, why if cause is not None else None, specs)
    plan.dense = _dense(layout, values)
    return plan


def _dense(layout: _grid.Layout, values: dict[str, np.ndarray]) -> frozenset[str]:
    """Columns whose grids are NaN in the pad rows only (a regular grid and no missing value)."""
    if layout.months is None:
        return frozenset()
    return frozenset(c for c, v in values.items() if v.dtype.kind != "f" or not np.isnan(v).any())


def _fill(plan: _Plan, b0: int, b1: int, out: np.ndarray) -> None:
    """Compute every feature for borrowers ``b0:b1`` into ``out`` (their output rows)."""
    if len(plan.pos) == 0:  # a panel of accounts too young for any snapshot month: no rows
        return
    lay = plan.layout
    block = Block(lambda c: lay.grid(plan.values[c], b0, b1), plan.status[:, b0:b1],
                  None if plan.cause is None else plan.cause[:, b0:b1], plan.pos, plan.dense, lay.pad)
    # flat positions in a (len(pos), b1 - b0) feature array of the output rows, borrower-major
    b, i = np.nonzero(plan.take[b0:b1])
    idx = i * (b1 - b0) + b
    for j, spec in enumerate(plan.specs):
        np.take(compute(spec, block).ravel(), idx, out=out[:, j], mode="clip")  # clip: unbuffered


def _snapshots(plan: _Plan, X: np.ndarray, rows: slice) -> Snapshots:
    names = [s.name for s in plan.specs]
    keys = plan.keys.iloc[rows].reset_index(drop=True)
    cause = None if plan.cause_labels is None else plan.cause_labels.iloc[rows].reset_index(drop=True)
    return Snapshots(keys=keys, X=pd.DataFrame(X, columns=names, copy=False),
                     y=None if plan.y is None else plan.y[rows],
                     cause=cause, feature_factors={s.name: s.factor for s in plan.specs},
                     feature_directions={s.name: s.direction for s in plan.specs})


def _empty_features(n_rows: int, n_cols: int) -> np.ndarray:
    """An uninitialised ``(n_rows, n_cols)`` float32 array in column order.

    Large outputs are mapped with ``MAP_POPULATE`` (all pages faulted in by one
    call): numpy's own large arrays ask for transparent huge pages, and on a
    busy machine faulting those in one by one (with compaction) cost more
    system time than computing the features (benchmarks/bench_features.py).
    """
    nbytes = n_rows * n_cols * 4
    flags = getattr(mmap, "MAP_POPULATE", 0)
    if nbytes < 1 << 26 or not flags:
        return np.empty((n_rows, n_cols), dtype=np.float32, order="F")
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flags)
    return np.frombuffer(buf, dtype=np.float32).reshape((n_rows, n_cols), order="F")


def _build(plan: _Plan, chunk: int) -> Snapshots:
    n = plan.layout.n_borrowers
    X = _empty_features(int(plan.offsets[-1]), len(plan.specs))
    for b0 in range(0, n, chunk):
        b1 = min(b0 + chunk, n)
        _fill(plan, b0, b1, X[plan.offsets[b0]:plan.offsets[b1]])
    return _snapshots(plan, X, slice(None))


def build_snapshots(panel: pd.DataFrame, *, target: str = "status_3m", horizon: int | None = None,
                    min_history: int = 6, every: int = 1, windows: tuple[int, ...] = DEFAULT_WINDOWS,
                    chunk_borrowers: int = CHUNK_BORROWERS, signals: dict | None = None) -> Snapshots:
    """Snapshots of a training panel: eligible (borrower, t) rows, features and labels.

    Args:
        panel: a panel per ``schema.PANEL`` (a sorted regular grid is fastest).
        target: a key of ``TARGETS``; decides which accounts are eligible at t.
        horizon: months ahead ``H`` (default: the target's).
        min_history: months of history a snapshot needs (months on book at t >= min_history - 1).
        every: take a snapshot every ``every`` months.
        windows: trailing windows in months (short, mid, long).
        chunk_borrowers: borrowers per chunk (bounds the intermediate memory).
        signals: ``None``: a panel in riskml's contract, every column required. A dict (may be empty): a
            lender's panel, whose behaviour columns are any subset (those it lacks read as missing; the
            caller leaves their features out), and its own columns (``schema.SIGNAL_PREFIX`` + name) ->
            factor, direction, rectified, with their generic plan (``windows.signal_specs``).

    Returns:
        :class:`Snapshots` sorted by borrower then month; t runs from
        ``min_history - 1`` to ``n_months - 1 - H``.
    """
    plan = _plan_snapshots(panel, target, horizon, min_history, every, windows, signals)
    return _build(plan, whole_number("chunk_borrowers", chunk_borrowers, 1))


def iter_snapshots(panel: pd.DataFrame, *, target: str = "status_3m", horizon: int | None = None,
                   min_history: int = 6, every: int = 1, windows: tuple[int, ...] = DEFAULT_WINDOWS,
                   chunk_borrowers: int = CHUNK_BORROWERS) -> Iterator[Snapshots]:
    """Like :func:`build_snapshots`, one :class:`Snapshots` per chunk of borrowers."""
    plan = _plan_snapshots(panel, target, horizon, min_history, every, windows)
    n, chunk = plan.layout.n_borrowers, whole_number("chunk_borrowers", chunk_borrowers, 1)
    for b0 in range(0, n, chunk):
        b1 = min(b0 + chunk, n)
        r0, r1 = int(plan.offsets[b0]), int(plan.offsets[b1])
        X = np.empty((r1 - r0, len(plan.specs)), dtype=np.float32, order="F")
        _fill(plan, b0, b1, X)
        yield _snapshots(plan, X, slice(r0, r1))


def build_features(panel: pd.DataFrame, *, as_of: int | None = None, windows: tuple[int, ...] = DEFAULT_WINDOWS,
                   engine: str = "compiled", chunk_borrowers: int = PREDICT_CHUNK_BORROWERS,
                   signals: dict | None = None) -> Snapshots:
    """Features of each borrower at its last month, or at month ``as_of`` (prediction input).

    Histories may be ragged or short: each is right-aligned on its anchor month
    and missing months are NaN, so a borrower's features equal its
    :func:`build_snapshots` row at the same month. Rows after ``as_of`` are
    ignored; borrowers with no month ``<= as_of`` get no row. ``y`` and
    ``cause`` are ``None``; without a ``cause`` column the ``past_cause_*``
    features are NaN.

    ``engine="compiled"`` computes every feature in one compiled pass over each
    borrower's rows (:mod:`riskml.features.at_month`); ``"grids"`` computes them
    on month grids as training does, ``chunk_borrowers`` at a time. The two give
    the same bits; the grids are the reference the compiled pass is tested against.
    """
    source = "build_features"
    if engine not in ("compiled", "grids"):
        raise ConfigError("engine", engine, "'compiled' or 'grids'")
    require_columns(panel, KEYS if signals is not None else PANEL, source=source)
    if as_of is not None:
        as_of = whole_number("as_of", as_of, 0)
    specs = feature_specs(windows, signals)
    if signals:  # the compiled pass knows the contract's columns only; a lender's own are read on grids
        engine, panel = "grids", _with_signals(panel, signals)
    pad = max(check_windows(windows))
    layout = _grid.regular_layout(panel, pad=pad, source=source)
    if layout is not None and (as_of is None or as_of < layout.months):
        # a sorted regular panel: every borrower's anchor is the same grid row; later rows are never read
        anchor = layout.months - 1 if as_of is None else as_of
        layout.anchor = np.full(layout.n_borrowers, anchor, dtype=np.int64)
        row = pad + anchor
    else:
        layout = _grid.right_layout(panel, pad=pad, as_of=as_of, source=source)
        row = layout.n_rows - 1
    take = np.ones((layout.n_borrowers, 1), dtype=bool)
    if engine == "grids":
        values, status, cause = _grids(panel, layout, source)
        plan = _finish(layout, values, status, cause, np.array([row]), take, layout.anchor[:, None], None, None,
                       specs)
        plan.dense = _dense(layout, values)
        return _build(plan, whole_number("chunk_borrowers", chunk_borrowers, 1))
    values = _grid.behaviour_arrays(panel, source)
    st, cc = _grid.status_codes(panel, source), _grid.cause_codes(panel, source)
    plan = _finish(layout, values, _status_at(layout, st, row)[None, :], None, np.array([0]), take,
                   layout.anchor[:, None], None, None, specs)
    return _snapshots(plan, at_month.features_at(layout, values, st, cc, row, specs), slice(None))


def _status_at(layout: _grid.Layout, st: np.ndarray, row: int) -> np.ndarray:
    """Each borrower's status code at grid row ``row`` (-1: no month there), from panel-order codes."""
    if layout.months is not None:
        return st.reshape(-1, layout.months)[:, row - layout.pad]
    last = layout.starts[1:] - 1  # a borrower's entries are sorted by month: its latest is last
    return np.where(layout.grid_rows[last] == row, st[layout.rows[last]], -1).astype(np.int8)

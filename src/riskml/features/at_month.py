"""Every snapshot feature at one month per borrower, in one compiled pass over each borrower's rows.

Prediction needs the features at one snapshot month only (each borrower's
last month, or ``as_of``). :mod:`riskml.features.windows` computes them on
month grids, a whole-row numpy operation per feature and window offset, which
is the right shape for training's many snapshots per borrower; for one row per
borrower it spends most of its time building grids. This module computes the
same values in one compiled loop over borrowers (on every core): each feature
reads the borrower's rows of months ``<= t`` straight from the panel's
columns, with the same float32 operations in the same order, so its values are
*bit for bit* those of ``windows.compute`` (``tests/test_features.py`` checks
every kind, ragged, shuffled and missing months, NaN cells, ``as_of`` and
other windows, against the numpy implementation).

A feature kind added to ``windows`` must be added here too; :func:`program`
raises on a kind it does not know, so the two cannot drift apart silently.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from riskml.factors import CAUSES
from riskml import platform as acceptance
from riskml.features.grid import AGE, Layout
from riskml.features.windows import NEVER, FeatureSpec
from riskml.schema import BEHAVIOUR, STATUS_CODE

__all__ = ["features_at"]

_KINDS = ("lvl", "mean", "std", "max", "min", "chg", "dd", "ratio", "util", "cnt", "low", "since", "gap",
          "past_line", "st_months", "st_entries", "st_since", "st_code", "st_run", "cause_months")
_K = {k: i for i, k in enumerate(_KINDS)}
_COLUMNS = (*(c.name for c in BEHAVIOUR), AGE)
_C = {c: i for i, c in enumerate(_COLUMNS)}
_GRADE = tuple(_C[c] for c in ("days_past_due", "other_lenders", "debt_to_income", "external_score",
                                "policy_index", "credit_limit", "balance"))
_NORMAL, _CLOSED = STATUS_CODE["normal"], STATUS_CODE["closed"]
_POLICY = CAUSES.index("policy_tightening")
#: borrowers per unit of work of the compiled loop (one scratch buffer each)
_UNIT = 1024


def program(specs: list[FeatureSpec]) -> tuple[np.ndarray, ...]:
    """The feature list as arrays the kernel reads: kind, column, window, threshold, code."""
    kind, col, win = (np.zeros(len(specs), dtype=np.int64) for _ in range(3))
    thr = np.zeros(len(specs), dtype=np.float32)
    code = np.zeros(len(specs), dtype=np.int64)
    for j, s in enumerate(specs):
        if s.kind not in _K:
            raise AssertionError(f"feature kind {s.kind!r} of {s.name!r} has no compiled form in at_month")
        kind[j], win[j] = _K[s.kind], s.window
        col[j] = _C.get(s.column, -1)
        if s.kind in ("cnt", "low", "since"):
            thr[j] = np.float32(s.arg)  # float32, as numpy compares a float32 grid with a Python float
        elif s.kind in ("st_months", "st_entries"):
            code[j] = STATUS_CODE[s.arg]
        elif s.kind == "cause_months":
            code[j] = CAUSES.index(s.arg)
    return kind, col, win, thr, code


def features_at(layout: Layout, values: dict[str, np.ndarray], status: np.ndarray, cause: np.ndarray | None,
                row: int, specs: list[FeatureSpec]) -> np.ndarray:
    """The ``(n_borrowers, len(specs))`` float32 features (row-ordered) at grid row ``row``.

    ``values`` are the panel's behaviour columns and ``status`` / ``cause``
    their int8 codes, in panel order; ``layout`` says where each row sits on
    the borrower's month grid (a regular reshape or scatter indices) and
    ``row`` is the snapshot's grid row, the same for every borrower.
    """
    cols = tuple(_readonly(values[c]) for c in _COLUMNS)
    n = layout.n_borrowers
    out = np.empty((n, len(specs)), dtype=np.float32)  # row-ordered: each borrower writes one row
    if layout.months is not None:
        rows = grid_rows = np.zeros(0, dtype=np.int64)
        starts = np.zeros(n + 1, dtype=np.int64)
        months = layout.months
    else:
        rows, grid_rows = layout.rows.astype(np.int64), layout.grid_rows.astype(np.int64)
        starts, months = layout.starts.astype(np.int64), 0
    has_cause = cause is not None
    cause = np.zeros(0, dtype=np.int8) if cause is None else np.asarray(cause, dtype=np.int8)
    _kernel(cols, np.asarray(status, dtype=np.int8), cause, has_cause, rows, grid_rows, starts, months,
            layout.pad, row, *program(specs), out)
    return out


def _readonly(v: np.ndarray) -> np.ndarray:
    """A read-only float32 view (a copy only when ``v`` is not float32): one array type for the tuple."""
    out = np.ascontiguousarray(v, dtype=np.float32).view()
    out.flags.writeable = False
    return out


@nb.njit(inline="always")
def _fmax(a, b):  # pragma: no cover - numba; np.fmax: NaN only when both are
    if np.isnan(a):
        return b
    if np.isnan(b):
        return a
    return a if a >= b else b


@nb.njit(inline="always")
def _fmin(a, b):  # pragma: no cover - numba
    if np.isnan(a):
        return b
    if np.isnan(b):
        return a
    return a if a <= b else b


@nb.njit(cache=True, error_model="numpy")
def _grade(g, r):  # pragma: no cover - numba; acceptance.grade, same operations in the same order
    dpd, ol = g[_GRADE[0], r], g[_GRADE[1], r]
    dti, es = g[_GRADE[2], r], g[_GRADE[3], r]
    return (dpd / np.float32(30) + np.float32(0.4) * ol + np.float32(2) * dti
            + (np.float32(620) - es) / np.float32(40))


@nb.njit(cache=True, error_model="numpy")  # numpy's float division: 0/0 is NaN, not an exception
def _line_gaps(g, pad, p, grades, gaps):  # pragma: no cover - numba
    """``acceptance.gap`` of ``acceptance.review_grid`` at grid rows ``pad..p`` (NaN before ``pad``)."""
    for r in range(pad):
        gaps[r] = np.nan
    for r in range(pad, p + 1):
        grades[r] = _grade(g, r)
    for r in range(pad, p + 1):
        total, count = np.float32(0), np.float32(0)
        for k in range(acceptance.MONTHS):
            if r - k < pad:
                break
            gr = grades[r - k]
            if not np.isnan(gr):
                total += gr
                count += np.float32(1)
        rv = total / count
        pol = g[_GRADE[4], r]
        d = pol - np.float32(acceptance.NEUTRAL)
        line = np.float32(acceptance.TOP) - np.float32(acceptance.REACH) * (d if d > 0 else np.float32(0))
        ok = pol > np.float32(acceptance.NEUTRAL) and rv <= np.float32(acceptance.TOP)
        gaps[r] = rv - line if ok else np.float32(np.nan)


@nb.njit(parallel=True, cache=True, nogil=True, error_model="numpy")  # nogil: the reader and writer threads go on meanwhile
def _kernel(cols, status, cause, has_cause, rows, grid_rows, starts, months, pad, p,
            kind, col, win, thr, code, out):  # pragma: no cover - numba
    n, nf = out.shape
    nan = np.float32(np.nan)
    for u in nb.prange((n + _UNIT - 1) // _UNIT):
        idx = np.empty(p + 1, dtype=np.int64)       # grid row -> panel row of this borrower (-1: none)
        g = np.empty((len(cols), p + 1), dtype=np.float32)  # the borrower's month grid, NaN where no row
        st = np.empty(p + 1, dtype=np.int8)
        cs = np.empty(p + 1, dtype=np.int8)
        grades = np.empty(p + 1, dtype=np.float32)
        gaps = np.empty(p + 1, dtype=np.float32)
        for b in range(u * _UNIT, min(n, (u + 1) * _UNIT)):
            idx[:] = -1
            if months > 0:   # a sorted regular panel: grid row pad + m is panel row b * months + m
                for r in range(pad, p + 1):
                    idx[r] = b * months + r - pad
            else:
                for s in range(starts[b], starts[b + 1]):
                    if grid_rows[s] <= p:
                        idx[grid_rows[s]] = rows[s]
            for c in range(len(cols)):
                col_c = cols[c]
                for r in range(p + 1):
                    g[c, r] = np.nan if idx[r] < 0 else col_c[idx[r]]
            for r in range(p + 1):
                st[r] = -1 if idx[r] < 0 else status[idx[r]]
                cs[r] = -1 if idx[r] < 0 or not has_cause else cause[idx[r]]
            lines = False
            now = st[p]
            governed = now == _NORMAL or (now == _CLOSED and cs[p] == _POLICY)  # windows._governed
            for j in range(nf):
                k, c, w = kind[j], col[j], win[j]
                if k == 0:      # lvl
                    x = g[c, p]
                elif k <= 2:    # mean, std
                    total, cnt = np.float32(0), np.float32(0)
                    for o in range(w):
                        v = g[c, p - o]
                        z = np.float32(0) if np.isnan(v) else v
                        total = z if o == 0 else total + z
                        if not np.isnan(v):
                            cnt += np.float32(1)
                    mean = total / cnt   # 0/0: no data in the window (the NaN numpy's 0/0 gives)
                    if k == 1:
                        x = mean
                    else:
                        dev = np.float32(0)
                        for o in range(w):
                            d = g[c, p - o] - mean
                            sq = d * d
                            if np.isnan(sq):
                                sq = np.float32(0)
                            elif np.isinf(sq):
                                sq = np.float32(3.4028235e38)
                            dev += sq
                        x = np.sqrt(dev / cnt)
                elif k <= 4 or k == 6 or k == 7:   # max, min, dd, ratio
                    top = g[c, p]
                    for o in range(1, w):
                        v = g[c, p - o]
                        top = _fmin(top, v) if k == 4 else _fmax(top, v)
                    if k <= 4:
                        x = top
                    else:
                        now_v = g[c, p]
                        if k == 6:
                            x = now_v - top
                        else:
                            x = now_v / top if top > 0 else nan
                elif k == 5:    # chg
                    x = g[c, p] - g[c, p - w]
                elif k == 8:    # util
                    lim = g[_GRADE[5], p]
                    x = g[_GRADE[6], p] / lim if lim > 0 else nan
                elif k <= 10:   # cnt, low
                    m = 0
                    for r in range(max(p - w + 1, 0), p + 1):
                        v = g[c, r]
                        m += (v > thr[j]) if k == 9 else (v < thr[j])
                    x = np.float32(m)
                elif k == 11:   # since: months since the last value above the threshold (NEVER: never)
                    x = np.float32(NEVER)
                    for o in range(p + 1):
                        if g[c, p - o] > thr[j]:
                            x = np.float32(o)
                            break
                elif k <= 13:   # gap, past_line
                    if not lines:
                        _line_gaps(g, pad, p, grades, gaps)
                        lines = True
                    if not governed:
                        x = nan
                    elif k == 12:
                        x = gaps[p]
                    else:
                        run = 0
                        for r in range(p + 1):
                            run = run + 1 if gaps[r] > 0 else 0
                        x = np.float32(run)
                elif k == 14:   # st_months
                    m = 0
                    for r in range(max(p - w + 1, 0), p + 1):
                        m += st[r] == code[j]
                    x = np.float32(m)
                elif k == 15:   # st_entries: times the account entered the status (whole history)
                    m = 0
                    for r in range(p + 1):
                        m += st[r] == code[j] and (r == 0 or st[r - 1] != code[j])
                    x = np.float32(m)
                elif k == 16:   # st_since: months since the last month not normal (NaN: never)
                    x = nan
                    for o in range(p + 1):
                        if st[p - o] > 0:
                            x = np.float32(o)
                            break
                elif k == 17:   # st_code
                    x = np.float32(now) if now >= 0 else nan
                elif k == 18:   # st_run: months in the current status
                    run = 0
                    for r in range(p + 1):
                        if st[r] < 0:
                            run = 0
                        elif r > 0 and st[r] == st[r - 1]:
                            run += 1
                        else:
                            run = 1
                    x = np.float32(run) if now >= 0 else nan
                else:           # cause_months
                    if not has_cause:
                        x = nan
                    else:
                        m = 0
                        for r in range(max(p - w + 1, 0), p + 1):
                            m += cs[r] == code[j]
                        x = np.float32(m)
                out[b, j] = x

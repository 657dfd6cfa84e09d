"""The snapshot features: what each one is, its factor, and how it is computed.

Every feature is a :class:`FeatureSpec`: a base column, a kind, a trailing
window and the factor it is tagged with (``factors.factor_of_column`` of the
base column; decision history by cause carries that cause). Kinds:

==============  =====================================================  =========
kind            value at snapshot month t (window w = months t-w+1..t)  direction
==============  =====================================================  =========
lvl             x_t                                                     signal's
mean/max/min    mean / max / min over the window (NaN-aware)            signal's
chg             x_t - x_{t-w}                                           signal's
dd              x_t - max over the window (drop from the recent peak)   signal's
std             standard deviation over the window (volatility)         0
cnt             months in the window with x > threshold (event months)  signal's
low             months in the window with x < threshold (e.g. low score) opposite
since           months since the last x > threshold (NEVER: never)     -signal's
ratio           x_t / max over the window (limit change ratio)          0
util            balance_t / credit_limit_t                              0
st_months       months in the window with that status                   +1
st_entries      times the account entered that status (whole history)   +1
st_since        months since the last month not normal (NaN: never)     0
st_code / st_run  status at t (0/1/2) / months in the current status    0
cause_months    months in the window whose ``cause`` was that factor    +1
gap             how far past the platform's acceptance line the account  +1
                sits at t (``acceptance.gap``: grade points; NaN when
                the platform is not tightening, the account is beyond
                the normal line, which the cause rules act on, or it is
                down for a cause other than the policy)
past_line       month-end reviews in a row up to t past the line (gap > 0) +1
==============  =====================================================  =========

Everything reads grid rows ``<= t`` only (see ``riskml.features.grid``), which is what
makes the snapshots leak-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

import pandas as pd

from riskml.exceptions import ConfigError
from riskml import platform as acceptance
from riskml.features.block import Block
from riskml.factors import CAUSES, OTHER, Signal, factor_of_column, get as get_factor, signal_of_column
from riskml.schema import SIGNAL_PREFIX, STATUS_CODE

#: The trailing windows (months) of the default feature set: short, mid, long.
DEFAULT_WINDOWS: tuple[int, ...] = (3, 6, 12)

# (column, kind, window role s/m/l or None, threshold): a few features per
# behaviour column, chosen per column; about 60 in all with the history below.
_PLAN: tuple[tuple, ...] = (
    ("days_past_due", "lvl"), ("days_past_due", "max", "l"), ("days_past_due", "cnt", "s", 0.0),
    ("days_past_due", "cnt", "l", 0.0), ("days_past_due", "since", None, 0.0), ("days_past_due", "max", "s"),
    ("overdue_amount", "lvl"), ("overdue_amount", "max", "l"), ("overdue_amount", "chg", "s"),
    ("other_lenders", "lvl"), ("other_lenders", "chg", "m"), ("other_lenders", "max", "l"),
    ("recent_applications", "lvl"), ("recent_applications", "mean", "s"), ("recent_applications", "mean", "l"),
    ("debt_to_income", "lvl"), ("debt_to_income", "mean", "m"), ("debt_to_income", "chg", "m"),
    ("invest_share", "lvl"), ("invest_share", "mean", "s"), ("invest_share", "max", "l"),
    ("invest_share", "cnt", "s", 0.2), ("invest_share", "cnt", "l", 0.2),
    ("rapid_draws", "lvl"), ("rapid_draws", "mean", "s"), ("rapid_draws", "max", "l"), ("rapid_draws", "cnt", "l", 1.0),
    ("rapid_draws", "cnt", "s", 2.0),
    ("external_score", "lvl"), ("external_score", "min", "l"), ("external_score", "chg", "s"),
    ("external_score", "chg", "m"), ("external_score", "chg", "l"), ("external_score", "dd", "l"),
    ("external_score", "low", "m", 600.0),
    ("utility_on_time", "lvl"), ("utility_on_time", "mean", "m"),
    ("policy_index", "lvl"), ("policy_index", "chg", "s"), ("policy_index", "chg", "m"), ("policy_index", "chg", "l"),
    ("policy_index", "mean", "l"), ("policy_index", "gap"), ("policy_index", "past_line"),
    ("fraud_flag", "lvl"), ("fraud_flag", "cnt", "s", 0.0), ("fraud_flag", "cnt", "m", 0.0),
    ("fraud_flag", "cnt", "l", 0.0),
    ("maintenance", "lvl"), ("maintenance", "cnt", "s", 0.0),
    ("credit_limit", "lvl"), ("credit_limit", "ratio", "l"), ("balance", "util"), ("balance", "lvl"),
    ("balance", "chg", "s"), ("drawn", "mean", "s"), ("repaid", "mean", "s"),
    ("months_on_book", "lvl"),  # the account's age: a young account's windows are part empty
    ("income", "lvl"), ("income", "chg", "s"), ("income", "std", "m"), ("consumption", "mean", "s"),
    ("status", "st_months", "l", "suspended"), ("status", "st_entries", None, "suspended"),
    ("status", "st_entries", None, "closed"), ("status", "st_since"), ("status", "st_code"), ("status", "st_run"),
)
_STATUS_NAMES = {"st_months": "months_{arg}_{w}m", "st_entries": "past_{arg}", "st_since": "months_since_not_normal",
                 "st_code": "status_code", "st_run": "months_in_status"}
_PLURAL = {"suspended": "suspensions", "closed": "closures"}
_POLICY = CAUSES.index("policy_tightening")
#: months-since value of an event that never happened in the history
NEVER = 120.0

_SIGNED = ("lvl", "mean", "max", "min", "chg", "dd", "cnt", "gap", "past_line")


@dataclass(frozen=True)
class FeatureSpec:
    """One snapshot feature (see the module docstring for the kinds)."""

    name: str
    column: str
    kind: str
    window: int
    arg: float | str | None
    factor: str
    direction: int
    rectified: float | None = None  # the signal's value once its factor's advice is followed

    def rectify(self, x: np.ndarray) -> np.ndarray | None:
        """The what-if rule: this feature's values had the borrower followed its factor's advice.

        A level, mean, max or min of a signal with a rectified value moves to
        that value but never to a worse one (a score already above the target
        stays); a change for the worse becomes 0 (an improvement stays);
        counts of bad months, drops, volatility and past decisions for the
        cause become 0; months since the last bad month becomes ``NEVER``.
        ``None``: the user cannot change this feature (it stays as it is).
        """
        k, sig = self.kind, signal_of_column(self.column)
        if sig is None and self.column.startswith(SIGNAL_PREFIX):  # a lender's own signal: its schema's terms
            sig = Signal(self.column, self.direction, self.rectified)
        x = np.asarray(x, dtype=np.float32)
        if k in ("lvl", "mean", "max", "min"):
            if self.rectified is None:
                return None
            r = np.float32(self.rectified)
            return np.where(np.isnan(x), r, np.minimum(x, r) if sig.direction >= 0 else np.maximum(x, r))
        if k == "chg" and sig is not None:
            return np.minimum(x, 0) if sig.direction >= 0 else np.maximum(x, 0)
        if k in ("cnt", "low", "chg", "dd", "std", "cause_months"):
            return np.zeros_like(x)
        if k == "since":
            return np.full_like(x, NEVER)
        return None


def check_windows(windows: object) -> tuple[int, ...]:
    try:
        w = tuple(sorted({int(x) for x in windows}))  # type: ignore[union-attr]
        ok = len(w) > 0 and w[0] >= 1 and all(float(x) == int(x) for x in windows)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError("windows", windows, "a non-empty list of positive whole numbers of months, e.g. [3, 6, 12]")
    return w


def signal_specs(signals: Mapping[str, Mapping[str, Any]], role: Mapping[Any, int]) -> list[FeatureSpec]:
    """The generic plan of a lender's own columns (``signals``: name -> factor, direction, rectified, above):
    its level, its mean over the short window, its max over the long one and its change over the short one,
    and - where the schema gives a threshold (``above``: e.g. 0 for a repayment status, where any month past
    it is a bad month) - the months above it in the short and the long window; tagged with its factor, its
    direction as their monotone constraint and ``rectified`` as its what-if (a count of bad months then 0)."""
    out = []
    for name, sig in signals.items():
        col, d = SIGNAL_PREFIX + name, int(sig.get("direction", 0))
        rect, above = sig.get("rectified"), sig.get("above")
        plan = [("lvl", 0), ("mean", role["s"]), ("max", role["l"]), ("chg", role["s"])]
        if above is not None:
            plan += [("cnt", w) for w in dict.fromkeys((role["s"], role["l"]))]  # one window: one count
        for kind, win in plan:
            fname = col if kind == "lvl" else f"{col}_{kind}_{win}m"
            out.append(FeatureSpec(fname, col, kind, win, None if kind != "cnt" else float(above),
                                   str(sig["factor"]), d, None if rect is None or kind in ("chg", "cnt")
                                   else float(rect)))
    return out


def feature_specs(windows: tuple[int, ...] = DEFAULT_WINDOWS,
                  signals: Mapping[str, Mapping[str, Any]] | None = None) -> list[FeatureSpec]:
    """The feature list for trailing windows ``windows`` (short, mid, long roles), and the generic plan of a
    lender's own ``signals`` (its schema's ``factor:`` columns), if any."""
    w = check_windows(windows)
    role = {"s": w[0], "m": w[len(w) // 2] if len(w) > 2 else w[-1], "l": w[-1], None: 0}
    specs: dict[str, FeatureSpec] = {}
    for col, kind, *rest in _PLAN:
        win = role[rest[0] if rest else None]
        arg = rest[1] if len(rest) > 1 else None
        sig = signal_of_column(col)
        if col == "status":
            name = _STATUS_NAMES[kind].format(arg=_PLURAL.get(arg, arg) if kind == "st_entries" else arg, w=win)
            direction = 1 if kind in ("st_months", "st_entries") else 0
        else:
            name = {"lvl": col, "since": f"{col}_since", "util": "utilisation", "gap": "acceptance_gap",
                    "past_line": "reviews_past_acceptance_line"}.get(kind, f"{col}_{kind}_{win}m")
            direction = (sig.direction if sig else 0) if kind in _SIGNED else 0
            if kind == "low":
                direction = -sig.direction if sig else 0
            if kind == "since":  # the longer ago the last bad month, the lower the risk
                direction = -(sig.direction if sig else 0)
        specs.setdefault(name, FeatureSpec(name, col, kind, win, arg, factor_of_column(col) if col != "status"
                                           else OTHER, direction, sig.rectified if sig else None))
    for f in CAUSES:
        name = f"past_cause_{f}_{role['l']}m"
        specs[name] = FeatureSpec(name, "cause", "cause_months", role["l"], f, f, 1)
    return list(specs.values()) + signal_specs(signals or {}, role)


#: The behaviour columns the platform's acceptance line grades on (``platform.grade``), and its policy index.
_LINE = ("days_past_due", "other_lenders", "debt_to_income", "external_score", "policy_index")


def needs(spec: FeatureSpec) -> tuple[str, ...]:
    """The behaviour columns a feature reads: a panel lacking one of them has no such feature (it is left
    out, not filled with zeros). Status and cause history need no behaviour column."""
    if spec.kind == "util":
        return ("credit_limit", "balance")
    if spec.kind in ("gap", "past_line"):
        return _LINE
    if spec.column in ("status", "cause"):
        return ()
    return (spec.column,)


def available(specs: list[FeatureSpec], columns: set[str] | frozenset[str]) -> list[FeatureSpec]:
    """The features of ``specs`` whose behaviour columns are all among ``columns``."""
    return [s for s in specs if all(c in columns for c in needs(s))]


def rectify(X: pd.DataFrame, factor: str, specs: list[FeatureSpec]) -> pd.DataFrame:
    """The what-if: ``factor``'s features as they would be had the borrower followed its advice.

    Each feature of ``X`` tagged with ``factor`` takes its spec's
    :meth:`FeatureSpec.rectify` value; features the user cannot change, and
    every other factor's, are unchanged. ``specs`` are the feature specs the
    model was built with (``feature_specs(model windows)``). Returns a copy.
    """
    out = X.copy()
    for j, new in _rectified(out, list(X.columns), factor, specs):
        out[X.columns[j]] = new
    return out


def rectify_array(X: np.ndarray, names: list[str], factor: str, specs: list[FeatureSpec]) -> np.ndarray:
    """:func:`rectify` on a feature matrix whose columns are ``names`` (a copy, same dtype)."""
    out = np.array(X, copy=True)
    for j, new in _rectified(out, names, factor, specs):
        out[:, j] = new
    return out


def _rectified(X, names: list[str], factor: str, specs: list[FeatureSpec]):
    """(column, rectified float32 values) of every feature of ``factor`` that the user can change."""
    get_factor(factor)
    where = {n: j for j, n in enumerate(names)}
    for spec in specs:
        j = where.get(spec.name)
        if spec.factor != factor or j is None:
            continue
        col = X.iloc[:, j] if hasattr(X, "iloc") else X[:, j]
        new = spec.rectify(np.asarray(col, dtype=np.float32))
        if new is not None:
            yield j, new.astype(np.float32)


def compute(spec: FeatureSpec, b: Block) -> np.ndarray:
    """The ``(len(pos), n_borrowers)`` float32 values of one feature."""
    k, col, w = spec.kind, spec.column, spec.window
    with np.errstate(invalid="ignore", divide="ignore"):
        if k == "lvl":
            out = b.at(b.g(col))
        elif k in ("mean", "std"):
            n = b.n_valid(col, w)
            mean = b.wsum(b.zeros_nan(col), w) / n          # 0/0 -> NaN: no data in the window
            if k == "mean":
                out = mean
            else:
                x = b.g(col)
                dev = np.zeros_like(mean)
                for j in range(w):
                    dev += np.nan_to_num((b.at(x, j) - mean) ** 2)
                out = np.sqrt(dev / n)
        elif k in ("max", "min"):
            out = b.running(col, w, np.fmax if k == "max" else np.fmin)
        elif k == "chg":
            x = b.g(col)
            out = b.at(x) - b.at(x, w)
        elif k in ("dd", "ratio"):
            x, top = b.at(b.g(col)), b.running(col, w, np.fmax)
            out = x - top if k == "dd" else np.where(top > 0, x / top, np.nan)
        elif k == "util":
            lim = b.at(b.g("credit_limit"))
            out = np.where(lim > 0, b.at(b.g("balance")) / lim, np.nan)
        elif k == "cnt":
            out = b.window(("c", col, spec.arg), lambda: b.g(col) > spec.arg, w)
        elif k == "low":
            out = b.window(("lo", col, spec.arg), lambda: b.g(col) < spec.arg, w)
        elif k == "gap":
            out = np.where(_governed(b), b.at(_acceptance_gap(b)), np.nan)
        elif k == "past_line":
            run = b._cached(("pl",), lambda: _run_length(_acceptance_gap(b) > 0, int(b.pos[-1]) + 1))
            out = np.where(_governed(b), b.at(run), np.nan)
        elif k == "since":
            # "never" is a large finite value, not NaN, so the monotone constraint
            # covers it and a rectified borrower ("never late") cannot score worse
            out = np.nan_to_num(b.since(b.g(col) > spec.arg), nan=NEVER)
        else:
            out = _history(spec, b)
    return np.asarray(out, dtype=np.float32)


def _acceptance_gap(b: Block) -> np.ndarray:
    """The grid of ``acceptance.gap``: the platform's month-end review of each month against that month's line."""
    def build():
        real = slice(b.first_real, None)  # the pad rows before are NaN: no grade, no review, no gap
        g = acceptance.grade(days_past_due=b.g("days_past_due")[real], other_lenders=b.g("other_lenders")[real],
                             debt_to_income=b.g("debt_to_income")[real], external_score=b.g("external_score")[real])
        out = np.full(b.status.shape, np.nan, dtype=np.float32)
        out[real] = acceptance.gap(acceptance.review_grid(g), b.g("policy_index")[real])
        return out
    return b._cached(("gap",), build)


def _governed(b: Block) -> np.ndarray:
    """Snapshots the acceptance line governs: open accounts, and accounts closed by the policy itself.

    A line suspended or closed for another cause comes back on that cause's terms, not the line's.
    """
    now = b.at(b.status)
    policy = np.zeros_like(now, dtype=bool) if b.cause is None else b.at(b.cause) == _POLICY
    return (now == STATUS_CODE["normal"]) | ((now == STATUS_CODE["closed"]) & policy)


def _run_length(event: np.ndarray, rows: int) -> np.ndarray:
    """Per grid row, how many rows in a row up to it have ``event`` (0 where it has not)."""
    run = np.zeros(event.shape, dtype=np.float32)
    run[0] = event[0]
    for r in range(1, rows):  # a loop over months, vectorised over borrowers
        run[r] = np.where(event[r], run[r - 1] + 1, 0)
    return run


def _history(spec: FeatureSpec, b: Block) -> np.ndarray:
    """Status and cause history features."""
    k, s = spec.kind, b.status
    if k == "st_months":
        return b.window(("st", spec.arg), lambda: s == STATUS_CODE[spec.arg], spec.window)
    if k == "st_entries":
        code = STATUS_CODE[spec.arg]

        def entered():
            now = s == code
            out = now.copy()
            out[1:] &= ~now[:-1]
            return out
        return b.at(b.csum(("se", code), entered), -1)
    if k == "st_since":
        return b.since(s > 0)
    if k == "st_code":
        now = b.at(s)
        return np.where(now >= 0, now, np.nan)
    if k == "st_run":
        run = np.zeros(s.shape, dtype=np.int32)
        run[0] = s[0] >= 0
        for r in range(1, int(b.pos[-1]) + 1):  # loop over months, vectorised over borrowers
            run[r] = np.where(s[r] < 0, 0, np.where(s[r] == s[r - 1], run[r - 1] + 1, 1))
        return np.where(b.at(s) >= 0, b.at(run), np.nan)
    if k == "cause_months":
        if b.cause is None:
            return np.full((len(b.pos), s.shape[1]), np.nan, dtype=np.float32)
        code = CAUSES.index(spec.arg)
        return b.window(("cm", code), lambda: b.cause == code, spec.window)
    raise AssertionError(f"unknown feature kind {k!r}")

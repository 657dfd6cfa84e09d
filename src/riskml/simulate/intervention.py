"""The oracle under intervention: the true outcome had the borrower followed one factor's advice.

For a snapshot (borrower, month t) and an actionable factor, the borrower's
exact state at the end of month t is replayed (as the oracle does), then
months t+1..t+H are simulated ``n_paths`` times with the borrower following
the factor's advice from month t+1 on. Following is a change of behaviour,
not of features: in each month the borrower makes the choice the advice asks
for, which here means the month's draw behind that choice takes the value
that makes it (``behaviour`` draws every choice from a pre-drawn uniform).
What the platform then sees, and decides, follows from the simulator's own
rules, each at its own speed:

* ``overdue``: every due amount is paid on time, the arrears at once; the
  record of late months fades as it does (``late`` decays 0.85 a month).
* ``multi_lending``: no applications, no new lender, and one other loan paid
  off a month down to the catalogue's rectified number of lenders; the debt
  ratio falls with them, the application memory fades.
* ``abnormal_use``: no drawn money invested and no rapid draws from t+1; the
  platform's memory of both fades (``behaviour.MEMORY`` a month).
* ``score_decline``: every utility bill paid on time; the external score
  drifts up to the level behaviour sets at its usual pace (35% of the way a
  month), and other lenders or an income shock can still hold it down.

The engine is untouched: a line closed for fraud never reopens, a policy
closure waits for the line in force. Paths use the oracle's random streams,
so a snapshot with no advice to follow gets the plain oracle's futures draw
for draw, and :func:`follow_advice` compares the two path by path (common
random numbers: the standard error of the difference is small).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskml import factors
from riskml.exceptions import ConfigError, SchemaError
from riskml.factors import CAUSES
from riskml.simulate import behaviour as bh
from riskml.simulate.config import SimConfig
from riskml.simulate.oracle import Futures, _futures, replay_states
from riskml.simulate.population import State

#: the factors whose advice the borrower can follow, in catalogue order
ACTIONABLE: tuple[str, ...] = tuple(f for f in CAUSES if factors.CATALOGUE[f].actionable)
OD, ML, AB, SD = (CAUSES.index(f) for f in ("overdue", "multi_lending", "abnormal_use", "score_decline"))
#: the number of other lenders a borrower following the multi-lending advice pays down to (the catalogue's)
LENDERS_TARGET = factors.CATALOGUE["multi_lending"].signals[0].rectified
#: the utility draw that keeps bills on time whatever the month's cash stress (the habit plus
#: 0.35 (u - 0.5) - 0.2 stress, stress <= 2, must reach 1)
_UTIL_REACH = 1.0 + 0.2 * 2


def _factor_codes(factor: pd.Series | np.ndarray) -> np.ndarray:
    """Cause codes of the factors to follow (-1: none); an unknown or non-actionable factor is refused."""
    f = pd.Series(np.asarray(factor, dtype=object))
    none = f.isna().to_numpy() | (f.astype(str).to_numpy() == "")
    bad = np.flatnonzero(~none & ~f.isin(ACTIONABLE).to_numpy())
    if len(bad):
        raise ConfigError("factor", f.iloc[bad[0]], f"an actionable factor, one of {list(ACTIONABLE)}, or none "
                          f"(row {bad[0]}); the platform's causes have no advice to follow")
    codes = f.map({c: i for i, c in enumerate(CAUSES)}).to_numpy(dtype=np.float64, na_value=-1)
    return np.where(none, -1, codes).astype(np.int8)


def comply(s: State, U: np.ndarray) -> None:
    """Rewrite the month's draws of the paths whose borrower follows advice (``s.arrays["follow"]``)."""
    a = s.arrays
    follow = a["follow"]
    od, ml, ab, sd = (follow == c for c in (OD, ML, AB, SD))
    U[bh.U_PAY] = np.where(od, 0, U[bh.U_PAY])  # pays whatever is due (a due amount above 0 is paid)
    U[bh.U_APPS] = np.where(ml, 0, U[bh.U_APPS])  # no application
    U[bh.U_NEW_LENDER] = np.where(ml, 1, U[bh.U_NEW_LENDER])  # so no new lender
    U[bh.U_LEAVE] = np.where(ml & (a["lenders"] > LENDERS_TARGET), 0, U[bh.U_LEAVE])  # one loan paid off
    U[bh.U_INVEST] = np.where(ab, 1, U[bh.U_INVEST])  # no investing episode
    U[bh.U_INVEST_SHARE] = np.where(ab, 0, U[bh.U_INVEST_SHARE])  # nothing of the draw invested
    U[bh.U_RAPID] = np.where(ab, 0, U[bh.U_RAPID])  # no rapid draws
    U[bh.U_UTIL] = np.where(sd, 0.5 + (_UTIL_REACH - a["utility"]) / 0.35, U[bh.U_UTIL])  # bills on time


def _check(keys: pd.DataFrame) -> None:
    if "factor" not in keys.columns:
        raise SchemaError("intervention keys: missing column ['factor']; expected borrower_id, month and "
                          "factor (an actionable factor id, or none)")


def intervened_futures(cfg: SimConfig, keys: pd.DataFrame, *, horizon: int, n_paths: int, seed: int,
                       states: State | None = None) -> Futures:
    """The futures of each key's snapshot with its borrower following ``keys["factor"]``'s advice from t+1."""
    _check(keys)
    follow = _factor_codes(keys["factor"])
    states = (replay_states(cfg, keys) if states is None else states).take(np.arange(len(keys)))
    states.arrays["follow"] = follow
    return _futures(cfg, keys, horizon, n_paths, seed, states=states,
                    before_step=comply if (follow >= 0).any() else None)


def _summary(fut: Futures, follow: np.ndarray) -> dict[str, np.ndarray]:
    adverse, up = fut.worst > 0, fut.normal_any
    own = (fut.first == follow[:, None]) & (follow[:, None] >= 0)
    return {"p_adverse": adverse.mean(axis=1), "p_recovery": up.mean(axis=1), "p_own_cause": own.mean(axis=1)}


def follow_advice(cfg: SimConfig, keys: pd.DataFrame, *, horizon: int, n_paths: int = 200,
                  seed: int = 0) -> pd.DataFrame:
    """P(adverse) and P(recovery) over months t+1..t+H with and without following each key's advice.

    Args:
        cfg: the config the panel was generated with (``SimConfig.from_manifest``).
        keys: columns ``borrower_id``, ``month`` (t) and ``factor``: the actionable factor whose advice the
            borrower follows from t+1 (None or "": none, the plain oracle).
        horizon: H, months ahead (3 for P(adverse), 6 for P(recovery)).
        n_paths: futures simulated per snapshot, each once with and once without the advice (same draws).
        seed: seed of the oracle's random streams.

    Returns:
        One row per key, in order: borrower_id, month, factor, ``p_adverse`` (worst effective status not
        normal: the adverse label, for accounts normal at t) and ``p_recovery`` (normal again in some
        month: the recovery label, for suspended or closed accounts) under the advice, the same without
        it (``*_before``), ``se_*`` of each and of their difference (``se_d_*``, path by path), and
        ``p_own_cause`` / ``p_own_cause_before`` (``se_d_own_cause``): P(the first adverse decision has
        the factor's cause).

    Example:
        >>> cfg = SimConfig(n_borrowers=40, n_months=12, block_size=16, open_months=4)  # all open by month 3
        >>> keys = pd.DataFrame({"borrower_id": [3, 30], "month": [6, 8], "factor": ["overdue", None]})
        >>> out = follow_advice(cfg, keys, horizon=3, n_paths=20)
        >>> bool(out.loc[1, "p_adverse"] == out.loc[1, "p_adverse_before"])  # no advice: the plain oracle
        True
    """
    _check(keys)
    follow = _factor_codes(keys["factor"])
    states = replay_states(cfg, keys)
    after = intervened_futures(cfg, keys, horizon=horizon, n_paths=n_paths, seed=seed, states=states)
    plain = _futures(cfg, keys, horizon, n_paths, seed, states=states.take(np.arange(len(keys))))
    out = pd.DataFrame({"borrower_id": keys["borrower_id"].to_numpy(dtype=np.int64),
                        "month": keys["month"].to_numpy(dtype=np.int32),
                        "factor": pd.Series(np.asarray(keys["factor"], dtype=object)).where(follow >= 0, None)})
    a, b = _summary(after, follow), _summary(plain, follow)
    for name, d in (("adverse", (after.worst > 0).astype(np.int8) - (plain.worst > 0)),
                    ("recovery", after.normal_any.astype(np.int8) - plain.normal_any)):
        p, q = a[f"p_{name}"], b[f"p_{name}"]
        out[f"p_{name}"], out[f"p_{name}_before"] = p, q
        out[f"se_{name}"], out[f"se_{name}_before"] = np.sqrt(p * (1 - p) / n_paths), np.sqrt(q * (1 - q) / n_paths)
        out[f"se_d_{name}"] = d.std(axis=1) / np.sqrt(n_paths)
    out["p_own_cause"], out["p_own_cause_before"] = a["p_own_cause"], b["p_own_cause"]
    own = lambda fut: ((fut.first == follow[:, None]) & (follow[:, None] >= 0)).astype(np.int8)  # noqa: E731
    out["se_d_own_cause"] = (own(after) - own(plain)).std(axis=1) / np.sqrt(n_paths)
    return out


__all__ = ["ACTIONABLE", "comply", "follow_advice", "intervened_futures"]

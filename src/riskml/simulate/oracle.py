"""The oracle: the true probability of each outcome, given the full hidden state.

For a snapshot (borrower, month t) the oracle rebuilds the borrower's exact
state at the end of month t by replaying its seed block (only the blocks that
hold requested borrowers), then re-simulates months t+1..t+H ``n_paths``
times with independent random streams, with the very same :func:`step` the
generator uses. The share of paths whose worst status is normal / suspended /
closed is the Bayes-optimal prediction every model is measured against. The
label rule is the labels' own: a maintenance suspension counts as normal and
is never the first adverse decision (``platform.effective_status``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from riskml.exceptions import SchemaError
from riskml.factors import CAUSES
from riskml.platform import effective_status
from riskml.schema import STATUSES
from riskml.simulate.config import SimConfig
from riskml.simulate.engine import Env, step
from riskml.simulate.population import State
from riskml.simulate.book import start_months
from riskml.simulate.run import BlockDraws, block_ids, run_months

_PIECE = 1 << 17  # elements (snapshot x path) simulated at once
_ORACLE_TAG = 0x0AC1E  # keeps oracle streams apart from the generator's [seed, block]


def _check_keys(cfg: SimConfig, keys: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in ("borrower_id", "month") if c not in keys.columns]
    if missing:
        raise SchemaError(f"oracle keys: missing column(s) {missing}; expected borrower_id and month")
    bid = keys["borrower_id"].to_numpy(dtype=np.int64)
    month = keys["month"].to_numpy(dtype=np.int64)
    for name, v, hi in (("borrower_id", bid, cfg.n_borrowers), ("month", month, cfg.n_months)):
        bad = np.flatnonzero((v < 0) | (v >= hi))
        if len(bad):
            raise SchemaError(f"oracle keys: row {bad[0]} has {name} {v[bad[0]]}; expected 0..{hi - 1}")
    opened = start_months(cfg, bid)
    bad = np.flatnonzero(month < opened)
    if len(bad):
        raise SchemaError(f"oracle keys: row {bad[0]} has month {month[bad[0]]} for borrower {bid[bad[0]]}, which "
                          f"opened in month {opened[bad[0]]}; expected a month the account is open")
    return bid, month


def replay_states(cfg: SimConfig, keys: pd.DataFrame) -> State:
    """The exact hidden state at the end of month t for each (borrower_id, month) row of ``keys``."""
    bid, month = _check_keys(cfg, keys)
    block = bid // cfg.block_size
    blocks = np.unique(block)
    out_idx, out_states = [], []
    for i in range(0, len(blocks), cfg.chunk_blocks):
        group = [int(b) for b in blocks[i:i + cfg.chunk_blocks]]
        ids = np.concatenate([block_ids(cfg, b) for b in group])
        sel = np.flatnonzero(np.isin(block, group))
        pos = np.searchsorted(ids, bid[sel])
        # the generator's own month loop: each account from the month it opened, in calendar time
        for t, state, _, _ in run_months(cfg, group, until=int(month[sel].max())):
            now = month[sel] == t
            if now.any():
                out_idx.append(sel[now])
                out_states.append(state.take(pos[now]))
    order = np.argsort(np.concatenate(out_idx), kind="stable")
    return State.concat(out_states).take(order)


class Futures(NamedTuple):
    """Per (snapshot, path), shape (S, n_paths): the worst effective status, the cause of the first month
    not normal (-1: none) and whether the line was normal in any month (recovery, raw status)."""

    worst: np.ndarray
    first: np.ndarray
    normal_any: np.ndarray


def _futures(cfg: SimConfig, keys: pd.DataFrame, horizon: int, n_paths: int, seed: int, *,
             states: State | None = None,
             before_step: Callable[[State, np.ndarray], None] | None = None) -> Futures:
    """The futures of every (snapshot, path).

    ``states``: the snapshots' replayed states (default: :func:`replay_states` of ``keys``), possibly with
    extra arrays a ``before_step`` hook reads; ``before_step(state, U)`` may rewrite the month's draws
    before each step (``simulate.intervention``: a borrower following advice). Without a hook the
    futures are the plain oracle's, draw for draw.
    """
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer; got {horizon!r}")
    if not isinstance(n_paths, int) or n_paths < 2:
        raise ValueError(f"n_paths must be an integer >= 2; got {n_paths!r}")
    states = replay_states(cfg, keys) if states is None else states
    month = keys["month"].to_numpy(dtype=np.int64)
    env = Env.build(cfg, cfg.n_months + horizon)
    S = len(states)
    worst = np.empty((S, n_paths), dtype=np.int8)
    first = np.empty((S, n_paths), dtype=np.int8)
    normal_any = np.empty((S, n_paths), dtype=bool)
    per = max(1, _PIECE // n_paths)
    for k, lo in enumerate(range(0, S, per)):
        snap = np.repeat(np.arange(lo, min(lo + per, S)), n_paths)
        s = states.take(snap)
        m = month[snap]
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, seed, _ORACLE_TAG, k]))
        w = s.arrays["status"].copy() * 0
        f = np.full(len(s), -1, dtype=np.int8)
        up = np.zeros(len(s), dtype=bool)
        draws = BlockDraws([rng], [len(s)])
        for h in range(1, horizon + 1):
            U, Z = draws()
            if before_step is not None:
                before_step(s, U)
            s, rows = step(s, m + h, U, Z, cfg, env)
            # the label rule (platform.effective_status): a maintenance suspension is not adverse
            eff = effective_status(rows["status"], rows["cause"])
            w = np.maximum(w, eff)
            # the cause of the first month not normal, as labels.make_labels reads it
            f = np.where((f < 0) & (eff > 0), rows["cause"], f)
            up |= rows["status"] == 0  # recovery_6m's label reads the raw status
        n = len(snap) // n_paths
        worst[lo:lo + n], first[lo:lo + n], normal_any[lo:lo + n] = (
            w.reshape(-1, n_paths), f.reshape(-1, n_paths), up.reshape(-1, n_paths))
    return Futures(worst, first, normal_any)


def oracle(cfg: SimConfig, keys: pd.DataFrame, *, horizon: int, n_paths: int = 200,
           seed: int = 0) -> pd.DataFrame:
    """True probability of the worst status over months t+1..t+H for each snapshot.

    Args:
        cfg: the config the panel was generated with (``SimConfig.from_manifest``).
        keys: snapshots, columns ``borrower_id`` and ``month`` (t).
        horizon: H, months ahead.
        n_paths: futures simulated per snapshot.
        seed: seed of the oracle's own random streams.

    Returns:
        One row per key, in order: borrower_id, month, p_normal, p_suspended,
        p_closed and their Monte Carlo standard errors se_*.

    Example:
        >>> cfg = SimConfig(n_borrowers=40, n_months=12, block_size=16)
        >>> o = oracle(cfg, pd.DataFrame({"borrower_id": [3, 20], "month": [6, 8]}), horizon=3, n_paths=20)
        >>> bool(np.allclose(o[["p_normal", "p_suspended", "p_closed"]].sum(axis=1), 1.0))
        True
    """
    worst = _futures(cfg, keys, horizon, n_paths, seed).worst
    out = pd.DataFrame({"borrower_id": keys["borrower_id"].to_numpy(dtype=np.int64),
                        "month": keys["month"].to_numpy(dtype=np.int32)})
    for code, name in enumerate(STATUSES):
        p = (worst == code).mean(axis=1)
        out[f"p_{name}"] = p
    for name in STATUSES:
        p = out[f"p_{name}"].to_numpy()
        out[f"se_{name}"] = np.sqrt(p * (1 - p) / n_paths)
    return out


def oracle_cause(cfg: SimConfig, keys: pd.DataFrame, *, horizon: int, n_paths: int = 200,
                 seed: int = 0) -> pd.DataFrame:
    """True probability that the first adverse decision in t+1..t+H has each cause.

    Returns one row per key: borrower_id, month, ``p_none`` (no adverse
    decision) and ``p_<cause>`` for every documented cause.
    """
    first = _futures(cfg, keys, horizon, n_paths, seed).first
    out = pd.DataFrame({"borrower_id": keys["borrower_id"].to_numpy(dtype=np.int64),
                        "month": keys["month"].to_numpy(dtype=np.int32)})
    out["p_none"] = (first < 0).mean(axis=1)
    for code, c in enumerate(CAUSES):
        out[f"p_{c}"] = (first == code).mean(axis=1)
    return out


__all__ = ["oracle", "oracle_cause", "replay_states"]

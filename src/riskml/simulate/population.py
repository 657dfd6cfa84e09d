"""Hidden borrower types, their traits, and the state every month step updates.

The state of a block of borrowers is a struct of numpy arrays (:class:`State`):
static traits (drawn once from the borrower's hidden type, with noise so the
types overlap) and dynamic state (arrears, lenders, score history, status...).
It is everything the future depends on, which is what lets the oracle
re-simulate the future from any month.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from riskml import platform as acceptance
from riskml.schema import BORROWER_TYPES, TRUTH, cast

F32 = np.float32

# Type profiles: the centre of each trait per hidden type. Traits scatter
# around them (see draw_population), so a type is visible only through the
# behaviour it makes likely.
_PROFILE_KEYS = ("log_income", "spend", "draw", "pay", "apps", "invest", "shock", "fraud", "utility",
                 "score", "rapid", "repay")
PROFILES: dict[str, tuple[float, ...]] = {
    #              log_inc spend draw  pay    apps  invest shock  fraud   util  score rapid repay
    "steady":      (8.6, 0.55, 0.20, 0.995, 0.08, 0.010, 0.010, 0.0000, 0.95, 690, 0.25, 0.80),
    "stretched":   (8.3, 0.80, 0.60, 0.986, 0.75, 0.003, 0.010, 0.0000, 0.85, 665, 0.60, 0.30),
    "speculator":  (8.6, 0.60, 0.55, 0.995, 0.15, 0.120, 0.015, 0.0000, 0.90, 670, 1.40, 0.50),
    "fraudster":   (8.2, 0.70, 0.85, 0.997, 0.20, 0.020, 0.020, 0.1000, 0.90, 670, 0.50, 0.30),
    "shock_prone": (8.4, 0.68, 0.30, 0.995, 0.15, 0.008, 0.060, 0.0000, 0.90, 670, 0.35, 0.50),
}

#: Hidden traits written to the truth table (with borrower_type).
TRAITS: tuple[str, ...] = ("income_base", "spend", "draw", "pay", "apps", "invest", "shock", "fraud",
                           "utility", "score_base", "rapid", "repay", "loan_size")

#: Dynamic state arrays and their dtypes.
DYNAMIC: dict[str, type] = {
    "status": np.int8, "cause": np.int8, "strikes": np.int8, "sd_warn": np.int8, "clean": np.int16, "repair": np.int8,
    "shock_left": np.int8, "invest_on": np.bool_, "fraud_on": np.bool_, "dpd": np.int16,
    "lenders": np.int16, "base_limit": F32, "limit": F32, "balance": F32, "overdue": F32,
    "late": F32, "service": F32, "score": F32, "score_lag1": F32, "score_lag2": F32, "score_lag3": F32,
    # signal memories (decayed counts, see behaviour.MEMORY): what the escalation ladders read
    "inv_n": F32, "rapid_n": F32, "apps_n": F32, "low_n": F32, "flags": F32,
    # the platform's month-end review of its risk grade (riskml.platform): the review, how many
    # reviews in a row found the account past the line, and the grades of the months before this one that
    # the review averages (NaN before the history)
    "review": F32, "past_line": np.int8, **{f"grade_lag{k}": F32 for k in range(1, acceptance.MONTHS)},
}


class State:
    """Struct of equal-length numpy arrays: one element per simulated borrower (or path)."""

    __slots__ = ("arrays",)

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays["status"])

    def take(self, idx: np.ndarray) -> "State":
        return State({k: v[idx] for k, v in self.arrays.items()})

    def copy(self) -> "State":
        return State({k: v.copy() for k, v in self.arrays.items()})

    @staticmethod
    def concat(states: Iterable["State"]) -> "State":
        states = list(states)
        return State({k: np.concatenate([s.arrays[k] for s in states]) for k in states[0].arrays})


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def draw_population(rng: np.random.Generator, n: int, type_mix: tuple[float, ...]) -> State:
    """Draw ``n`` borrowers: hidden type, traits and the state at month 0.

    Args:
        rng: the block's population stream.
        n: borrowers in the block.
        type_mix: shares of :data:`~riskml.schema.BORROWER_TYPES`.

    Returns:
        The block's :class:`State`, every account normal at month 0.
    """
    btype = rng.choice(len(BORROWER_TYPES), size=n, p=np.asarray(type_mix)).astype(np.int8)
    prof = np.asarray([PROFILES[t] for t in BORROWER_TYPES])[btype].T
    c = dict(zip(_PROFILE_KEYS, prof))
    z = rng.standard_normal((12, n))
    u = rng.random((3, n))
    a: dict[str, np.ndarray] = {"btype": btype}
    a["income_base"] = np.exp(c["log_income"] + 0.35 * z[0])
    a["spend"] = c["spend"] * np.exp(0.15 * z[1])
    a["draw"] = _expit(_logit(c["draw"]) + 0.6 * z[2])
    a["pay"] = _expit(_logit(c["pay"]) + 0.9 * z[3])
    a["apps"] = c["apps"] * np.exp(0.5 * z[4])
    a["invest"] = _expit(_logit(c["invest"]) + 0.6 * z[5])
    a["shock"] = c["shock"] * np.exp(0.4 * z[6])
    a["fraud"] = c["fraud"] * np.exp(0.3 * z[7])
    a["utility"] = _expit(_logit(c["utility"]) + 0.5 * z[8])
    a["score_base"] = c["score"] + 35 * z[9]
    a["rapid"] = c["rapid"] * np.exp(0.4 * z[10])
    a["repay"] = np.clip(c["repay"] + 0.15 * z[11], 0.25, 1.0)
    a["loan_size"] = a["income_base"] * (0.5 + 0.6 * u[0])
    for k in TRAITS:
        a[k] = a[k].astype(F32)
    for k, dt in DYNAMIC.items():
        a[k] = np.zeros(n, dtype=dt)
    a["cause"][:] = -1
    a["clean"][:] = 6
    for k in ("review", *(f"grade_lag{k}" for k in range(1, acceptance.MONTHS))):
        a[k][:] = np.nan
    limit = np.round(a["income_base"] * (1.0 + np.clip((a["score_base"] - 600) / 100, -0.5, 1.5)), -2)
    a["base_limit"][:] = np.maximum(limit, 500)
    a["limit"][:] = a["base_limit"]
    a["balance"][:] = a["limit"] * a["draw"] * u[1]
    a["lenders"][:] = np.floor(-np.log(u[2]) * 3 * a["apps"])
    a["service"][:] = 0.25 * a["balance"] + 0.08 * a["lenders"] * a["loan_size"]
    for k in ("score", "score_lag1", "score_lag2", "score_lag3"):
        a[k][:] = np.clip(a["score_base"], 300, 950)
    return State(a)


def truth_frame(state: State, borrower_id: np.ndarray) -> pd.DataFrame:
    """The truth table rows of a block: id, hidden type and hidden traits."""
    a = state.arrays
    df = pd.DataFrame({"borrower_id": borrower_id.astype(np.int64),
                       "borrower_type": pd.Categorical.from_codes(a["btype"], categories=list(BORROWER_TYPES)),
                       **{k: a[k] for k in TRAITS}})
    return cast(df, TRUTH)

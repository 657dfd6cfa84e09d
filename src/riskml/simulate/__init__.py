"""The borrower-history simulator: hidden borrower types, their monthly behaviour,
the platform's risk engine, and the oracle that knows the true outcome
probabilities.

Public API:
    SimConfig: every simulation parameter, validated (``SimConfig.from_cfg``).
    simulate(cfg) -> SimResult: the panel and the hidden truth, in memory; accounts open month by
        month on the origination schedule of ``riskml.simulate.book``.
    iter_chunks(cfg): ``(panel_chunk, truth_chunk)`` for streaming large N.
    oracle(cfg, keys, horizon=...): true probability of each worst outcome.
    intervention.follow_advice(cfg, keys, horizon=...): the same with the borrower following one
        factor's advice from t+1, and without (the same futures).
"""

from riskml.simulate.config import EngineParams, SimConfig
from riskml.simulate.oracle import oracle, oracle_cause
from riskml.simulate.run import SimResult, iter_chunks, simulate

__all__ = ["EngineParams", "SimConfig", "SimResult", "iter_chunks", "oracle", "oracle_cause", "simulate"]

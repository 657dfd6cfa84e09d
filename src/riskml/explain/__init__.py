"""The explanation stage: factor TreeSHAP, reasons, advice, what-ifs, fidelity,
and scoring of borrower histories with all of them.

- ``trees``: LightGBM trees as flat arrays (exact thresholds, splits, bitsets), shared by the two below;
- ``treeshap``, ``treeshap_kernel``: exact path-dependent TreeSHAP with the factors as players;
- ``predictor``: LightGBM's trees compiled for scoring (``Booster.predict``'s probabilities, faster);
- ``reasons``: contributions -> reasons in the documented factors, advice, fidelity;
- ``scoring``: histories -> one explained prediction per borrower;
- ``recovery``: the recovery side's platform rules and the cause on record;
- ``tabular_scoring``: the same for rows of a table;
- ``warmup``: the kernels compiled in the background while a train fits;
- ``kernel_threads``: how many threads the compiled kernels use, set the same way by every caller.
"""

from riskml.explain.reasons import (MAX_REASONS, FactorExplainer, Fidelity, adverse_contributions, advice_for,
                                    check_score_options, check_top_k, fidelity, top_reasons, what_if)

__all__ = ["MAX_REASONS", "FactorExplainer", "Fidelity", "adverse_contributions", "advice_for", "check_score_options", "check_top_k",
           "fidelity", "top_reasons", "what_if"]
